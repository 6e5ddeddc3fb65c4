/**
 * The redis listener's fields: how the tenant is learnt, and the rule that
 * SNI routing needs the TLS the listener terminates.
 */
import { z } from 'zod';
import { listenerFields } from '../../config/listener-fields.ts';
import type { ListenerCheck } from '../../core/protocol-descriptor.ts';

export const redisListenerSchema = z.strictObject({
  ...listenerFields,
  protocol: z.literal('redis'),
  /**
   * `user` (default): the ACL user of `AUTH <user> <pass>` or `HELLO <ver> AUTH <user> <pass>`;
   * `sni` (needs `tls`): the TLS server name, and every command goes to the backend as sent.
   */
  routeBy: z.enum(['user', 'sni']).default('user'),
});

export type RedisListenerConfig = z.output<typeof redisListenerSchema>;

export function checkRedisListener(listener: RedisListenerConfig, at: ListenerCheck): void {
  if (listener.routeBy === 'sni' && listener.tls === undefined) at.problem('routeBy', 'routeBy: sni needs tls (the proxy reads the server name from the TLS handshake it terminates)');
}
