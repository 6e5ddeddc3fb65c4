/**
 * Which backend issued which BackendKeyData, so a CancelRequest (sent on a
 * new connection, carrying only the key) reaches the server running the
 * query. One registry per process; a cancel that lands on a sibling worker
 * is broadcast and the worker that holds the key forwards it.
 */
import { broadcast, onBroadcast } from '../../core/cluster.ts';
import { sendOneShot } from '../../core/connect.ts';
import type { Endpoint } from '../../core/endpoint.ts';
import { log } from '../../core/logger.ts';

const TOPIC = 'postgres.cancel';
const CANCEL_CONNECT_TIMEOUT_MS = 5000;

const keys = new Map<string, Endpoint>();

export function registerCancelKey(key: string, endpoint: Endpoint): void {
  keys.set(key, endpoint);
}

export function unregisterCancelKey(key: string, endpoint: Endpoint): void {
  if (keys.get(key) === endpoint) keys.delete(key);
}

export function lookupCancelKey(key: string): Endpoint | undefined {
  return keys.get(key);
}

/** Asks sibling workers to forward a cancel whose key this process does not hold. */
export function forwardCancelToSiblings(key: string, packet: Buffer): boolean {
  return broadcast(TOPIC, { key, packet: packet.toString('base64') });
}

onBroadcast(TOPIC, (payload) => {
  const { key, packet } = payload as { key: string; packet: string };
  const endpoint = keys.get(key);
  if (endpoint === undefined) return;
  log.debug({ backend: endpoint.label }, 'forwarding a cancel request received by a sibling worker');
  sendOneShot(endpoint, Buffer.from(packet, 'base64'), CANCEL_CONNECT_TIMEOUT_MS).catch((err: Error) =>
    log.warn({ err: err.message, backend: endpoint.label }, 'forwarding a cancel request failed'),
  );
});
