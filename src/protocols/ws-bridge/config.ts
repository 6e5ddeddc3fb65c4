/**
 * The ws-bridge listener's fields (DESIGN.md "ws2api protocol"). It runs its own
 * HTTP server: the common `tls` and `backend` fields do not apply (checked
 * below), `connectTimeoutMs` bounds connecting to the API.
 */
import { z } from 'zod';
import { listenerFields, positiveMs } from '../../config/listener-fields.ts';
import type { ListenerCheck } from '../../core/protocol-descriptor.ts';

export const wsBridgeListenerSchema = z.strictObject({
  ...listenerFields,
  protocol: z.literal('ws-bridge'),
  /** The API base URL: the bridge calls GET/POST/DELETE `<api><ClientId>`. */
  api: z.url({ protocol: /^https?$/, error: 'api must be an http:// or https:// URL' }),
  /** The bridge's own metrics (Prometheus text) on its port. */
  metricsPath: z.string().regex(/^\/[^\s?#]*$/, 'a path starting with "/"').default('/metrics'),
  /** `ordered`: one API request at a time per client, in arrival order; `parallel`: each message at once. */
  ordering: z.enum(['ordered', 'parallel']).default('ordered'),
  /** A second connection with a connected ClientId: `replace` closes the old one (4409), `refuse` answers 409. */
  duplicateClientId: z.enum(['replace', 'refuse']).default('replace'),
  /** How often idle clients are pinged (one sweep per listener). */
  pingIntervalMs: positiveMs.default(30000),
  /** A client silent (no pong, no message) this long is cut off. */
  deadPeerTimeoutMs: positiveMs.default(70000),
  /**
   * A client message whose POST fails (API down, timeout, 5xx) is lost;
   * what the client learns of it (issue 15): `drop` nothing (ws2api's
   * behaviour), `error-message` a text message
   * `{"error":"api_unavailable"|"api_timeout","status":502|504}`, `close`
   * a close with 1011 "API unavailable" (RFC 6455 §7.4.1).
   */
  onApiFailure: z.enum(['drop', 'error-message', 'close']).default('drop'),
  /** Largest WebSocket message, push body or API response, in bytes. */
  maxMessageBytes: z.number().int().min(1).max(100 * 1024 * 1024).default(1024 * 1024),
  pool: z
    .strictObject({
      /** Connections to the API per worker process. */
      maxConnections: z.number().int().min(1).default(10000),
      /** Connections kept open between requests; more are closed when their request ends. */
      maxIdle: z.number().int().min(0).default(1000),
      /** An idle API connection is closed after this long. */
      idleTimeoutMs: positiveMs.default(60000),
      /** An API request whose answer takes longer fails (504 for an upgrade). */
      timeoutMs: positiveMs.default(60000),
    })
    .default({ maxConnections: 10000, maxIdle: 1000, idleTimeoutMs: 60000, timeoutMs: 60000 }),
});

export type WsBridgeListenerConfig = z.output<typeof wsBridgeListenerSchema>;

/** The bridge serves plain HTTP/WebSocket itself and calls a fixed API. */
export function checkWsBridgeListener(listener: WsBridgeListenerConfig, at: ListenerCheck): void {
  if (listener.tls !== undefined) at.problem('tls', 'ws-bridge does not terminate TLS: put a tcp listener with tls (backend: the bridge port) or a load balancer in front');
  if (listener.backend !== undefined) at.problem('backend', 'ws-bridge has no backend: it calls `api`');
  if (listener.deadPeerTimeoutMs <= listener.pingIntervalMs) at.problem('deadPeerTimeoutMs', `must be longer than pingIntervalMs (${listener.pingIntervalMs})`);
}
