/**
 * The config file's schema (DESIGN.md §3). Strict objects: a misspelt field
 * is an error that names it, never silently ignored.
 */
import os from 'node:os';
import { z } from 'zod';
import { parseEndpoint } from '../core/endpoint.ts';
import { LOG_LEVELS } from '../core/logger.ts';
import { normalizeServerName, serverNamePatternProblem } from '../core/sni.ts';
import { SsrfGuard } from '../core/ssrf-guard.ts';

const endpoint = z.string().superRefine((value, ctx) => {
  try {
    parseEndpoint(value);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

const endpointList = z.union([endpoint, z.array(endpoint).min(1)]);

const allowEntry = z.string().superRefine((value, ctx) => {
  try {
    SsrfGuard.validateAllowEntry(value);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

const positiveMs = z.number().int().positive();

const serverNamePattern = z.string().superRefine((value, ctx) => {
  const problem = serverNamePatternProblem(value);
  if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
});

/** A certificate served to clients whose SNI server name matches one of `names`. */
export const sniCertificateSchema = z.strictObject({
  /** Exact host names or `*.domain` (one leftmost label); case-insensitive; an exact name beats a wildcard. */
  names: z.array(serverNamePattern).min(1),
  cert: z.string().min(1),
  key: z.string().min(1),
});

export const tlsSchema = z.strictObject({
  /** The default certificate: clients without SNI or with a name no `certificates` entry lists. */
  cert: z.string().min(1),
  key: z.string().min(1),
  /** More certificates chosen by the client's SNI server name. */
  certificates: z
    .array(sniCertificateSchema)
    .optional()
    .superRefine((list, ctx) => {
      const seen = new Map<string, number>();
      list?.forEach((entry, i) =>
        entry.names.forEach((name, j) => {
          const key = normalizeServerName(name);
          const first = seen.get(key);
          if (first !== undefined) ctx.addIssue({ code: 'custom', path: [i, 'names', j], message: `"${name}" is already listed by certificates.${first}` });
          else seen.set(key, i);
        }),
      );
    }),
  /** CA bundle used to verify client certificates. */
  ca: z.string().min(1).optional(),
  /** Refuse clients without a certificate signed by `ca`. */
  requireClientCert: z.boolean().default(false),
});

const listenerCommon = {
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'use letters, digits, "_", "." or "-"').optional(),
  host: z.string().min(1).default('0.0.0.0'),
  port: z.number().int().min(0).max(65535),
  tls: tlsSchema.optional(),
  /** A fixed backend for every connection: skips routing. */
  backend: endpointList.optional(),
  connectTimeoutMs: positiveMs.default(5000),
  /** Close sessions with no traffic either way for this long; 0 keeps them forever. */
  idleTimeoutMs: z.number().int().min(0).default(0),
  /** Time a client has to complete its opening (startup packet, TLS handshake). */
  handshakeTimeoutMs: positiveMs.default(10000),
  /** Concurrent connections on this listener; 0 = a share of the open-files limit (core/fd-limit.ts), unlimited when it is unknown. */
  maxConnections: z.number().int().min(0).default(0),
};

export const postgresListenerSchema = z.strictObject({ ...listenerCommon, protocol: z.literal('postgres') });
export const mongodbListenerSchema = z.strictObject({ ...listenerCommon, protocol: z.literal('mongodb') });
export const mysqlListenerSchema = z.strictObject({
  ...listenerCommon,
  protocol: z.literal('mysql'),
  /** The server version the proxy's own greeting announces (before the backend is known). */
  serverVersion: z.string().min(1).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces').optional(),
});
export const tcpListenerSchema = z.strictObject({
  ...listenerCommon,
  protocol: z.literal('tcp'),
  /** `sni` (needs `tls`): the resource id is the TLS server name instead of the listener name. */
  routeBy: z.literal('sni', { error: 'routeBy must be "sni" (and needs tls)' }).optional(),
  /** Without a backend: how long to wait for the client's first bytes before routing (0 = do not wait; default 1000). */
  firstBytesTimeoutMs: z.number().int().min(0).optional(),
  /** Without a backend: at most this many first bytes are handed to the resolver (default 4096). */
  firstBytesMax: z.number().int().min(1).max(65536).optional(),
});

export const smtpListenerSchema = z.strictObject({
  ...listenerCommon,
  protocol: z.literal('smtp'),
  /** Time a client has to reach the routing command (EHLO, or the first RCPT TO with routeBy: rcpt). */
  handshakeTimeoutMs: positiveMs.default(60000),
  /** `ehlo`: route by the EHLO/HELO domain; `rcpt`: by the first RCPT TO domain. */
  routeBy: z.enum(['ehlo', 'rcpt']).default('ehlo'),
  /** The name in the proxy's 220 banner and EHLO replies (default: the machine's host name). */
  hostname: z.string().min(1).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces').optional(),
  /** Longest MAIL/RCPT line with ESMTP parameters (other commands: 512 octets, RFC 5321 4.5.3.1.4). */
  maxLineLength: z.number().int().min(512).max(65536).default(4096),
  /** RFC 5321 4.5.3.2.7: how long the proxy waits for a client command (also the relayed session's idle limit). */
  commandTimeoutMs: positiveMs.default(300000),
});

export const httpListenerSchema = z.strictObject({
  ...listenerCommon,
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

/**
 * The WebSocket ↔ HTTP bridge (DESIGN.md "ws2api protocol"): runs its own
 * HTTP server; the common `tls` and `backend` fields do not apply (checked
 * below), `connectTimeoutMs` bounds connecting to the API.
 */
export const wsBridgeListenerSchema = z.strictObject({
  ...listenerCommon,
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

/**
 * The FastCGI gateway (issue #7): HTTP in, FastCGI out over `backends`, like
 * nginx `fastcgi_pass`. Runs its own HTTP server; `tls` and `backend` do not
 * apply (checked below).
 */
export const fastcgiListenerSchema = z.strictObject({
  ...listenerCommon,
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

export const listenerSchema = z.discriminatedUnion('protocol', [postgresListenerSchema, tcpListenerSchema, mongodbListenerSchema, mysqlListenerSchema, smtpListenerSchema, httpListenerSchema, wsBridgeListenerSchema, fastcgiListenerSchema], {
  error: (issue) => (issue.code === 'invalid_union' ? 'protocol must be one of: postgres, tcp, mongodb, mysql, smtp, http, ws-bridge, fastcgi' : undefined),
});

const routeValue = z.union([endpoint, z.array(endpoint).min(1), z.strictObject({ primary: endpoint, replicas: z.array(endpoint).optional() })]);

export const configSchema = z
  .strictObject({
    /** Worker processes sharing the listening ports. */
    workers: z.number().int().min(1).max(256).default(() => os.availableParallelism()),
    logLevel: z.enum(LOG_LEVELS).default('info'),
    /** How long a drain (SIGTERM/SIGINT) lets open sessions finish before closing them. */
    shutdownTimeoutSeconds: z.number().min(0).default(30),
    security: z
      .strictObject({
        allowPrivateBackends: z.boolean().default(false),
        allowBackends: z.array(allowEntry).default([]),
      })
      .default({ allowPrivateBackends: false, allowBackends: [] }),
    cache: z
      .strictObject({
        ttlSeconds: z.number().min(0).default(60),
        maxEntries: z.number().int().min(1).default(100000),
      })
      .default({ ttlSeconds: 60, maxEntries: 100000 }),
    /** Admin HTTP server (/metrics, /healthz, /readyz, /api/stats, purge, dashboard). Absent: none. */
    admin: z
      .strictObject({
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535),
        /** Host names requests may use besides IP literals and localhost (DNS-rebinding guard; see README). */
        allowedHosts: z.array(z.string().min(1)).optional(),
      })
      .optional(),
    metrics: z
      .strictObject({
        /** Resources (tenants) with their own metrics rows; the rest count as "_other". */
        maxResources: z.number().int().min(1).max(100000).default(1000),
      })
      .default({ maxResources: 1000 }),
    /** Active probes and circuit breakers per backend endpoint. */
    health: z
      .strictObject({
        /** Probe period per endpoint in use; 0 turns active probes off. */
        intervalMs: z.number().int().min(0).default(2000),
        timeoutMs: positiveMs.default(1000),
        /** Consecutive good probes that close an open breaker. */
        rise: z.number().int().min(1).default(2),
        /** Consecutive failed probes that open the breaker. */
        fall: z.number().int().min(1).default(2),
        /** Consecutive failed connects that open the breaker. */
        failureThreshold: z.number().int().min(1).default(3),
        /** How long an open breaker refuses before one trial connection. */
        openMs: positiveMs.default(10000),
        /** http listeners' backends are probed with GET <httpPath> (2xx/3xx healthy) instead of a bare connect. */
        httpPath: z.string().regex(/^\/[\x21-\x7e]*$/, 'an absolute path such as /healthz').optional(),
      })
      .default({ intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 2, failureThreshold: 3, openMs: 10000 }),
    /** Connections held while a resolver's coldStart.wake() brings a backend up. */
    coldStart: z
      .strictObject({
        timeoutMs: positiveMs.default(30000),
        maxWaiting: z.number().int().min(1).default(1000),
        pollIntervalMs: positiveMs.default(100),
      })
      .default({ timeoutMs: 30000, maxWaiting: 1000, pollIntervalMs: 100 }),
    routes: z.record(z.string().min(1), routeValue).default({}),
    resolver: z
      .strictObject({
        /** A JS/TS module whose default export is a Resolver or a function (config) => Resolver. */
        module: z.string().min(1).optional(),
        /** Resolver calls slower than this fail with TIMEOUT. */
        timeoutMs: positiveMs.default(5000),
      })
      .default({ timeoutMs: 5000 }),
    listeners: z.array(listenerSchema).min(1, 'at least one listener is needed'),
  })
  .superRefine((config, ctx) => {
    const names = new Set<string>();
    const ports = new Set<string>();
    config.listeners.forEach((listener, i) => {
      const name = listener.name ?? defaultListenerName(listener, i);
      if (names.has(name)) ctx.addIssue({ code: 'custom', path: ['listeners', i, 'name'], message: `duplicate listener name "${name}"` });
      names.add(name);
      const port = `${listener.host}:${listener.port}`;
      if (listener.port !== 0 && ports.has(port)) ctx.addIssue({ code: 'custom', path: ['listeners', i, 'port'], message: `port ${listener.port} is used by another listener` });
      ports.add(port);
      if (listener.protocol === 'tcp') checkTcpListener(listener, i, config, ctx);
      if (listener.protocol === 'ws-bridge') checkWsBridgeListener(listener, i, ctx);
      if (listener.protocol === 'fastcgi') checkFastCgiListener(listener, i, ctx);
      if (listener.tls?.requireClientCert === true && listener.tls.ca === undefined) {
        ctx.addIssue({ code: 'custom', path: ['listeners', i, 'tls', 'ca'], message: 'requireClientCert needs a ca to verify client certificates against' });
      }
    });
  })
  // Every listener gets a name: logs, hooks and the resolver context use it.
  .transform((config) => ({ ...config, listeners: config.listeners.map((listener, i) => ({ ...listener, name: listener.name ?? defaultListenerName(listener, i) })) }));

/** A tcp listener needs somewhere to send clients; SNI routing needs TLS to read the name from. */
function checkTcpListener(
  listener: z.output<typeof tcpListenerSchema>,
  i: number,
  config: { routes: Record<string, unknown>; resolver: { module?: string | undefined } },
  ctx: z.RefinementCtx,
): void {
  const at = (field: string): Array<string | number> => ['listeners', i, field];
  if (listener.routeBy === 'sni' && listener.tls === undefined) ctx.addIssue({ code: 'custom', path: at('routeBy'), message: 'routeBy: sni needs tls (the proxy reads the server name from the TLS handshake it terminates)' });
  if (listener.backend !== undefined) {
    if (listener.routeBy !== undefined) ctx.addIssue({ code: 'custom', path: at('routeBy'), message: 'routeBy cannot be used with a fixed backend: remove one of them' });
  } else if (Object.keys(config.routes).length === 0 && config.resolver.module === undefined) {
    ctx.addIssue({ code: 'custom', path: at('backend'), message: 'a tcp listener needs a backend, or routes / resolver.module to route its connections' });
  }
  if (listener.backend === undefined && listener.routeBy === undefined && (listener.firstBytesTimeoutMs ?? 1000) >= listener.handshakeTimeoutMs) {
    ctx.addIssue({ code: 'custom', path: at('firstBytesTimeoutMs'), message: `must be shorter than handshakeTimeoutMs (${listener.handshakeTimeoutMs})` });
  }
}

/** The bridge serves plain HTTP/WebSocket itself and calls a fixed API. */
function checkWsBridgeListener(listener: z.output<typeof wsBridgeListenerSchema>, i: number, ctx: z.RefinementCtx): void {
  const at = (field: string): Array<string | number> => ['listeners', i, field];
  if (listener.tls !== undefined) ctx.addIssue({ code: 'custom', path: at('tls'), message: 'ws-bridge does not terminate TLS: put a tcp listener with tls (backend: the bridge port) or a load balancer in front' });
  if (listener.backend !== undefined) ctx.addIssue({ code: 'custom', path: at('backend'), message: 'ws-bridge has no backend: it calls `api`' });
  if (listener.deadPeerTimeoutMs <= listener.pingIntervalMs) ctx.addIssue({ code: 'custom', path: at('deadPeerTimeoutMs'), message: `must be longer than pingIntervalMs (${listener.pingIntervalMs})` });
}

/** The gateway serves plain HTTP itself and speaks FastCGI to its own `backends`. */
function checkFastCgiListener(listener: z.output<typeof fastcgiListenerSchema>, i: number, ctx: z.RefinementCtx): void {
  const at = (field: string): Array<string | number> => ['listeners', i, field];
  if (listener.tls !== undefined) ctx.addIssue({ code: 'custom', path: at('tls'), message: 'the fastcgi gateway does not terminate TLS yet: put a tcp listener with tls (backend: the gateway port) in front' });
  if (listener.backend !== undefined) ctx.addIssue({ code: 'custom', path: at('backend'), message: 'a fastcgi listener uses `backends` (a list), not `backend`' });
}

/** `postgres-6432`; for port 0 (any free port) the position: `postgres-listener1`. */
function defaultListenerName(listener: { protocol: string; port: number }, index: number): string {
  return listener.port === 0 ? `${listener.protocol}-listener${index}` : `${listener.protocol}-${listener.port}`;
}

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
export type ListenerConfig = Config['listeners'][number];
export type TlsConfig = z.output<typeof tlsSchema>;
