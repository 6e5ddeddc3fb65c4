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
  /** HTTP/2 to clients (ALPN h2 with TLS, h2c prior knowledge without) and to h2/gRPC backends. */
  http2: z
    .strictObject({
      /** false: ALPN offers http/1.1 only and an HTTP/2 preface is refused as HTTP/1.1 would. */
      enabled: z.boolean().default(true),
      /** SETTINGS_MAX_CONCURRENT_STREAMS offered to clients; more open streams are refused (RST_STREAM REFUSED_STREAM). */
      maxConcurrentStreams: z.number().int().min(1).max(2 ** 31 - 1).default(128),
      /** SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 §6.5.2): a larger request header list is reset (RST_STREAM, §10.5.1). Default: maxHeadBytes. */
      maxHeaderListSize: z.number().int().min(1024).max(16 * 1024 * 1024).optional(),
      /** SETTINGS_INITIAL_WINDOW_SIZE: each stream's receive window (flow control, RFC 9113 §6.9.2). */
      initialWindowSize: z.number().int().min(16384).max(2 ** 31 - 1).default(65535),
      /** The connection's receive window, announced with a WINDOW_UPDATE on stream 0. */
      connectionWindowSize: z.number().int().min(65535).max(2 ** 31 - 1).default(1024 * 1024),
      /** Streams a client may reset within resetWindowMs before the connection is closed with GOAWAY ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487). */
      maxResets: z.number().int().min(1).default(200),
      resetWindowMs: positiveMs.default(10000),
    })
    .default({ enabled: true, maxConcurrentStreams: 128, initialWindowSize: 65535, connectionWindowSize: 1024 * 1024, maxResets: 200, resetWindowMs: 10000 }),
});

export type HttpListenerConfig = z.output<typeof httpListenerSchema>;
