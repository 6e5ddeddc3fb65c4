/**
 * A PostgreSQL standby's replay lag from what the standby itself can say,
 * as a bound that is never below the truth and is tight after a quiet spell.
 *
 * `now() - pg_last_xact_replay_timestamp()` alone is the age of the last
 * replayed commit: after a primary idle for a minute, the first new commit
 * makes a standby that is a few milliseconds behind look a minute behind
 * until it replays it, and a probe that lands in that gap sends every read
 * to the primary for a whole probe interval. So each probe also remembers
 * the receive LSN it saw and when it asked: once the replay LSN has passed
 * the receive LSN of an earlier probe, everything not yet replayed arrived
 * after that probe was sent, and the lag is at most the time since then.
 * The estimate is the smaller of the two upper bounds.
 *
 * Like the replay timestamp, this measures replay behind what the standby
 * received (the WAL receiver's own delay is not visible from the standby).
 */

/** One probe's answer; LSNs as byte positions (pg_wal_lsn_diff(lsn, '0/0')). */
export interface ReplaySample {
  /** performance.now() when the probe's query was written. */
  readonly sentAt: number;
  /** performance.now() when its answer arrived. */
  readonly answeredAt: number;
  /** pg_last_wal_receive_lsn(); null when no WAL receiver streams (archive recovery). */
  readonly receiveLsn: number | null;
  /** pg_last_wal_replay_lsn(). */
  readonly replayLsn: number | null;
  /** now() - pg_last_xact_replay_timestamp() in ms; null before any commit was replayed. */
  readonly sinceLastReplayedCommitMs: number | null;
}

/** Earlier probes kept: a standby further behind than this many probes falls back to the replay timestamp. */
const HISTORY = 64;

export class ReplayLagEstimate {
  /** Earlier probes' send times and receive LSNs, oldest first. */
  private readonly sentAt: number[] = [];
  private readonly received: number[] = [];

  /** The lag in ms for this probe; throws when the standby cannot tell (nothing replayed yet). */
  sample(s: ReplaySample): number {
    const lag = this.estimate(s);
    if (s.receiveLsn !== null) this.remember(s.sentAt, s.receiveLsn);
    return lag;
  }

  private estimate(s: ReplaySample): number {
    // Everything received is replayed (an idle primary sends nothing): no lag.
    if (s.receiveLsn === null && s.replayLsn === null) return 0;
    if (s.receiveLsn !== null && s.replayLsn !== null && s.replayLsn >= s.receiveLsn) return 0;
    if (s.sinceLastReplayedCommitMs === null) throw new Error('lag unknown: WAL received but no transaction replayed yet');
    let lag = Math.max(0, s.sinceLastReplayedCommitMs);
    if (s.replayLsn === null || s.receiveLsn === null) return lag;
    // The latest earlier probe whose received WAL is all replayed now.
    for (let i = this.received.length - 1; i >= 0; i--) {
      if (this.received[i]! > s.replayLsn) continue;
      lag = Math.min(lag, Math.max(0, s.answeredAt - this.sentAt[i]!));
      // Older probes give looser bounds from now on.
      this.sentAt.splice(0, i);
      this.received.splice(0, i);
      break;
    }
    return lag;
  }

  private remember(sentAt: number, receiveLsn: number): void {
    const last = this.received.length - 1;
    // Same receive LSN as the previous probe: nothing past it had arrived at the newer one either, the tighter bound.
    if (last >= 0 && this.received[last] === receiveLsn) {
      this.sentAt[last] = sentAt;
      return;
    }
    this.sentAt.push(sentAt);
    this.received.push(receiveLsn);
    if (this.received.length > HISTORY) {
      this.sentAt.shift();
      this.received.shift();
    }
  }
}
