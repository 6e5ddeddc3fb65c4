/**
 * Read-your-writes by time, one per client session: after a transaction
 * that wrote commits, the session's reads go to the primary for `ms`, long
 * enough for the replicas to have replayed it. `ms` = 0 turns it off.
 */
export class ReadAfterWrite {
  readonly ms: number;
  /** Until when (epoch ms) reads need the primary. */
  private until = 0;

  constructor(ms: number) {
    this.ms = ms;
  }

  /** A write committed (or an autocommit write finished) at `now`. */
  noteCommittedWrite(now: number): void {
    if (this.ms > 0) this.until = now + this.ms;
  }

  /** Whether a read at `now` must go to the primary. */
  primaryRequired(now: number): boolean {
    return now < this.until;
  }
}
