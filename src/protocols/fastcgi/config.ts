/**
 * The fastcgi listener's fields (issue #7): HTTP in, FastCGI out over `backends`,
 * like nginx `fastcgi_pass`. It runs its own HTTP server: `tls` and `backend`
 * do not apply (checked below).
 */
import { z } from 'zod';
import { endpoint, listenerFields, positiveMs } from '../../config/listener-fields.ts';
import type { ListenerCheck } from '../../core/protocol-descriptor.ts';

export const fastcgiListenerSchema = z.strictObject({
  ...listenerFields,
  protocol: z.literal('fastcgi'),
  /** FastCGI servers (php-fpm pools): `host:port` or `unix:/path`. */
  backends: z.array(endpoint).min(1),
  balance: z.enum(['round-robin', 'random']).default('round-robin'),
  /** Prefix of SCRIPT_FILENAME (the document root as php-fpm sees it). */
  documentRoot: z.string().min(1).regex(/^\//, 'an absolute path'),
  /** Script for paths ending in "/" and for paths without a ".php" segment (front controller). */
  index: z.string().min(1).regex(/^[^/]/, 'a file name relative to the directory').default('index.php'),
  /** A backend silent this long while a request is in flight: 504 (nginx fastcgi_read_timeout). */
  backendTimeoutMs: positiveMs.default(60000),
  /** An idle keep-alive client connection is closed after this long. */
  keepAliveTimeoutMs: positiveMs.default(60000),
  /** Time a client has to send its request head. */
  requestTimeoutMs: positiveMs.default(30000),
  /** How often a backend marked down is probed (a connect) to readmit it. */
  healthCheckIntervalMs: positiveMs.default(5000),
  /** FastCGI connections per backend, active + idle (kept with FCGI_KEEP_CONN); keep it ≤ the pool's pm.max_children. */
  maxConnectionsPerBackend: z.number().int().min(1).default(8),
  /** A kept FastCGI connection idle this long is closed: it pins a php-fpm worker while open. */
  backendIdleTimeoutMs: positiveMs.default(10000),
  /** Request bodies without Content-Length (chunked) are buffered up to this size to compute CONTENT_LENGTH; larger get 413. */
  maxBufferedBodyBytes: z.number().int().min(0).default(16 * 1024 * 1024),
  /** Extra FastCGI params for every request (nginx `fastcgi_param`), e.g. APP_ENV. */
  params: z.record(z.string().regex(/^[^\s=]+$/, 'a parameter name without spaces'), z.string()).default({}),
});

export type FastCgiListenerConfig = z.output<typeof fastcgiListenerSchema>;

/** The gateway serves plain HTTP itself and speaks FastCGI to its own `backends`. */
export function checkFastCgiListener(listener: FastCgiListenerConfig, at: ListenerCheck): void {
  if (listener.tls !== undefined) at.problem('tls', 'the fastcgi gateway does not terminate TLS yet: put a tcp listener with tls (backend: the gateway port) in front');
  if (listener.backend !== undefined) at.problem('backend', 'a fastcgi listener uses `backends` (a list), not `backend`');
}
