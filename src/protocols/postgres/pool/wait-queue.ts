/**
 * The FIFO of clients waiting for a server connection of one pool, with
 * their deadline (queueTimeoutMs). One coarse sweep timer per pool manager
 * fails the waiters past their deadline (53300); it runs only while someone
 * waits, never per message.
 */

export interface Waiter {
  /** Date.now() when it started waiting. */
  waitingSince: number;
  /** Its place in a queue (null when not waiting). */
  queue: WaitQueue | null;
}

export class WaitQueue {
  readonly #items: Waiter[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(waiter: Waiter): void {
    waiter.queue = this;
    this.#items.push(waiter);
  }

  /** The first waiter, without taking it. */
  peek(): Waiter | undefined {
    return this.#items[this.#head];
  }

  shift(): Waiter | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const waiter = this.#items[this.#head] as Waiter;
    this.#items[this.#head] = undefined as unknown as Waiter;
    this.#head++;
    if (this.#head > 64 && this.#head * 2 > this.#items.length) {
      this.#items.splice(0, this.#head);
      this.#head = 0;
    }
    waiter.queue = null;
    return waiter;
  }

  /** Takes a waiter out wherever it is (it left, or timed out). */
  remove(waiter: Waiter): void {
    const i = this.#items.indexOf(waiter, this.#head);
    if (i < 0) return;
    this.#items.splice(i, 1);
    waiter.queue = null;
  }

  /** Waiters whose wait started at or before `before`, in order, out of the queue. */
  expire(before: number): Waiter[] {
    const out: Waiter[] = [];
    while (this.#head < this.#items.length && (this.#items[this.#head] as Waiter).waitingSince <= before) out.push(this.shift() as Waiter);
    return out;
  }
}
