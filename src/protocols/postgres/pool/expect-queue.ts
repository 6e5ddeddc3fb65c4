/**
 * The answers a session still expects from its server connection
 * (ParseComplete per forwarded Parse, CloseComplete per forwarded Close), in
 * order: a ring of (epoch, flag, statement) entries. It replaces arrays used
 * with push/shift and `length = 0` — each of those costs a builtin call
 * (and shift moves every element) on every transaction of an unnamed
 * statement. The ring grows (doubling) only when more answers are pending
 * than ever before; the steady state allocates nothing.
 */
import type { Statement } from './prepared-statements.ts';

export class ExpectQueue {
  #epochs: number[];
  #flags: boolean[];
  #statements: Array<Statement | null>;
  #head = 0;
  #length = 0;

  constructor(capacity = 8) {
    this.#epochs = new Array<number>(capacity).fill(0);
    this.#flags = new Array<boolean>(capacity).fill(false);
    this.#statements = new Array<Statement | null>(capacity).fill(null);
  }

  get length(): number {
    return this.#length;
  }

  push(epoch: number, flag: boolean, statement: Statement | null): void {
    let capacity = this.#epochs.length;
    if (this.#length === capacity) {
      this.#grow();
      capacity = this.#epochs.length;
    }
    let at = this.#head + this.#length;
    if (at >= capacity) at -= capacity;
    this.#epochs[at] = epoch;
    this.#flags[at] = flag;
    this.#statements[at] = statement;
    this.#length++;
  }

  /** The first entry's epoch (only while length > 0). */
  get epoch(): number {
    return this.#epochs[this.#head] as number;
  }

  /** The first entry's flag (false when empty). */
  get flag(): boolean {
    return this.#length > 0 && this.#flags[this.#head] === true;
  }

  /** Drops the first entry; returns its statement (null: none, or empty). */
  shift(): Statement | null {
    if (this.#length === 0) return null;
    const head = this.#head;
    const statement = this.#statements[head] as Statement | null;
    this.#statements[head] = null;
    this.#head = head + 1 === this.#epochs.length ? 0 : head + 1;
    this.#length--;
    return statement;
  }

  clear(): void {
    if (this.#length === 0) return;
    for (let i = 0, at = this.#head; i < this.#length; i++, at = at + 1 === this.#epochs.length ? 0 : at + 1) this.#statements[at] = null;
    this.#head = 0;
    this.#length = 0;
  }

  #grow(): void {
    const capacity = this.#epochs.length;
    const epochs = new Array<number>(capacity * 2).fill(0);
    const flags = new Array<boolean>(capacity * 2).fill(false);
    const statements = new Array<Statement | null>(capacity * 2).fill(null);
    for (let i = 0; i < this.#length; i++) {
      const from = (this.#head + i) % capacity;
      epochs[i] = this.#epochs[from] as number;
      flags[i] = this.#flags[from] as boolean;
      statements[i] = this.#statements[from] as Statement | null;
    }
    this.#epochs = epochs;
    this.#flags = flags;
    this.#statements = statements;
    this.#head = 0;
  }
}
