/**
 * The config file's schema (DESIGN.md §3). Strict objects: a misspelt field
 * is an error that names it, never silently ignored.
 */
import os from 'node:os';
import { z } from 'zod';
import { LOG_LEVELS } from '../core/logger.ts';
import type { ProtocolDescriptor } from '../core/protocol-descriptor.ts';
import { SsrfGuard } from '../core/ssrf-guard.ts';
import { PROTOCOLS, protocolOf } from '../protocols/index.ts';
import { limitsSchema } from '../core/limits/config.ts';
import { endpoint, positiveMs } from './listener-fields.ts';
import type { tlsSchema } from './listener-fields.ts';

export { sniCertificateSchema, tlsSchema } from './listener-fields.ts';

const allowEntry = z.string().superRefine((value, ctx) => {
  try {
    SsrfGuard.validateAllowEntry(value);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

/** The table's schemas, as a tuple of their own types (a map over the table loses them). */
type SchemasOf<Table extends readonly ProtocolDescriptor[]> = { -readonly [K in keyof Table]: Table[K] extends ProtocolDescriptor<infer S> ? S : never };

/** One schema per row of the protocol table, told apart by `protocol`. */
export const listenerSchema = z.discriminatedUnion('protocol', PROTOCOLS.map((p) => p.schema) as unknown as SchemasOf<typeof PROTOCOLS>, {
  error: (issue) => (issue.code === 'invalid_union' ? `protocol must be one of: ${PROTOCOLS.map((p) => p.name).join(', ')}` : undefined),
});

/** redis:// or rediss:// (TLS), as node-redis reads it. */
const redisUrl = z.url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' });

/** Redis Sentinel: the master named `name`, found through `nodes` (host:port of the sentinels). */
const sentinelSchema = z.strictObject({
  name: z.string().min(1),
  nodes: z.array(z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):\d{1,5}$/, 'host:port of a sentinel')).min(1),
  username: z.string().min(1).optional(),
  password: z.string().optional(),
});

/** Redis Cluster: some of its nodes (host:port); the client discovers the rest and follows slot moves. */
const redisClusterSchema = z.strictObject({
  nodes: z.array(z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):\d{1,5}$/, 'host:port of a cluster node')).min(1),
  username: z.string().min(1).optional(),
  password: z.string().optional(),
});

/** Where a Redis is: one server (`url`), a Sentinel-managed master (`sentinel`) or a Redis Cluster (`cluster`), and the key prefix. */
function redisTarget(prefix: string) {
  return z
    .strictObject({
      url: redisUrl.optional(),
      sentinel: sentinelSchema.optional(),
      cluster: redisClusterSchema.optional(),
      prefix: z.string().default(prefix),
    })
    .refine((target) => [target.url, target.sentinel, target.cluster].filter((t) => t !== undefined).length === 1, {
      message: 'set url (one server), sentinel (a Sentinel-managed master) or cluster (a Redis Cluster), one of them',
    });
}

/** TLS to a route's HTTP/2 backends: SNI name, the CA file their certificates must chain to (default: the system's), verification. */
const backendTlsSchema = z.strictObject({
  servername: z.string().min(1).max(253).optional(),
  /** A PEM file (read at load and reload). */
  ca: z.string().min(1).optional(),
  rejectUnauthorized: z.boolean().optional(),
});

const routeValue = z.union([
  endpoint,
  z.array(endpoint).min(1),
  z.strictObject({ primary: endpoint, replicas: z.array(endpoint).optional() }),
  /** `{ endpoint, protocol: h2 }`: the http listener speaks HTTP/2 (h2c) to these backends; with `tls`, HTTP/2 over TLS. */
  z
    .strictObject({
      endpoint: z.union([endpoint, z.array(endpoint).min(1)]),
      protocol: z.enum(['h1', 'h2']).optional(),
      tls: z.union([z.literal(true), backendTlsSchema]).optional(),
    })
    .refine((route) => route.tls === undefined || route.protocol === 'h2', { message: 'tls needs protocol: h2 (TLS to backends is HTTP/2 only)', path: ['tls'] }),
]);

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
        /** How often the dashboard's 15-minute history (GET /api/history) samples the stats. */
        historyIntervalMs: z.number().int().min(100).max(60000).default(5000),
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
        /** Routes kept in Redis: GET <prefix><id> -> "host:port" or a JSON Route. */
        redis: redisTarget('polyproxy:route:').optional(),
        /** The control plane over HTTP: GET <url>?id=&protocol=&listener= -> JSON Route; 404 = not known here. */
        http: z
          .strictObject({
            url: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }),
            timeoutMs: positiveMs.default(1000),
            /** POST activity to <url>/track at most once per resource per trackIntervalMs. */
            track: z.boolean().default(false),
          })
          .optional(),
        /** Resolver calls slower than this fail with TIMEOUT. */
        timeoutMs: positiveMs.default(5000),
        /** track(resourceId, activity) is called at most this often per resource, with the bytes and connections since the last call. */
        trackIntervalMs: positiveMs.default(10000),
      })
      .default({ timeoutMs: 5000, trackIntervalMs: 10000 }),
    /** A fleet of instances sharing purges, cold-start locks, ws-bridge clients, cancel keys and counters through Redis. */
    cluster: z
      .strictObject({
        redis: redisTarget('polyproxy:'),
        /** This instance's name in the fleet; default: hostname-pid. */
        instanceId: z.string().min(1).max(200).regex(/^[^\s|]+$/, 'no spaces or "|"').optional(),
        /** What the fleet view shows as this instance's address; default: the host name. */
        address: z.string().min(1).optional(),
        heartbeatMs: positiveMs.default(5000),
        /** Bound on every Redis command on a client's path; slower counts as Redis down (local fallback). */
        commandTimeoutMs: positiveMs.default(500),
        connectTimeoutMs: positiveMs.default(2000),
      })
      .optional(),
    /** Tenant limits (core/limits): defaults, per-tenant overrides, fair share. Absent: no limits but the routes' own. */
    limits: limitsSchema.optional(),
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
      const path = ['listeners', i];
      protocolOf(listener).check?.(listener, { config, path, problem: (field, message) => ctx.addIssue({ code: 'custom', path: [...path, field], message }) });
      if (listener.tls?.requireClientCert === true && listener.tls.ca === undefined) {
        ctx.addIssue({ code: 'custom', path: ['listeners', i, 'tls', 'ca'], message: 'requireClientCert needs a ca to verify client certificates against' });
      }
    });
  })
  // Every listener gets a name: logs, hooks and the resolver context use it.
  .transform((config) => ({ ...config, listeners: config.listeners.map((listener, i) => ({ ...listener, name: listener.name ?? defaultListenerName(listener, i) })) }));

/** `<protocol>-<port>`; for port 0 (any free port) the position: `<protocol>-listener<index>`. */
function defaultListenerName(listener: { protocol: string; port: number }, index: number): string {
  return listener.port === 0 ? `${listener.protocol}-listener${index}` : `${listener.protocol}-${listener.port}`;
}

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
export type ListenerConfig = Config['listeners'][number];
export type TlsConfig = z.output<typeof tlsSchema>;
