/**
 * The postgres listener's fields: the common ones (src/config/listener-fields.ts),
 * and proxy-side authentication (`auth`).
 */
import { z } from 'zod';
import { listenerFields } from '../../config/listener-fields.ts';
import type { ListenerCheck } from '../../core/protocol-descriptor.ts';
import { readWriteSplitSchema } from '../../core/rw-split/config.ts';
import { parseScramSecret } from './auth/scram.ts';

const scramSecret = z.string().refine((text) => parseScramSecret(text) !== undefined, 'must be a stored verifier: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (base64 salt, 32-byte keys)');

/** A user the proxy authenticates: a password, or a SCRAM verifier (no password in the config). */
const userSchema = z.union([
  z.strictObject({
    password: z.string().min(1),
    /** Log in to the backend with this password instead (the backend knows the user by another one). */
    backendPassword: z.string().min(1).optional(),
  }),
  z.strictObject({
    scramSecret,
    /**
     * Log in to the backend with this password instead of the client's
     * SCRAM keys (needed when the backend's verifier for the user has
     * another salt or iteration count than `scramSecret`, or it asks md5).
     */
    backendPassword: z.string().min(1).optional(),
  }),
]);

export const authSchema = z.strictObject({
  /**
   * The challenge, as a pg_hba method: scram-sha-256 (default); md5 (md5
   * for users whose secret is a password or an md5 secret, SCRAM for
   * SCRAM verifiers, as PostgreSQL does); password (cleartext, only over
   * TLS: clients without it are refused).
   */
  method: z.enum(['scram-sha-256', 'md5', 'password']).default('scram-sha-256'),
  users: z.record(z.string().min(1), userSchema).default({}),
  /** PgBouncer's auth_query: the secret of users not found above, asked from the tenant's backend. */
  authQuery: z
    .strictObject({
      user: z.string().min(1),
      /** The auth user's password (absent: the backend trusts it). */
      password: z.string().min(1).optional(),
      /** The database the auth user connects to; default: the client's. */
      database: z.string().min(1).optional(),
      /** Returns (name, secret) for the user name in $1; a NULL secret or no row means no login. */
      query: z.string().min(1).default('SELECT usename, passwd FROM pg_shadow WHERE usename = $1'),
      /** How long an answer (found or not) is reused per backend, database and user. */
      cacheTtlMs: z.number().int().min(0).default(10000),
    })
    .optional(),
});

export type PostgresAuthConfig = z.output<typeof authSchema>;

/** Server-connection pooling (src/protocols/postgres/pool/); needs `auth`. Every limit is per worker process. */
export const poolSchema = z.strictObject({
  /** session: a server connection per client session (given back with DISCARD ALL); transaction: per transaction. */
  mode: z.enum(['session', 'transaction']).default('transaction'),
  /** Server connections per (backend endpoint, database, user): active + idle + logging in. */
  size: z.number().int().min(1).max(10000).default(20),
  /** Server connections per key kept open even when idle. */
  minSize: z.number().int().min(0).default(0),
  /** Client sessions per tenant (routed database); past it 53300. 0 = no limit. */
  maxClientConnections: z.number().int().min(0).default(1000),
  /** Server connections per backend endpoint, shared by every tenant on it. 0 = no limit. */
  maxServerConnectionsPerBackend: z.number().int().min(0).default(100),
  /** How long a client waits for a server connection (FIFO) before 53300. 0 = forever. */
  queueTimeoutMs: z.number().int().min(0).default(5000),
  /** An idle server connection (beyond minSize) is closed after this long. */
  serverIdleTimeoutMs: z.number().int().min(1).default(600000),
});

export type PostgresPoolConfig = z.output<typeof poolSchema>;

export const postgresListenerSchema = z.strictObject({
  ...listenerFields,
  protocol: z.literal('postgres'),
  /**
   * The backend must answer the StartupMessage (its first byte) within this
   * long; past it the client gets 57P03, the session ends and the endpoint's
   * circuit breaker counts a failure. 0 = wait forever. With `auth`, the
   * proxy's whole login to the backend has this deadline (0: the
   * handshake timeout).
   */
  firstResponseTimeoutMs: z.number().int().min(0).default(15000),
  /** Proxy-side authentication; absent: the client authenticates to the backend through the relay. */
  auth: authSchema.optional(),
  /** Pool server connections (session or transaction mode); needs `auth`. Absent: one backend connection per client. */
  pool: poolSchema.optional(),
  /** Reads outside transactions go to the route's replicas (README "Read/write split"); needs `auth` and `pool` in transaction mode. */
  readWriteSplit: readWriteSplitSchema.optional(),
});

export type PostgresListenerConfig = z.output<typeof postgresListenerSchema>;

/** Combinations the schema cannot refuse by itself. */
export function checkPostgresListener(listener: PostgresListenerConfig, at: ListenerCheck): void {
  const pool = listener.pool;
  if (pool !== undefined) {
    if (listener.auth === undefined) at.problem('pool', 'pooling needs proxy-side authentication: add auth to this listener (the proxy logs in to the servers it pools)');
    if (pool.minSize > pool.size) at.problem('pool', `minSize (${pool.minSize}) is larger than size (${pool.size})`);
    if (pool.maxServerConnectionsPerBackend !== 0 && pool.minSize > pool.maxServerConnectionsPerBackend) at.problem('pool', `minSize (${pool.minSize}) is larger than maxServerConnectionsPerBackend (${pool.maxServerConnectionsPerBackend})`);
  }
  const split = listener.readWriteSplit;
  if (split !== undefined) {
    if (listener.auth === undefined) at.problem('readWriteSplit', 'the read/write split needs proxy-side authentication: add auth (and pool) to this listener (the proxy opens the replica and primary connections itself)');
    else if (pool === undefined) at.problem('readWriteSplit', 'the read/write split needs pool (mode: transaction): it picks a server per transaction from the pools of the primary and the replicas');
    else if (pool.mode !== 'transaction') at.problem('readWriteSplit', 'the read/write split needs pool.mode "transaction": in session mode a client keeps one server for its whole session, so there is nothing to split');
  }
  const auth = listener.auth;
  if (auth === undefined) return;
  if (auth.method === 'password' && listener.tls === undefined) {
    at.problem('auth', 'method "password" sends passwords in cleartext: it needs tls on this listener (clients without TLS are refused)');
  }
  if (Object.keys(auth.users).length === 0 && auth.authQuery === undefined && at.config.resolver.module === undefined) {
    at.problem('auth', 'no source of secrets: give users, an authQuery, or a resolver module whose routes carry credentials');
  }
}
