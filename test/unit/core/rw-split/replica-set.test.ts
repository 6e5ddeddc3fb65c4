import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { readWriteSplitSchema } from '../../../../src/core/rw-split/config.ts';
import { ReplicaSet, type LagProbe } from '../../../../src/core/rw-split/replica-set.ts';

const log = pino({ level: 'silent' });

function makeSet(lags: Record<string, number | Error>, settings: Partial<ReturnType<typeof readWriteSplitSchema.parse>> = {}): ReplicaSet {
  const probe: LagProbe = (endpoint) => {
    const lag = lags[endpoint];
    return lag instanceof Error ? Promise.reject(lag) : Promise.resolve(lag ?? 0);
  };
  return new ReplicaSet({
    listener: 'pg',
    route: 'shop',
    replicas: Object.keys(lags),
    settings: readWriteSplitSchema.parse(settings),
    probe,
    log,
    autoProbe: false,
  });
}

test('pick: nothing before the first probe (lag unknown), then round-robin among healthy replicas', async () => {
  const set = makeSet({ a: 0, b: 10, c: 0 });
  assert.equal(set.pick(), undefined);
  await set.probeNow();
  assert.deepEqual([set.pick(), set.pick(), set.pick(), set.pick()], ['a', 'b', 'c', 'a']);
  set.close();
});

test('pick: a replica over maxReplicaLagMs or whose probe fails is skipped; none left → undefined', async () => {
  const lags: Record<string, number | Error> = { a: 5000, b: new Error('connect ECONNREFUSED'), c: 20 };
  const set = makeSet(lags, { maxReplicaLagMs: 100 });
  await set.probeNow();
  assert.deepEqual([set.pick(), set.pick()], ['c', 'c']);
  lags.c = 101;
  await set.probeNow();
  assert.equal(set.pick(), undefined);
  lags.a = 100;
  await set.probeNow();
  assert.equal(set.pick(), 'a');
  assert.deepEqual(set.stats(), [
    { endpoint: 'a', up: true, lagMs: 100, sessions: 0 },
    { endpoint: 'b', up: false, lagMs: undefined, sessions: 0 },
    { endpoint: 'c', up: true, lagMs: 101, sessions: 0 },
  ]);
  set.close();
});

test('markDown: skipped until a probe that started after it succeeds', async () => {
  const set = makeSet({ a: 0, b: 0 });
  await set.probeNow();
  set.markDown('a', 'connect ECONNREFUSED');
  assert.deepEqual([set.pick(), set.pick()], ['b', 'b']);
  assert.equal(set.stats()[0]!.up, false);
  await set.probeNow();
  assert.equal(set.stats()[0]!.up, true);
  assert.deepEqual(new Set([set.pick(), set.pick()]), new Set(['a', 'b']));
  set.markDown('nope', 'unknown endpoints are ignored');
  set.close();
});

test('markDown during a probe round: that round does not bring the replica back', async () => {
  let release: (() => void) | undefined;
  const probe: LagProbe = () => new Promise((resolve) => (release = () => resolve(0)));
  const set = new ReplicaSet({ listener: 'pg', route: 'shop', replicas: ['a'], settings: readWriteSplitSchema.parse({}), probe, log, autoProbe: false });
  const round = set.probeNow();
  assert.equal(set.probeNow(), round, 'a round already running is joined');
  set.markDown('a', 'broken pipe');
  release!();
  await round;
  assert.equal(set.pick(), undefined);
  set.close();
});

test('least-connections: the replica with the fewest sessions; ties in turn', async () => {
  const set = makeSet({ a: 0, b: 0 }, { balance: 'least-connections' });
  await set.probeNow();
  const first = set.pick()!;
  set.acquire(first);
  const second = set.pick()!;
  assert.notEqual(second, first);
  set.acquire(second);
  set.acquire(second);
  assert.equal(set.pick(), first);
  set.release(second);
  set.release(second);
  set.release(second);
  set.release(second); // never below zero
  assert.equal(set.stats().find((r) => r.endpoint === second)!.sessions, 0);
  assert.equal(set.pick(), second);
  set.close();
});

test('a probe answering a non-number counts as down; close stops answering', async () => {
  const set = makeSet({ a: Number.NaN, b: 3 });
  await set.probeNow();
  assert.equal(set.pick(), 'b');
  set.close();
  assert.equal(set.pick(), undefined);
});

test('autoProbe: probes at construction and again every lagProbeIntervalMs, stops on close', async () => {
  let calls = 0;
  let second: (() => void) | undefined;
  const again = new Promise<void>((resolve) => (second = resolve));
  const probe: LagProbe = () => {
    calls++;
    if (calls === 2) second!();
    return Promise.resolve(0);
  };
  const set = new ReplicaSet({ listener: 'pg', route: 'shop', replicas: ['a'], settings: readWriteSplitSchema.parse({ lagProbeIntervalMs: 100 }), probe, log });
  await set.ready;
  assert.equal(set.pick(), 'a');
  await again;
  set.close();
  const after = calls;
  await new Promise((resolve) => setTimeout(resolve, 250));
  assert.equal(calls, after);
});

test('a probe is given an AbortSignal that aborts at the timeout', async () => {
  let seen: AbortSignal | undefined;
  const probe: LagProbe = (_endpoint, signal) => {
    seen = signal;
    return Promise.resolve(0);
  };
  const set = new ReplicaSet({ listener: 'pg', route: 'shop', replicas: ['a'], settings: readWriteSplitSchema.parse({}), probe, log, autoProbe: false });
  await set.probeNow();
  assert.ok(seen instanceof AbortSignal);
  assert.equal(seen.aborted, false);
  set.close();
});
