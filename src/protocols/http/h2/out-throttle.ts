/**
 * A tenant's `bandwidth.outBytesPerSecond` on one response that reaches the
 * client through the HTTP/2 side (an HTTP/2 stream, or a bridged HTTP/1.1
 * connection): as on the HTTP/1.1 path (session.ts #spendOut), the bytes
 * sent spend the tenant's out bucket, shared with every other session of
 * the tenant; in debt, the response's source (the HTTP/1.1 call of
 * h1-backends.ts, or the backend stream) pauses until the debt is paid, and
 * flow control slows the backend. One timer at most, armed only while in debt; nothing per chunk
 * but the spend.
 */
import type { TokenBucket } from '../../../core/limits/token-bucket.ts';

/** What is paused: the response's source. */
export interface Pausable {
  pause(): unknown;
  resume(): unknown;
}

/** Where the bytes go: resumed only when it is not waiting for 'drain' itself. */
export interface Drainable {
  readonly writableNeedDrain: boolean;
  readonly destroyed: boolean;
}

export class OutThrottle {
  readonly #bucket: TokenBucket;
  readonly #source: Pausable;
  readonly #client: Drainable;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;

  constructor(bucket: TokenBucket, source: Pausable, client: Drainable) {
    this.#bucket = bucket;
    this.#source = source;
    this.#client = client;
  }

  /** The source is held back for the bucket (a client 'drain' must not resume it). */
  get holding(): boolean {
    return this.#timer !== null;
  }

  /** `n` bytes went to the client. */
  spend(n: number): void {
    const wait = this.#bucket.spend(n);
    if (wait === 0 || this.#stopped) return;
    // Paused again even while the timer runs: a pipe resumes its source on the client's 'drain'.
    this.#source.pause();
    if (this.#timer === null) this.#timer = setTimeout(throttleRefilled, wait, this);
  }

  /** @internal The debt's time passed: resume, unless more debt came meanwhile or the client has to drain first (its 'drain' resumes). */
  refilled(): void {
    this.#timer = null;
    if (this.#stopped) return;
    const wait = this.#bucket.spend(0);
    if (wait > 0) {
      this.#timer = setTimeout(throttleRefilled, wait, this);
      return;
    }
    const client = this.#client;
    if (!client.destroyed && client.writableNeedDrain !== true) this.#source.resume();
  }

  /** The response is over: no timer left behind. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
  }
}

function throttleRefilled(throttle: OutThrottle): void {
  throttle.refilled();
}
