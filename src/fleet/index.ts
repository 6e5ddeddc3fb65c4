/**
 * The process's fleet membership, when `cluster.redis` is configured: one
 * per process (like core/cluster.ts for sibling workers), so protocol code
 * (ws-bridge push, PostgreSQL cancel) can reach other instances without a
 * reference threaded through every listener. `null` without `cluster`.
 */
import type { Fleet } from './fleet.ts';

let current: Fleet | null = null;

export function fleet(): Fleet | null {
  return current;
}

export function setFleet(next: Fleet | null): void {
  current = next;
}

type RequestHandler = (payload: Record<string, unknown>, from: string) => unknown;

const handlers = new Map<string, RequestHandler>();

/**
 * Registers the answer to requests of `kind` from other instances (a
 * protocol module does it at load, whether or not a fleet runs yet).
 * The handler's value is the reply; it may be a promise.
 */
export function onFleetRequest(kind: string, handler: RequestHandler): void {
  handlers.set(kind, handler);
}

export function fleetHandler(kind: string): RequestHandler | undefined {
  return handlers.get(kind);
}
