/**
 * Schema pieces shared by the config file (src/config/schema.ts) and every
 * protocol's listener schema (src/protocols/<name>/config.ts): endpoints,
 * TLS, and the fields every listener has. It imports nothing from
 * src/protocols, so both sides use it without an import cycle.
 */
import { z } from 'zod';
import { parseEndpoint } from '../core/endpoint.ts';
import { normalizeServerName, serverNamePatternProblem } from '../core/sni.ts';

/** `host:port`, `[v6]:port` or `unix:/path`. */
export const endpoint = z.string().superRefine((value, ctx) => {
  try {
    parseEndpoint(value);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

export const endpointList = z.union([endpoint, z.array(endpoint).min(1)]);

export const positiveMs = z.number().int().positive();

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

/** The fields of every listener; a protocol's schema spreads them and adds `protocol` and its own. */
export const listenerFields = {
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
  /**
   * TCP keepalive on client and backend sockets: the first probe after this
   * long without traffic, so a peer that vanished (host down, NAT state
   * dropped) is found and its session ends. 0 = off. The probe interval and
   * count are the system's (Node sets only the idle time).
   */
  tcpKeepAliveMs: z.number().int().min(0).default(60000),
  /** Concurrent connections on this listener; 0 = a share of the open-files limit (core/fd-limit.ts), unlimited only when that limit is unknown. */
  maxConnections: z.number().int().min(0).default(0),
};
