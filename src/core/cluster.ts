/**
 * Messages between sibling worker processes, through the supervisor.
 * Used for rare events (a PostgreSQL cancel that reached the wrong worker),
 * never per connection. In a single process, broadcasts go nowhere.
 */

type Handler = (payload: unknown) => void;

const handlers = new Map<string, Handler>();
const CHANNEL = 'polyproxy:broadcast';

interface BroadcastMessage {
  readonly type: typeof CHANNEL;
  readonly topic: string;
  readonly payload: unknown;
}

export function isBroadcast(message: unknown): message is BroadcastMessage {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === CHANNEL;
}

/** Sends to every other worker. Returns false when there are none. */
export function broadcast(topic: string, payload: unknown): boolean {
  if (typeof process.send !== 'function' || process.env.POLYPROXY_WORKER === undefined) return false;
  const message: BroadcastMessage = { type: CHANNEL, topic, payload };
  process.send(message);
  return true;
}

export function onBroadcast(topic: string, handler: Handler): void {
  handlers.set(topic, handler);
}

/** Called by the worker's IPC handler. */
export function deliverBroadcast(message: BroadcastMessage): void {
  handlers.get(message.topic)?.(message.payload);
}

/*
 * Request/reply between workers (ask → one answer from every other worker).
 * A worker sends an ask to the supervisor; the supervisor forwards it to the
 * other workers, collects their answers (src/supervisor/ask-relay.ts) and
 * sends them back in one message once every worker answered, one exited, or
 * the ask's deadline passed. The asker learns how many workers did not
 * answer (`missing`), so "nobody has it" can be told from "nobody replied".
 * The supervisor asks every worker the same way (admin queries, reload).
 * Used for rare events (a ws-bridge push for a client held by another
 * worker, a metrics scrape), never per connection.
 */

type AskHandler = (payload: unknown) => unknown;

const ASK = 'polyproxy:ask';
const ANSWER = 'polyproxy:answer';
const ANSWERS = 'polyproxy:answers';

/** Worker → supervisor → other workers. */
export interface AskMessage {
  readonly type: typeof ASK;
  readonly id: number;
  readonly topic: string;
  readonly payload: unknown;
  readonly timeoutMs: number;
}

/** A worker's reply to one forwarded ask. */
export interface AnswerMessage {
  readonly type: typeof ANSWER;
  readonly id: number;
  /** The asking worker's pid (the supervisor routes the answer back with it). */
  readonly asker: number;
  readonly answer: unknown;
}

/** Supervisor → asker: every answer, and how many workers gave none. */
export interface AnswersMessage {
  readonly type: typeof ANSWERS;
  readonly id: number;
  readonly answers: unknown[];
  readonly missing: number;
}

export interface AskResult {
  readonly answers: unknown[];
  /** Workers that did not answer in time (or exited meanwhile). */
  readonly missing: number;
}

const askHandlers = new Map<string, AskHandler>();
const pendingAsks = new Map<number, { resolve: (result: AskResult) => void; timer: NodeJS.Timeout }>();
let nextAskId = 1;

function hasType(message: unknown, type: string): boolean {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type;
}

export function isAsk(message: unknown): message is AskMessage & { readonly asker?: number } {
  return hasType(message, ASK);
}

export function isAnswer(message: unknown): message is AnswerMessage {
  return hasType(message, ANSWER);
}

export function isAnswers(message: unknown): message is AnswersMessage {
  return hasType(message, ANSWERS);
}

/**
 * Asks every other worker; resolves with their answers. In a single process
 * (no siblings) it resolves at once with no answers and nothing missing.
 * Never rejects: past `timeoutMs` the answers so far come back.
 */
export function ask(topic: string, payload: unknown, timeoutMs: number): Promise<AskResult> {
  if (typeof process.send !== 'function' || process.env.POLYPROXY_WORKER === undefined) return Promise.resolve({ answers: [], missing: 0 });
  const id = nextAskId++;
  const message: AskMessage = { type: ASK, id, topic, payload, timeoutMs };
  return new Promise((resolve) => {
    // The supervisor answers by its own deadline; this one only covers a supervisor that is gone.
    const timer = setTimeout(() => {
      pendingAsks.delete(id);
      resolve({ answers: [], missing: 1 });
    }, timeoutMs + 1000);
    timer.unref();
    pendingAsks.set(id, { resolve, timer });
    process.send?.(message);
  });
}

/** Registers the answer to `topic` (a value or a promise of one; `undefined` if it throws). */
export function onAsk(topic: string, handler: AskHandler): void {
  askHandlers.set(topic, handler);
}

/** Called by the worker's IPC handler for an ask forwarded by the supervisor. */
export function answerAsk(message: AskMessage & { readonly asker?: number }): void {
  const handler = askHandlers.get(message.topic);
  const reply = (answer: unknown): void => {
    const out: AnswerMessage = { type: ANSWER, id: message.id, asker: message.asker ?? 0, answer };
    process.send?.(out);
  };
  if (handler === undefined) {
    reply(undefined);
    return;
  }
  try {
    Promise.resolve(handler(message.payload)).then(reply, () => reply(undefined));
  } catch {
    reply(undefined);
  }
}

/** Called by the worker's IPC handler when the supervisor returns an ask's answers. */
export function deliverAnswers(message: AnswersMessage): void {
  const pending = pendingAsks.get(message.id);
  if (pending === undefined) return;
  pendingAsks.delete(message.id);
  clearTimeout(pending.timer);
  pending.resolve({ answers: message.answers, missing: message.missing });
}
