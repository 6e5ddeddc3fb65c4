/**
 * The tcp listener's fields: how it routes without a fixed backend (SNI or first bytes),
 * and the rules between them.
 */
import { z } from 'zod';
import { listenerFields } from '../../config/listener-fields.ts';
import type { ListenerCheck } from '../../core/protocol-descriptor.ts';

export const tcpListenerSchema = z.strictObject({
  ...listenerFields,
  protocol: z.literal('tcp'),
  /** `sni` (needs `tls`): the resource id is the TLS server name instead of the listener name. */
  routeBy: z.literal('sni', { error: 'routeBy must be "sni" (and needs tls)' }).optional(),
  /** Without a backend: how long to wait for the client's first bytes before routing (0 = do not wait; default 1000). */
  firstBytesTimeoutMs: z.number().int().min(0).optional(),
  /** Without a backend: at most this many first bytes are handed to the resolver (default 4096). */
  firstBytesMax: z.number().int().min(1).max(65536).optional(),
  /**
   * For backends that speak first (or answer the client's first bytes): the
   * backend must send a byte within this long once connected, or the session
   * ends and the endpoint's breaker counts a failure. 0 (default) = off, as a
   * raw TCP backend may rightly stay silent.
   */
  firstResponseTimeoutMs: z.number().int().min(0).default(0),
});

export type TcpListenerConfig = z.output<typeof tcpListenerSchema>;

/** A tcp listener needs somewhere to send clients; SNI routing needs TLS to read the name from. */
export function checkTcpListener(listener: TcpListenerConfig, at: ListenerCheck): void {
  if (listener.routeBy === 'sni' && listener.tls === undefined) at.problem('routeBy', 'routeBy: sni needs tls (the proxy reads the server name from the TLS handshake it terminates)');
  if (listener.backend !== undefined) {
    if (listener.routeBy !== undefined) at.problem('routeBy', 'routeBy cannot be used with a fixed backend: remove one of them');
  } else if (Object.keys(at.config.routes).length === 0 && at.config.resolver.module === undefined) {
    at.problem('backend', 'a tcp listener needs a backend, or routes / resolver.module to route its connections');
  }
  if (listener.backend === undefined && listener.routeBy === undefined && (listener.firstBytesTimeoutMs ?? 1000) >= listener.handshakeTimeoutMs) {
    at.problem('firstBytesTimeoutMs', `must be shorter than handshakeTimeoutMs (${listener.handshakeTimeoutMs})`);
  }
}
