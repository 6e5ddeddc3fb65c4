/**
 * Which backend issued which BackendKeyData, so a CancelRequest (sent on a
 * new connection, carrying only the key) reaches the server running the
 * query. One registry per process; a cancel that lands on a sibling worker
 * is broadcast and the worker that holds the key forwards it. In a fleet
 * (`cluster.redis`) the key's owner is also recorded in Redis, and a cancel
 * that lands on another instance is sent to the owner's inbox
 * (fleet/cancel-keys.ts); with Redis down, only this instance's keys work.
 */
import { broadcast, onBroadcast } from '../../core/cluster.ts';
import { CANCEL_KIND, forwardCancelInFleet, registerFleetCancelKey, unregisterFleetCancelKey } from '../../fleet/cancel-keys.ts';
import { fleet, onFleetRequest } from '../../fleet/index.ts';
import { sendOneShot } from '../../core/connect.ts';
import type { Endpoint } from '../../core/endpoint.ts';
import { log } from '../../core/logger.ts';

const TOPIC = 'postgres.cancel';
const CANCEL_CONNECT_TIMEOUT_MS = 5000;

const keys = new Map<string, Endpoint>();

/**
 * Keys the proxy itself gave out (pooled clients: pool/cancel-keys.ts): the
 * resolver returns the endpoint and the packet with the server's own key,
 * null when there is nothing to cancel now, undefined when the key is not one.
 */
type CancelResolver = (key: string) => { endpoint: Endpoint; packet: Buffer } | null | undefined;
let resolver: CancelResolver | null = null;

export function registerCancelResolver(next: CancelResolver): void {
  resolver = next;
}

/** A proxy-issued key's target (see registerCancelResolver). */
export function resolveProxyCancelKey(key: string): { endpoint: Endpoint; packet: Buffer } | null | undefined {
  return resolver === null ? undefined : resolver(key);
}

/**
 * A key the proxy gave a pooled client: in a fleet, its owner goes to Redis
 * like a backend's key, so a CancelRequest landing on another instance is
 * sent here and reaches the pool's per-client cancel (forwardCancel below).
 */
export function registerProxyCancelKey(key: string): void {
  const current = fleet();
  if (current !== null) registerFleetCancelKey(current, key);
}

export function unregisterProxyCancelKey(key: string): void {
  const current = fleet();
  if (current !== null) unregisterFleetCancelKey(current, key);
}

export function registerCancelKey(key: string, endpoint: Endpoint): void {
  keys.set(key, endpoint);
  const current = fleet();
  if (current !== null) registerFleetCancelKey(current, key);
}

export function unregisterCancelKey(key: string, endpoint: Endpoint): void {
  if (keys.get(key) !== endpoint) return;
  keys.delete(key);
  const current = fleet();
  if (current !== null) unregisterFleetCancelKey(current, key);
}

export function lookupCancelKey(key: string): Endpoint | undefined {
  return keys.get(key);
}

/**
 * Forwards a cancel whose key this process does not hold: to sibling
 * workers (broadcast), and to the instance of the fleet that holds the key.
 */
export function forwardCancelToSiblings(key: string, packet: Buffer): boolean {
  const current = fleet();
  if (current !== null) void forwardCancelInFleet(current, key, packet);
  return broadcast(TOPIC, { key, packet: packet.toString('base64') });
}

function forwardCancel(payload: unknown, from: string): boolean {
  const { key, packet } = payload as { key?: unknown; packet?: unknown };
  if (typeof key !== 'string' || typeof packet !== 'string') return false;
  const pooled = resolveProxyCancelKey(key);
  if (pooled !== undefined) {
    if (pooled !== null) sendOneShot(pooled.endpoint, pooled.packet, CANCEL_CONNECT_TIMEOUT_MS).catch((err: Error) => log.warn({ err: err.message, backend: pooled.endpoint.label }, 'forwarding a cancel request failed'));
    return pooled !== null;
  }
  const endpoint = keys.get(key);
  if (endpoint === undefined) return false;
  log.debug({ backend: endpoint.label, from }, 'forwarding a cancel request received elsewhere');
  sendOneShot(endpoint, Buffer.from(packet, 'base64'), CANCEL_CONNECT_TIMEOUT_MS).catch((err: Error) =>
    log.warn({ err: err.message, backend: endpoint.label }, 'forwarding a cancel request failed'),
  );
  return true;
}

onBroadcast(TOPIC, (payload) => forwardCancel(payload, 'a sibling worker'));
onFleetRequest(CANCEL_KIND, (payload, from) => forwardCancel(payload, from));
