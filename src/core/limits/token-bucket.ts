/**
 * A token bucket: `rate` tokens a second, holding at most `burst`. Refilled
 * lazily from the time of each call, so an idle bucket costs nothing.
 *
 * Two ways to spend:
 * - `take(n)` for admissions (a connection, a request): all or nothing;
 *   the answer is 0 (taken) or how many ms until n tokens are there.
 * - `spend(n)` for bytes already moved (bandwidth): always spends and may
 *   leave the bucket in debt; the answer is how many ms until the debt is
 *   paid (0 = none), which is how long the relay keeps that side paused.
 */
export class TokenBucket {
  rate: number;
  burst: number;
  tokens: number;
  /** performance.now() of the last refill. */
  #at: number;

  constructor(rate: number, burst: number, now = performance.now()) {
    this.rate = rate;
    this.burst = Math.max(1, burst);
    this.tokens = this.burst;
    this.#at = now;
  }

  /** A reload's new rate and burst; the tokens held stay (capped at the new burst). */
  configure(rate: number, burst: number): void {
    this.rate = rate;
    this.burst = Math.max(1, burst);
    if (this.tokens > this.burst) this.tokens = this.burst;
  }

  #refill(now: number): void {
    const elapsed = now - this.#at;
    if (elapsed <= 0) return;
    this.#at = now;
    this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.rate) / 1000);
  }

  /** Takes n tokens if they are there: 0; otherwise takes nothing and returns the ms until they will be. */
  take(n = 1, now = performance.now()): number {
    this.#refill(now);
    if (this.tokens >= n) {
      this.tokens -= n;
      return 0;
    }
    return Math.ceil(((n - this.tokens) * 1000) / this.rate);
  }

  /** Spends n tokens, into debt if need be; returns the ms until the bucket is out of debt (0 = not in debt). */
  spend(n: number, now = performance.now()): number {
    this.#refill(now);
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.rate);
  }
}
