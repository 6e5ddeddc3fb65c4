/**
 * The nats listener's fields: how the tenant is read from CONNECT, and the
 * server options the proxy's own INFO announces (info.ts).
 */
import { z } from 'zod';
import { listenerFields } from '../../config/listener-fields.ts';
import type { ListenerCheck } from '../../core/protocol-descriptor.ts';

export const natsListenerSchema = z.strictObject({
  ...listenerFields,
  protocol: z.literal('nats'),
  /** Time a client has to send CONNECT after the proxy's INFO (nats-server's auth_timeout is 2 s; TLS adds a handshake). */
  handshakeTimeoutMs: z.number().int().positive().default(5000),
  /** `user`: CONNECT's user; `token`: auth_token up to `tokenSeparator`; `jwt`: the user JWT's name claim (else sub). */
  routeBy: z.enum(['user', 'token', 'jwt']).default('user'),
  /** routeBy: token — the tenant is the token's prefix before the first occurrence of this (default "."). */
  tokenSeparator: z.string().min(1).max(16).optional(),
  /** INFO's max_payload; every backend must allow at least this much. */
  maxPayload: z.number().int().min(1).max(64 * 1024 * 1024).default(1048576),
  /** INFO's headers; when true, every backend must support headers. */
  headers: z.boolean().default(true),
  /** INFO's version (clients enable features by it); every backend must be at least this version. */
  serverVersion: z
    .string()
    .regex(/^\d+\.\d+\.\d+$/, 'a version like 2.9.0')
    .default('2.2.0'),
});

export type NatsListenerConfig = z.output<typeof natsListenerSchema>;

export function checkNatsListener(listener: NatsListenerConfig, at: ListenerCheck): void {
  if (listener.routeBy !== 'token' && listener.tokenSeparator !== undefined) at.problem('tokenSeparator', 'tokenSeparator is only used with routeBy: token');
}
