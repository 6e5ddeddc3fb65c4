/**
 * "The backend must answer within N ms" for replay phases (MySQL's auth
 * exchange, MongoDB's hello, SMTP's greeting and EHLO): one timer bounds one
 * or several waits, and a wait still pending when it fires is rejected with
 * the error its caller chose, so each wait says who was late. The awaited
 * promise itself is not cancelled: the caller disposes of what it read from
 * (BackendReader.dispose) in its `finally`, with `clear()`.
 */
import type { PolyproxyError } from './errors.ts';

export class Deadline {
  readonly #timer: NodeJS.Timeout;
  #expired = false;
  /** Rejects the pending wait; one wait at a time. */
  #onExpire: (() => void) | null = null;

  /** Starts the clock now. */
  constructor(ms: number) {
    this.#timer = setTimeout(() => {
      this.#expired = true;
      this.#onExpire?.();
    }, ms);
  }

  /** `promise`'s outcome, or `late()` rejected if the deadline passes first (or has passed). */
  wait<T>(promise: Promise<T>, late: () => PolyproxyError): Promise<T> {
    if (this.#expired) return Promise.reject(late());
    return new Promise<T>((resolve, reject) => {
      this.#onExpire = () => reject(late());
      promise.then(
        (value) => {
          this.#onExpire = null;
          resolve(value);
        },
        (err: unknown) => {
          this.#onExpire = null;
          reject(err as Error);
        },
      );
    });
  }

  /** Stops the clock; call once the waits are over, whatever their outcome. */
  clear(): void {
    clearTimeout(this.#timer);
  }
}

/** One wait under its own deadline of `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, late: () => PolyproxyError): Promise<T> {
  const deadline = new Deadline(ms);
  try {
    return await deadline.wait(promise, late);
  } finally {
    deadline.clear();
  }
}
