/**
 * ws-bridge across the fleet (`cluster.redis`, src/fleet/): which instance
 * holds which ClientId lives in Redis (fleet/ws-clients.ts, TTL refreshed
 * by the ping sweep), so
 * - a push for a client held elsewhere goes to that instance's inbox and
 *   comes back delivered or not (404 only when no instance holds it);
 * - `duplicateClientId: replace`: a new connection claims the id and tells
 *   the previous holder to close its older connection;
 * - `duplicateClientId: refuse`: an id held by another instance is refused.
 * When Redis is down every answer falls back to this instance's own clients
 * (cross-worker.ts still asks sibling workers).
 */
import { fleet, onFleetRequest } from '../../fleet/index.ts';
import type { Fleet } from '../../fleet/fleet.ts';
import { FleetClients } from '../../fleet/ws-clients.ts';
import { localBridge } from './cross-worker.ts';

const KIND_PUSH = 'ws-push';
const KIND_REPLACE = 'ws-replace';

/** How long a push waits for the holding instance's answer. */
const PUSH_TIMEOUT_MS = 2000;

interface PushPayload {
  readonly listener: string;
  readonly id: string;
  readonly body: string;
  readonly binary: boolean;
}

interface ReplacePayload {
  readonly listener: string;
  readonly id: string;
  readonly at: number;
}

onFleetRequest(KIND_PUSH, (payload) => {
  const p = payload as unknown as PushPayload;
  if (typeof p.listener !== 'string' || typeof p.id !== 'string' || typeof p.body !== 'string') return false;
  return localBridge(p.listener)?.deliver(p.id, Buffer.from(p.body, 'base64'), p.binary === true) ?? false;
});

onFleetRequest(KIND_REPLACE, (payload) => {
  const p = payload as unknown as ReplacePayload;
  if (typeof p.listener !== 'string' || typeof p.id !== 'string') return false;
  localBridge(p.listener)?.replacedElsewhere(p.id, Number(p.at));
  return true;
});

const registries = new WeakMap<Fleet, Map<string, FleetClients>>();

/** The fleet's registry for one listener; null without a fleet. `ttlMs`: how long a claim lives without a sweep refreshing it. */
export function fleetClients(listener: string, ttlMs: number): FleetClients | null {
  const current = fleet();
  if (current === null) return null;
  let byListener = registries.get(current);
  if (byListener === undefined) {
    byListener = new Map();
    registries.set(current, byListener);
  }
  let clients = byListener.get(listener);
  if (clients === undefined) {
    clients = new FleetClients(current, listener, ttlMs);
    byListener.set(listener, clients);
  }
  return clients;
}

export type FleetPush = 'delivered' | 'not-found' | 'undecided';

/** A push this process (and its sibling workers) could not deliver: ask the instance that holds the client. */
export async function pushInFleet(clients: FleetClients, listener: string, id: string, body: Buffer, binary: boolean): Promise<FleetPush> {
  const current = fleet();
  if (current === null) return 'not-found';
  const holder = await clients.holder(id);
  // Redis down (undefined) or nobody holds it: only local delivery was possible.
  if (holder === undefined || holder === null || holder.node === current.id) return 'not-found';
  const answer = await current.request(holder.node, KIND_PUSH, { listener, id, body: body.toString('base64'), binary } satisfies PushPayload, PUSH_TIMEOUT_MS);
  if (answer.status === 'answered') return answer.value === true ? 'delivered' : 'not-found';
  return answer.status === 'timeout' ? 'undecided' : 'not-found';
}

/** `duplicateClientId: refuse`: true when another instance holds `id`. */
export async function heldInFleet(clients: FleetClients, id: string): Promise<boolean> {
  const current = fleet();
  if (current === null) return false;
  const holder = await clients.holder(id);
  return holder !== undefined && holder !== null && holder.node !== current.id && !isSibling(current, holder.node);
}

/**
 * Records a new connection for `id`. With `replace`, tells the previous
 * holder elsewhere to close its older connection; with `refuse`, resolves
 * false when another instance holds it (the caller closes the new one).
 */
export async function claimInFleet(clients: FleetClients, listener: string, id: string, openedAt: number, mode: 'replace' | 'refuse'): Promise<boolean> {
  const current = fleet();
  if (current === null) return true;
  const previous = await clients.claim(id, openedAt, mode);
  if (previous === null || isSibling(current, previous.node)) return true;
  if (mode === 'refuse') return false;
  await current.notify(previous.node, KIND_REPLACE, { listener, id, at: openedAt } satisfies ReplacePayload);
  return true;
}

/** Sibling workers of one instance learn of each other's clients through the supervisor (cross-worker.ts), not Redis. */
function isSibling(current: Fleet, node: string): boolean {
  return current.id !== current.instanceId && node.startsWith(`${current.instanceId}/`);
}
