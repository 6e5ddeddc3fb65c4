/**
 * Server connections pooled per (backend endpoint, database, user), with
 * the limits of one listener's `pool:` settings:
 * - `size` connections per key (active + idle + logging in);
 * - `minSize` of them kept open even when idle (warm);
 * - `maxServerConnectionsPerBackend`: every key on one endpoint shares this
 *   budget (tenants on one PostgreSQL server cannot exhaust its
 *   max_connections between them). When the budget is spent and a key below
 *   its size has waiters, an idle connection of another key on the endpoint
 *   is closed to make room, and a connection given back while others wait
 *   for budget is closed rather than parked;
 * - `maxClientConnections` client sessions per tenant (the routed resource
 *   id), refused past it with 53300;
 * - clients wait for a connection in one FIFO per key up to
 *   `queueTimeoutMs` (then 53300);
 * - idle connections close after `serverIdleTimeoutMs` (beyond minSize).
 * A connection that errored, was terminated, or spoke while idle is closed,
 * never reused. Limits are per worker process (each worker has its own
 * pools).
 */
import net from 'node:net';
import type { Endpoint } from '../../../core/endpoint.ts';
import type { Logger } from '../../../core/logger.ts';
import type { BackendCredentials, BackendLoginOptions, BackendLoginResult } from '../auth/types.ts';
import { ServerConnection, SERVER_ACTIVE, SERVER_CLOSED, SERVER_IDLE } from './server-connection.ts';
import type { ServerHome } from './server-connection.ts';
import { MAX_PREPARED_PER_SERVER, StatementRegistry } from './prepared-statements.ts';
import { POOL_SQLSTATE } from './messages.ts';
import { WaitQueue } from './wait-queue.ts';
import type { Waiter } from './wait-queue.ts';
import type { PoolStats } from './stats.ts';
import { observeWait } from './stats.ts';

export type PoolMode = 'session' | 'transaction';

export interface PoolSettings {
  readonly mode: PoolMode;
  readonly size: number;
  readonly minSize: number;
  readonly maxClientConnections: number;
  readonly maxServerConnectionsPerBackend: number;
  readonly queueTimeoutMs: number;
  readonly serverIdleTimeoutMs: number;
}

/** What the pool logs in to servers with: what the client's authentication produced. */
export type Credentials = BackendCredentials;

/** Logs in on a connected socket: auth/backend-login.ts (tests may pass another). */
export type ServerLogin = (socket: net.Socket, options: BackendLoginOptions) => Promise<BackendLoginResult>;

/** A client session waiting for (or holding) a server connection. */
export interface PoolClient extends Waiter {
  /** A server connection is the client's now. Called synchronously from acquire/release. */
  serverGranted(server: ServerConnection): void;
  /** No server connection: `sqlstate` and `message` for the client's ErrorResponse. */
  serverFailed(sqlstate: string, message: string, raw: Buffer | null): void;
}

/** A server's refusal during the pool's login, kept for the client (auth/server-error.ts PostgresServerError). */
function serverRefusal(err: unknown): { sqlstate: string; raw: Buffer } | null {
  const e = err as { sqlstate?: unknown; raw?: unknown };
  return typeof e.sqlstate === 'string' && Buffer.isBuffer(e.raw) ? { sqlstate: e.sqlstate, raw: e.raw } : null;
}

const kForgotten = Symbol('polyproxy.pg.pool.forgotten');
type Pooled = ServerConnection & { [kForgotten]?: boolean };

export class ServerPool implements ServerHome {
  readonly manager: PoolManager;
  readonly key: string;
  readonly endpoint: Endpoint;
  readonly database: string;
  readonly user: string;
  readonly budget: EndpointBudget;
  readonly registry = new StatementRegistry();
  credentials: Credentials;
  /** Idle connections, most recently used last (taken LIFO; the sweep closes from the front). */
  readonly idle: ServerConnection[] = [];
  readonly queue = new WaitQueue();
  /** Connections counted against `size`: active + idle + logging in. */
  open = 0;
  opening = 0;
  /** ParameterStatus of the first login: what clients are greeted with (server_version...). */
  welcome: Map<string, string> | null = null;
  readonly stats: PoolStats;

  constructor(manager: PoolManager, key: string, endpoint: Endpoint, database: string, user: string, credentials: Credentials, budget: EndpointBudget, stats: PoolStats) {
    this.manager = manager;
    this.key = key;
    this.endpoint = endpoint;
    this.database = database;
    this.user = user;
    this.credentials = credentials;
    this.budget = budget;
    this.stats = stats;
    stats.read = () => ({ waiting: this.queue.length, active: this.active, idle: this.idle.length, opening: this.opening });
  }

  get active(): number {
    return this.open - this.opening - this.idle.length;
  }

  /** ServerHome: the socket closed. */
  serverGone(server: ServerConnection): void {
    this.manager.forget(this, server);
  }
}

/** Server connections to one endpoint, whatever their key. */
export class EndpointBudget {
  readonly label: string;
  open = 0;
  readonly pools = new Set<ServerPool>();

  constructor(label: string) {
    this.label = label;
  }
}

export class PoolManager {
  readonly settings: PoolSettings;
  readonly login: ServerLogin;
  readonly log: Logger;
  readonly connectTimeoutMs: number;
  readonly loginTimeoutMs: number;
  readonly tcpKeepAliveMs: number;
  readonly pools = new Map<string, ServerPool>();
  readonly budgets = new Map<string, EndpointBudget>();
  readonly tenants = new Map<string, number>();
  readonly #makeStats: (pool: { database: string; user: string; endpoint: string }) => PoolStats;
  #timer: NodeJS.Timeout | null = null;
  readonly #sweepMs: number;
  #closed = false;

  constructor(options: {
    settings: PoolSettings;
    login: ServerLogin;
    log: Logger;
    connectTimeoutMs: number;
    /** The login (startup to ReadyForQuery) must finish within this long; 0 = no deadline. */
    loginTimeoutMs: number;
    tcpKeepAliveMs: number;
    makeStats: (pool: { database: string; user: string; endpoint: string }) => PoolStats;
  }) {
    this.settings = options.settings;
    this.login = options.login;
    this.log = options.log;
    this.connectTimeoutMs = options.connectTimeoutMs;
    this.loginTimeoutMs = options.loginTimeoutMs;
    this.tcpKeepAliveMs = options.tcpKeepAliveMs;
    this.#makeStats = options.makeStats;
    const s = options.settings;
    this.#sweepMs = Math.max(10, Math.min(250, s.queueTimeoutMs > 0 ? s.queueTimeoutMs / 4 : 250, s.serverIdleTimeoutMs / 4));
  }

  // ---- tenants ---------------------------------------------------------------

  /** Admits one more client session of `tenant`; false past maxClientConnections. */
  admit(tenant: string): boolean {
    const n = this.tenants.get(tenant) ?? 0;
    if (this.settings.maxClientConnections > 0 && n >= this.settings.maxClientConnections) return false;
    this.tenants.set(tenant, n + 1);
    return true;
  }

  leave(tenant: string): void {
    const n = (this.tenants.get(tenant) ?? 1) - 1;
    if (n <= 0) this.tenants.delete(tenant);
    else this.tenants.set(tenant, n);
  }

  // ---- pools -----------------------------------------------------------------

  /** The pool of (endpoint, database, user), made on first use (warmed up to minSize). */
  pool(endpoint: Endpoint, database: string, user: string, credentials: Credentials): ServerPool {
    const key = `${endpoint.label}\0${database}\0${user}`;
    let pool = this.pools.get(key);
    if (pool === undefined) {
      let budget = this.budgets.get(endpoint.label);
      if (budget === undefined) {
        budget = new EndpointBudget(endpoint.label);
        this.budgets.set(endpoint.label, budget);
      }
      pool = new ServerPool(this, key, endpoint, database, user, credentials, budget, this.#makeStats({ database, user, endpoint: endpoint.label }));
      budget.pools.add(pool);
      this.pools.set(key, pool);
      this.#warm(pool);
    } else {
      pool.credentials = credentials;
    }
    return pool;
  }

  /**
   * A server connection for `client`: returned at once when one is idle,
   * else null and the client waits (serverGranted / serverFailed later).
   */
  acquire(pool: ServerPool, client: PoolClient): ServerConnection | null {
    if (pool.queue.length === 0) {
      const server = this.#takeIdle(pool);
      if (server !== null) {
        observeWait(pool.stats, 0);
        return server;
      }
    }
    client.waitingSince = Date.now();
    pool.queue.push(client);
    this.#grow(pool);
    this.#arm();
    return null;
  }

  /** The client stopped waiting (it left). */
  cancel(client: PoolClient): void {
    client.queue?.remove(client);
  }

  /**
   * A server connection's holder gives it back (between transactions, or
   * after the session's reset): to the first waiter, else idle, else
   * closed when it is unusable or other keys wait for the endpoint's budget.
   */
  release(pool: ServerPool, server: ServerConnection): void {
    server.user = null;
    if (server.state === SERVER_CLOSED) return; // counted by forget() when its socket closed
    if (server.broken || this.#closed || server.prepared.size > MAX_PREPARED_PER_SERVER) {
      this.#discard(pool, server);
      return;
    }
    const waiter = pool.queue.shift() as PoolClient | undefined;
    if (waiter !== undefined) {
      server.state = SERVER_ACTIVE;
      observeWait(pool.stats, Date.now() - waiter.waitingSince);
      waiter.serverGranted(server);
      return;
    }
    if (this.#budgetWanted(pool.budget, pool) && pool.open > this.settings.minSize) {
      this.#discard(pool, server);
      return;
    }
    server.state = SERVER_IDLE;
    server.idleSince = Date.now();
    pool.idle.push(server);
    this.#arm();
  }

  /** A connection is gone (its socket closed, or the pool closed it): counted out once, waiters served. */
  forget(pool: ServerPool, server: ServerConnection): void {
    const pooled = server as Pooled;
    if (pooled[kForgotten] === true) return;
    pooled[kForgotten] = true;
    const i = pool.idle.indexOf(server);
    if (i >= 0) pool.idle.splice(i, 1);
    pool.open--;
    pool.budget.open--;
    pool.stats.serversClosed++;
    this.#dispatch(pool.budget);
    if (!this.#closed) this.#warm(pool);
  }

  #discard(pool: ServerPool, server: ServerConnection): void {
    server.close();
    this.forget(pool, server);
  }

  #takeIdle(pool: ServerPool): ServerConnection | null {
    while (pool.idle.length > 0) {
      const server = pool.idle.pop() as ServerConnection;
      if (server.state !== SERVER_IDLE || server.broken) {
        this.#discard(pool, server);
        continue;
      }
      server.state = SERVER_ACTIVE;
      return server;
    }
    return null;
  }

  /** True when another key on `budget`'s endpoint waits for a connection it cannot open for lack of budget. */
  #budgetWanted(budget: EndpointBudget, except: ServerPool): boolean {
    const max = this.settings.maxServerConnectionsPerBackend;
    if (max === 0 || budget.open < max) return false;
    for (const other of budget.pools) {
      if (other !== except && other.queue.length > other.opening && other.open < this.settings.size) return true;
    }
    return false;
  }

  /** Opens connections for `pool`'s waiters not yet covered by a login in progress, within size and budget. */
  #grow(pool: ServerPool): void {
    const max = this.settings.maxServerConnectionsPerBackend;
    while (pool.queue.length > pool.opening && pool.open < this.settings.size) {
      if (max !== 0 && pool.budget.open >= max) {
        // Make room: close an idle connection of another key on this endpoint (its close frees the budget).
        if (!this.#evictIdleElsewhere(pool)) return;
        continue;
      }
      this.#open(pool, false);
    }
  }

  /** Closes the oldest idle connection of another key on the endpoint; false when there is none. */
  #evictIdleElsewhere(pool: ServerPool): boolean {
    let victim: ServerPool | null = null;
    let oldest = Infinity;
    for (const other of pool.budget.pools) {
      if (other === pool || other.idle.length === 0) continue;
      const since = (other.idle[0] as ServerConnection).idleSince;
      if (since < oldest) {
        oldest = since;
        victim = other;
      }
    }
    if (victim === null) return false;
    this.#discard(victim, victim.idle[0] as ServerConnection);
    return true;
  }

  /** Budget freed on an endpoint: the key whose first waiter waited longest gets it. */
  #dispatch(budget: EndpointBudget): void {
    if (this.#closed) return;
    const max = this.settings.maxServerConnectionsPerBackend;
    while (max === 0 || budget.open < max) {
      let best: ServerPool | null = null;
      let since = Infinity;
      for (const pool of budget.pools) {
        if (pool.queue.length <= pool.opening || pool.open >= this.settings.size) continue;
        const first = pool.queue.peek() as Waiter;
        if (first.waitingSince < since) {
          since = first.waitingSince;
          best = pool;
        }
      }
      if (best === null) return;
      this.#open(best, false);
    }
  }

  /** Keeps `pool` at minSize while the budget allows. */
  #warm(pool: ServerPool): void {
    const max = this.settings.maxServerConnectionsPerBackend;
    while (pool.open < this.settings.minSize && (max === 0 || pool.budget.open < max)) this.#open(pool, true);
  }

  #open(pool: ServerPool, warm: boolean): void {
    pool.open++;
    pool.opening++;
    pool.budget.open++;
    pool.stats.serversOpened++;
    void this.#connect(pool).then(
      (server) => {
        pool.opening--;
        if (pool.welcome === null) pool.welcome = new Map(server.login.parameters);
        if (this.#closed) {
          this.#discard(pool, server.connection);
          return;
        }
        server.connection.state = SERVER_ACTIVE;
        this.release(pool, server.connection);
        void warm;
      },
      (err: unknown) => {
        pool.opening--;
        pool.open--;
        pool.budget.open--;
        pool.stats.serversClosed++;
        pool.stats.loginFailures++;
        const refusal = serverRefusal(err);
        const message = (err as Error).message;
        this.log.warn({ pool: `${pool.database}/${pool.user}@${pool.endpoint.label}`, err: message }, 'postgres pool: server connection failed');
        // Every waiter of the key not covered by another login in progress fails: the next login would most likely fail the same way.
        while (pool.queue.length > pool.opening) {
          const waiter = pool.queue.shift() as PoolClient;
          if (refusal !== null) waiter.serverFailed(refusal.sqlstate, message, refusal.raw);
          else waiter.serverFailed(POOL_SQLSTATE.CANNOT_CONNECT, `cannot connect to the server for database "${pool.database}": ${message}`, null);
        }
        this.#dispatch(pool.budget);
      },
    );
  }

  async #connect(pool: ServerPool): Promise<{ connection: ServerConnection; login: { parameters: Map<string, string> } }> {
    const endpoint = pool.endpoint;
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s =
        endpoint.type === 'unix'
          ? net.connect({ path: endpoint.path })
          : net.connect({ host: endpoint.host, port: endpoint.port, noDelay: true, keepAlive: this.tcpKeepAliveMs > 0, keepAliveInitialDelay: this.tcpKeepAliveMs });
      const timer = this.connectTimeoutMs > 0 ? setTimeout(() => s.destroy(new Error(`connect timeout after ${this.connectTimeoutMs} ms`)), this.connectTimeoutMs) : null;
      s.once('connect', () => {
        if (timer !== null) clearTimeout(timer);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (err) => {
        if (timer !== null) clearTimeout(timer);
        reject(err);
      });
    });
    try {
      const login = await this.login(socket, { user: pool.user, database: pool.database, credentials: pool.credentials, timeoutMs: this.loginTimeoutMs });
      const connection = new ServerConnection(socket, endpoint, pool, login);
      if (login.leftover !== null && login.leftover.length > 0) {
        // Nothing may follow ReadyForQuery unasked.
        connection.broken = true;
      }
      return { connection, login };
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }

  // ---- timers ----------------------------------------------------------------

  #arm(): void {
    if (this.#timer !== null || this.#closed) return;
    this.#timer = setTimeout(managerOnSweep, this.#sweepMs, this);
    this.#timer.unref();
  }

  /** @internal Fails waiters past queueTimeoutMs (53300), closes connections idle past serverIdleTimeoutMs beyond minSize. */
  sweep(): void {
    this.#timer = null;
    const now = Date.now();
    let again = false;
    const queueTimeout = this.settings.queueTimeoutMs;
    for (const pool of this.pools.values()) {
      if (queueTimeout > 0 && pool.queue.length > 0) {
        for (const waiter of pool.queue.expire(now - queueTimeout)) {
          pool.stats.queueTimeouts++;
          (waiter as PoolClient).serverFailed(POOL_SQLSTATE.TOO_MANY, `no server connection available for database "${pool.database}" within ${queueTimeout} ms (pool size ${this.settings.size})`, null);
        }
      }
      if (pool.queue.length > 0) again = true;
      while (pool.idle.length > 0 && pool.open > this.settings.minSize) {
        const oldest = pool.idle[0] as ServerConnection;
        if (now - oldest.idleSince < this.settings.serverIdleTimeoutMs) break;
        this.#discard(pool, oldest);
      }
      if (pool.idle.length > 0 && pool.open > this.settings.minSize) again = true;
      if (pool.open === 0 && pool.queue.length === 0 && pool.stats.clients === 0 && this.settings.minSize === 0) {
        pool.budget.pools.delete(pool);
        if (pool.budget.pools.size === 0) this.budgets.delete(pool.budget.label);
        this.pools.delete(pool.key);
        pool.stats.retire();
      }
    }
    if (again) this.#arm();
  }

  /** Shutdown: idle connections closed, waiters failed (57P01); active ones close when given back. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    for (const pool of this.pools.values()) {
      for (let w = pool.queue.shift(); w !== undefined; w = pool.queue.shift()) (w as PoolClient).serverFailed(POOL_SQLSTATE.ADMIN_SHUTDOWN, 'terminating connection: the proxy is shutting down', null);
      while (pool.idle.length > 0) this.#discard(pool, pool.idle[pool.idle.length - 1] as ServerConnection);
    }
  }
}

function managerOnSweep(manager: PoolManager): void {
  manager.sweep();
}
