/**
 * Cancel keys of pooled clients. Each client gets its own BackendKeyData
 * from the proxy (a random process id and secret): its server connection
 * changes between transactions, so the server's key would cancel someone
 * else's query later. A CancelRequest with a proxy key reaches the server
 * connection running that client's query right now, with that server's own
 * key; when the client runs nothing, there is nothing to cancel. In a
 * fleet the keys are recorded in Redis too (cancel-registry.ts), so a cancel
 * landing on another instance comes back here.
 */
import { randomBytes } from 'node:crypto';
import type { Endpoint } from '../../../core/endpoint.ts';
import { registerCancelResolver, registerProxyCancelKey, unregisterProxyCancelKey } from '../cancel-registry.ts';
import { cancelRequest } from './messages.ts';

/** A client session as a cancel sees it. */
export interface Cancellable {
  /** The endpoint and cancel packet for the server connection running the client's query now, or null. */
  cancelTarget(): { endpoint: Endpoint; packet: Buffer } | null;
}

const sessions = new Map<string, Cancellable>();

/** A fresh key for a client: process id (int32, positive) and a 4-byte secret; `hex` as parse.ts spells cancel keys. */
export function newClientKey(session: Cancellable): { processId: number; secretKey: Buffer; hex: string } {
  while (true) {
    const bytes = randomBytes(8);
    bytes[0] = (bytes[0] as number) & 0x7f;
    const hex = bytes.toString('hex');
    if (sessions.has(hex)) continue;
    sessions.set(hex, session);
    registerProxyCancelKey(hex);
    return { processId: bytes.readUInt32BE(0), secretKey: bytes.subarray(4), hex };
  }
}

export function dropClientKey(hex: string): void {
  if (sessions.delete(hex)) unregisterProxyCancelKey(hex);
}

/** Where a CancelRequest carrying a proxy key goes (undefined: not a pooled client's key; null: nothing to cancel). */
export function pooledCancel(hex: string): { endpoint: Endpoint; packet: Buffer } | null | undefined {
  const session = sessions.get(hex);
  return session === undefined ? undefined : session.cancelTarget();
}

registerCancelResolver(pooledCancel);

export { cancelRequest };
