/**
 * The http listener's fields: head limits, timeouts, telemetry headers and the backend pool.
 */
import { z } from 'zod';
import { listenerFields, positiveMs } from '../../config/listener-fields.ts';

export const httpListenerSchema = z.strictObject({
  ...listenerFields,
  protocol: z.literal('http'),
  /** Largest request or response head (request line and headers); larger requests get 431. */
  maxHeadBytes: z.number().int().min(1024).max(1024 * 1024).default(64 * 1024),
  /** Most header fields in one head; more get 431. */
  maxHeaders: z.number().int().min(1).max(10000).default(100),
  /** Time a client has to send a request head once it started one (408 past it). */
  requestTimeoutMs: positiveMs.default(30000),
  /** An idle keep-alive client connection is closed after this long. */
  keepAliveTimeoutMs: positiveMs.default(60000),
  /** A backend silent this long while a request is in flight: 504. */
  backendTimeoutMs: positiveMs.default(60000),
  /** Add X-Proxy-Resolve-Ms, X-Proxy-Cache and X-Proxy-Pool to responses. */
  telemetryHeaders: z.boolean().default(false),
  pool: z
    .strictObject({
      /** Idle keep-alive connections kept per backend endpoint. */
      maxPerBackend: z.number().int().min(0).default(64),
      idleTimeoutMs: positiveMs.default(30000),
      /** Connections per backend endpoint, active + idle (0 = unlimited); past it requests wait in a FIFO queue. */
      maxConnectionsPerBackend: z.number().int().min(0).default(256),
      /** How long a request waits for a connection slot before a 503. */
      queueTimeoutMs: positiveMs.default(5000),
      /** Requests waiting per backend endpoint; more get a 503 at once. */
      maxQueue: z.number().int().min(0).default(1024),
    })
    .default({ maxPerBackend: 64, idleTimeoutMs: 30000, maxConnectionsPerBackend: 256, queueTimeoutMs: 5000, maxQueue: 1024 }),
});

export type HttpListenerConfig = z.output<typeof httpListenerSchema>;
