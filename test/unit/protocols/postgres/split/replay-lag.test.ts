import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ReplayLagEstimate } from '../../../../../src/protocols/postgres/split/replay-lag.ts';
import type { ReplaySample } from '../../../../../src/protocols/postgres/split/replay-lag.ts';

/** A probe sent at `at` ms, answered 2 ms later. */
function probe(at: number, receiveLsn: number | null, replayLsn: number | null, sinceLastReplayedCommitMs: number | null): ReplaySample {
  return { sentAt: at, answeredAt: at + 2, receiveLsn, replayLsn, sinceLastReplayedCommitMs };
}

describe('ReplayLagEstimate', () => {
  it('everything received is replayed: 0, however old the last replayed commit', () => {
    const e = new ReplayLagEstimate();
    assert.equal(e.sample(probe(0, 1000, 1000, 60_000)), 0);
    assert.equal(e.sample(probe(100, null, null, null)), 0);
    // A restarted WAL receiver can report a receive LSN behind replay.
    assert.equal(e.sample(probe(200, 900, 1000, 60_000)), 0);
  });

  it('a commit after a quiet spell, caught mid-replay: bounded by the last probe that saw the replayed position, not by the quiet spell', () => {
    const e = new ReplayLagEstimate();
    assert.equal(e.sample(probe(0, 1000, 1000, 60_000)), 0);
    // The standby received the new commit (1000 -> 1200) but has not replayed it; its last replayed commit is a minute old.
    assert.equal(e.sample(probe(100, 1200, 1000, 60_100)), 102);
  });

  it('replay paused: the bound grows with time from the probe before the write arrived', () => {
    const e = new ReplayLagEstimate();
    e.sample(probe(0, 1000, 1000, 60_000));
    assert.equal(e.sample(probe(100, 1200, 1000, 60_100)), 102);
    assert.equal(e.sample(probe(1100, 1200, 1000, 61_100)), 1102);
    assert.equal(e.sample(probe(5100, 1400, 1000, 65_100)), 5102);
  });

  it('a steady stream replayed just behind: bounded by the probe whose receive position replay has passed', () => {
    const e = new ReplayLagEstimate();
    e.sample(probe(0, 1000, 900, 50));
    e.sample(probe(100, 2000, 1500, 50));
    // Replay passed 2000 (the probe at 100 ms) but not yet 3000 (the probe at 200 ms).
    e.sample(probe(200, 3000, 2500, 50));
    assert.equal(e.sample(probe(300, 4000, 2500, 400)), 202);
  });

  it('the replay timestamp is the bound when it is the smaller one', () => {
    const e = new ReplayLagEstimate();
    e.sample(probe(0, 1000, 1000, 0));
    assert.equal(e.sample(probe(5000, 1200, 1000, 30)), 30);
  });

  it('no earlier probe below the replay position (first probe, or a standby far behind): the replay timestamp', () => {
    const e = new ReplayLagEstimate();
    assert.equal(e.sample(probe(0, 1200, 1000, 60_000)), 60_000);
    assert.equal(e.sample(probe(100, 1300, 1100, 60_100)), 60_100);
  });

  it('never below zero (clock skew between the servers)', () => {
    const e = new ReplayLagEstimate();
    e.sample(probe(0, 1000, 1000, 0));
    assert.equal(e.sample(probe(100, 1200, 1000, -5)), 0);
  });

  it('a probe kept per replica at most 64 back: a standby further behind falls back to the replay timestamp', () => {
    const e = new ReplayLagEstimate();
    e.sample(probe(0, 1000, 1000, 0));
    for (let i = 1; i <= 64; i++) e.sample(probe(i * 100, 1000 + i * 100, 1000, i * 100));
    assert.equal(e.sample(probe(6500, 8000, 1050, 6500)), 6500);
  });

  it('WAL received but nothing replayed yet: the standby cannot tell', () => {
    const e = new ReplayLagEstimate();
    assert.throws(() => e.sample(probe(0, 1200, 1000, null)), /lag unknown/);
  });

  it('no WAL receiver (archive recovery): the replay timestamp', () => {
    const e = new ReplayLagEstimate();
    assert.equal(e.sample(probe(0, null, 1000, 750)), 750);
  });
});
