/**
 * The supervisor's half of core/cluster.ts `ask`: forwards an ask to every
 * other worker, collects one answer from each, and returns them to the asker
 * in one message when all answered, one exited, or the ask's deadline passed
 * (then `missing` counts the silent ones). The asker is a worker, or the
 * supervisor itself (admin queries, reload: see `askAll`).
 */
import type { ChildProcess } from 'node:child_process';
import type { AnswerMessage, AnswersMessage, AskMessage } from '../core/cluster.ts';

/** Who asked: a worker process, or the supervisor standing in as one. */
export interface Asker {
  readonly pid?: number | undefined;
  readonly connected: boolean;
  send(message: AnswersMessage): unknown;
}

interface PendingAsk {
  readonly asker: Asker;
  readonly id: number;
  readonly waiting: Set<ChildProcess>;
  readonly answers: unknown[];
  readonly timer: NodeJS.Timeout;
}

export class AskRelay {
  readonly #pending = new Map<string, PendingAsk>();
  #nextOwnId = 1;

  /** `asker` sent `message`; `others` are the workers that should answer. */
  ask(asker: Asker, message: AskMessage, others: Iterable<ChildProcess>): void {
    const key = `${asker.pid}:${message.id}`;
    const waiting = new Set<ChildProcess>();
    for (const other of others) if (other !== (asker as unknown) && other.connected) waiting.add(other);
    const timeoutMs = Number.isFinite(message.timeoutMs) && message.timeoutMs > 0 ? message.timeoutMs : 1000;
    const pending: PendingAsk = { asker, id: message.id, waiting, answers: [], timer: setTimeout(() => this.#finish(key), timeoutMs) };
    pending.timer.unref();
    this.#pending.set(key, pending);
    if (waiting.size === 0) {
      this.#finish(key);
      return;
    }
    const forwarded = { ...message, asker: asker.pid ?? 0 };
    for (const other of waiting) other.send(forwarded);
  }

  /** A worker answered an ask it was forwarded. */
  answer(from: ChildProcess, message: AnswerMessage): void {
    const key = `${message.asker}:${message.id}`;
    const pending = this.#pending.get(key);
    if (pending === undefined || !pending.waiting.delete(from)) return;
    pending.answers.push(message.answer);
    if (pending.waiting.size === 0) this.#finish(key);
  }

  /** A worker exited: it will answer nothing, and its own asks are moot. */
  forget(child: ChildProcess): void {
    for (const [key, pending] of this.#pending) {
      if (pending.asker === child) {
        clearTimeout(pending.timer);
        this.#pending.delete(key);
      } else if (pending.waiting.delete(child) && pending.waiting.size === 0) {
        this.#finish(key);
      }
    }
  }

  #finish(key: string): void {
    const pending = this.#pending.get(key);
    if (pending === undefined) return;
    this.#pending.delete(key);
    clearTimeout(pending.timer);
    const reply: AnswersMessage = { type: 'polyproxy:answers', id: pending.id, answers: pending.answers, missing: pending.waiting.size };
    if (pending.asker.connected) pending.asker.send(reply);
  }

  /**
   * The supervisor asks every worker (`topic` answered by each worker's
   * onAsk handler); resolves with the answers of those that answered in time.
   */
  askAll(topic: string, payload: unknown, timeoutMs: number, workers: Iterable<ChildProcess>): Promise<unknown[]> {
    const id = this.#nextOwnId++;
    return new Promise((resolve) => {
      const self: Asker = { pid: process.pid, connected: true, send: (reply) => resolve(reply.answers) };
      this.ask(self, { type: 'polyproxy:ask', id, topic, payload, timeoutMs }, workers);
    });
  }

}
