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
  /** Concurrent connections on this listener; 0 = unlimited. */
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

export const listenerSchema = z.discriminatedUnion('protocol', [postgresListenerSchema, tcpListenerSchema, mongodbListenerSchema, mysqlListenerSchema, smtpListenerSchema, httpListenerSchema], {
  error: (issue) => (issue.code === 'invalid_union' ? 'protocol must be one of: postgres, tcp, mongodb, mysql, smtp, http' : undefined),
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

/** `postgres-6432`; for port 0 (any free port) the position: `postgres-listener1`. */
function defaultListenerName(listener: { protocol: string; port: number }, index: number): string {
  return listener.port === 0 ? `${listener.protocol}-listener${index}` : `${listener.protocol}-${listener.port}`;
}

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
export type ListenerConfig = Config['listeners'][number];
export type TlsConfig = z.output<typeof tlsSchema>;
