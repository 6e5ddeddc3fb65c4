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
