/**
 * The postgres listener with `pool:` (requires `auth`): after the
 * StartupMessage, the client is routed and authenticated by the proxy
 * (auth/listener-auth.ts), admitted against its tenant's
 * maxClientConnections, told AuthenticationOk, and handed to a pooled
 * ClientSession. The protocol serves the connection itself from there
 * (ProtocolSession.takeOver, as http does): identify resolves null when
 * the client leaves. One PoolManager per listener (and per worker).
 */
import type { ClientConnection } from '../../../core/client-connection.ts';
import { PolyproxyError } from '../../../core/errors.ts';
import type { Logger } from '../../../core/logger.ts';
import type { DrainTarget, ProtocolSession } from '../../../core/protocol.ts';
import { authenticateClient } from '../auth/client-auth.ts';
import { negotiation, secretLookupFor } from '../auth/listener-auth.ts';
import type { ListenerAuth } from '../auth/listener-auth.ts';
import { backendLogin } from '../auth/backend-login.ts';
import { ClientSession } from './client-session.ts';
import { authenticationOk } from './messages.ts';
import { startupParameters } from './parameters.ts';
import { PoolManager } from './server-pool.ts';
import type { PoolSettings } from './server-pool.ts';
import { newPoolStats } from './stats.ts';
import type { ReadWriteSplitSettings } from '../../../core/rw-split/config.ts';
import { PostgresSplit } from '../split/session-split.ts';

export interface ListenerPool {
  readonly manager: PoolManager;
  readonly auth: ListenerAuth;
  /** The read/write split (transaction mode only), or null. */
  readonly split: PostgresSplit | null;
  readonly log: Logger;
  /** Routes with replicas this listener does not split (logged once each). */
  readonly unsplit: Set<string>;
}

/**
 * One worker's share of the listener's limits. Each worker process has its
 * own pools; the configured limits are for the whole proxy, so every worker
 * gets `size`, `minSize` and `maxServerConnectionsPerBackend` divided by the
 * worker count (rounded down, at least 1: the backend never sees more server
 * connections than configured, unless a limit is below the worker count),
 * and `maxClientConnections` divided rounded up (clients are spread by the
 * kernel, so that limit holds approximately; `limits` gives an exact
 * fleet-wide one). Sharing one budget between workers instead would need an
 * IPC round trip before each server connection is opened and a way to move
 * idle budget between workers; dividing keeps the hot path local.
 */
export function perWorkerSettings(settings: PoolSettings, workers: number): PoolSettings {
  if (workers <= 1) return settings;
  const share = (n: number): number => (n === 0 ? 0 : Math.max(1, Math.floor(n / workers)));
  const size = share(settings.size);
  return {
    ...settings,
    size,
    minSize: Math.min(size, Math.floor(settings.minSize / workers)),
    maxServerConnectionsPerBackend: share(settings.maxServerConnectionsPerBackend),
    maxClientConnections: settings.maxClientConnections === 0 ? 0 : Math.ceil(settings.maxClientConnections / workers),
  };
}

/** The pool of one listener, made once at create(). */
export function createListenerPool(options: {
  listener: string;
  settings: PoolSettings;
  auth: ListenerAuth;
  log: Logger;
  connectTimeoutMs: number;
  tcpKeepAliveMs: number;
  readWriteSplit?: ReadWriteSplitSettings | undefined;
}): ListenerPool {
  const { listener, settings } = options;
  const manager = new PoolManager({
    settings,
    login: backendLogin,
    log: options.log,
    connectTimeoutMs: options.connectTimeoutMs,
    loginTimeoutMs: options.auth.loginTimeoutMs,
    tcpKeepAliveMs: options.tcpKeepAliveMs,
    makeStats: (pool) => newPoolStats(listener, pool, settings.mode),
  });
  const rw = options.readWriteSplit;
  const split = rw === undefined || settings.mode !== 'transaction' ? null : new PostgresSplit({ listener, settings: rw, manager, log: options.log });
  return { manager, auth: options.auth, split, log: options.log, unsplit: new Set() };
}

/**
 * The listener drained (no session left): its server connections close (idle
 * ones now, one still finishing a session's reset when that answers), login
 * attempts in flight are dropped when they finish, the sweep timer stops.
 * Idempotent.
 */
export function closeListenerPool(pool: ListenerPool): void {
  pool.manager.close();
}

/** Serves one client through the pool; resolves when it leaves. Throws PolyproxyError (answered by the listener) before the hand-over. */
export async function servePooled(pool: ListenerPool, conn: ClientConnection, session: ProtocolSession | undefined, startup: { version: number; params: ReadonlyMap<string, string> }): Promise<null> {
  if (session === undefined) throw new PolyproxyError('INTERNAL', 'pooling needs the listener session');
  const user = startup.params.get('user') as string;
  const database = startup.params.get('database') || user;
  const tracked = startupParameters(startup.params);
  if (typeof tracked === 'string') throw new PolyproxyError('PROTOCOL', tracked, { source: 'client', resourceId: database });
  const negotiate = negotiation(startup.version, startup.params);
  if (negotiate !== null) conn.write(negotiate);
  const decision = await session.router.route(database, session.resolveContext());
  const client = await authenticateClient(conn, startup, pool.auth.settings, secretLookupFor(pool.auth, decision, database));
  const endpoint = decision.candidates[0];
  if (endpoint === undefined) throw new PolyproxyError('BACKEND_UNREACHABLE', `no endpoint for ${database}`, { source: 'backend', resourceId: database });
  // The tenant's limits (core/limits), as for a relayed session; the pool's own caps come next.
  await session.admit(decision.entry.resourceId, decision.entry);
  const manager = pool.manager;
  if (!manager.admit(database)) throw new PolyproxyError('TOO_MANY', `tenant ${database} is at maxClientConnections`, { source: 'client', resourceId: database });
  let pooled: ClientSession;
  try {
    session.takeOver();
    conn.write(authenticationOk());
    const { socket, leftover } = conn.detach();
    const serverPool = manager.pool(endpoint, client.database, client.user, client.credentials);
    const replicas = decision.entry.route.replicas;
    let split = null;
    if (replicas !== undefined && replicas.length > 0) {
      if (pool.split !== null) split = pool.split.session(decision.entry.resourceId, replicas, serverPool);
      else if (!pool.unsplit.has(decision.entry.resourceId)) {
        // A resolver's route (the config's are refused at check time): said once, not per session.
        pool.unsplit.add(decision.entry.resourceId);
        pool.log.warn({ route: decision.entry.resourceId }, 'postgres: this route has replicas but the listener has no readWriteSplit: everything goes to the primary');
      }
    }
    pooled = new ClientSession(socket, leftover, { manager, pool: serverPool, tenant: database, startup: tracked, split });
  } catch (err) {
    manager.leave(database);
    throw err;
  }
  session.served(database);
  session.onDrain(drainTarget(pooled));
  await pooled.done;
  return null;
}

function drainTarget(session: ClientSession): DrainTarget {
  return {
    drain(deadline) {
      // Sessions finish on their own until the deadline; then they are told, as PostgreSQL's smart-then-fast shutdown.
      if (deadline) session.shutdown();
    },
  };
}
