/**
 * Connections to one FastCGI server, reused with FCGI_KEEP_CONN: core's
 * EndpointPool (src/core/pool.ts) holding FastCgiConnections, plus the
 * opening of new ones.
 *
 * A php-fpm worker serves one connection until it closes, so an idle kept
 * connection pins a worker: `maxConnections` (active + idle) must not exceed
 * the pool's pm.max_children or new connections wait in the listen queue
 * behind idle ones. Past the cap, requests wait FIFO for a connection.
 */
import type { Endpoint } from '../core/endpoint.ts';
import { EndpointPool, PoolClosedError, evictIdle } from '../core/pool.ts';
import type { PoolKind, PoolWaiter } from '../core/pool.ts';
import type { PolyproxyError } from '../core/errors.ts';
import { FastCgiConnection } from './connection.ts';
import { FastCgiError } from './errors.ts';

export interface PoolOptions {
  readonly connectTimeoutMs: number;
  /** Active + idle connections (0 = unlimited). */
  readonly maxConnections: number;
  /** Idle connections kept (0 = none: every connection closes after its request). */
  readonly maxIdle: number;
  /** An idle connection older than this is closed (frees the php-fpm worker). */
  readonly idleTimeoutMs: number;
  /** How long a request waits for a connection slot. */
  readonly queueTimeoutMs: number;
}

/** FastCGI connections, as core's pool sees them. */
export const FASTCGI_KIND: PoolKind<FastCgiConnection> = {
  reusable: (conn) => conn.reusable,
  close: (conn) => conn.destroy(),
  park: (conn) => {
    conn.onIdleClose = evictIdle;
  },
  unpark: (conn) => {
    conn.onIdleClose = null;
  },
  // Nothing is read between requests: a FastCGI connection with no request in flight destroys itself on any byte.
  handOver: noop,
};

/** One request waiting for a connection or a slot. */
class Acquire implements PoolWaiter<FastCgiConnection> {
  readonly pool: ConnectionPool;
  readonly resolve: (conn: FastCgiConnection | null) => void;
  readonly reject: (err: unknown) => void;

  constructor(pool: ConnectionPool, resolve: (conn: FastCgiConnection | null) => void, reject: (err: unknown) => void) {
    this.pool = pool;
    this.resolve = resolve;
    this.reject = reject;
  }

  poolGranted(conn: FastCgiConnection | null): void {
    this.resolve(conn);
  }

  poolFailed(err: PolyproxyError): void {
    this.reject(this.pool.failure(err));
  }
}

export class ConnectionPool {
  readonly endpoint: Endpoint;
  readonly options: PoolOptions;
  readonly #pool: EndpointPool<FastCgiConnection>;
  readonly #key: string;

  constructor(endpoint: Endpoint, options: PoolOptions) {
    this.endpoint = endpoint;
    this.options = options;
    this.#key = endpoint.label;
    this.#pool = new EndpointPool(FASTCGI_KIND, {
      maxConnectionsPerEndpoint: options.maxConnections,
      maxIdlePerEndpoint: options.maxIdle,
      idleTimeoutMs: options.idleTimeoutMs,
      queueTimeoutMs: options.queueTimeoutMs,
      maxQueue: Infinity,
    });
  }

  get idleCount(): number {
    return this.#pool.idleCount(this.#key);
  }

  /** Connections held by requests (and being opened). */
  get activeCount(): number {
    return this.#pool.openCount(this.#key) - this.#pool.idleCount(this.#key);
  }

  /** A connection for one request: the newest idle one, a new one, or the next one freed. */
  acquire(): Promise<FastCgiConnection> {
    if (this.#pool.closed) return Promise.reject(this.#closedError());
    const idle = this.#pool.take(this.#key);
    if (idle !== null) return Promise.resolve(idle);
    if (this.#pool.tryReserve(this.#key)) return this.#openUnderSlot();
    return this.wait().then((conn) => conn ?? this.#openUnderSlot());
  }

  /*
   * The parts of acquire() for a caller that dials itself (the gateway: core's
   * connectFirst over several pools' endpoints). Each slot taken by takeIdle,
   * reserve, wait or adopt is given back once: release, discard or unreserve.
   */

  /** The newest idle connection (its slot comes with it), or null. Dials nothing. */
  takeIdle(): FastCgiConnection | null {
    return this.#pool.closed ? null : this.#pool.take(this.#key);
  }

  /** Takes a slot to open a new connection under; false when the pool is full or closed. */
  reserve(): boolean {
    return !this.#pool.closed && this.#pool.tryReserve(this.#key);
  }

  /** Gives back a reserved slot no connection was opened under (the dial failed or landed on another pool). */
  unreserve(): void {
    this.#pool.release(this.#key);
  }

  /** Counts a connection opened under another pool's slot (failover), even past maxConnections: it is open already. */
  adopt(): void {
    this.#pool.adopt(this.#key);
  }

  /**
   * Waits FIFO (at most queueTimeoutMs) for a connection another request gave
   * back, or for a slot (null: open a new connection under it). Rejects with
   * FCGI_ERR_QUEUE_TIMEOUT, or FCGI_ERR_CONNECTION_CLOSED when the pool closes.
   */
  wait(): Promise<FastCgiConnection | null> {
    return new Promise((resolve, reject) => {
      const waiter = new Acquire(this, resolve, reject);
      if (this.#pool.enqueue(this.#key, waiter) === null) reject(this.#closedError());
    });
  }

  /** Gives a connection back after its request ended; a reusable one is kept or handed to a waiter. */
  release(conn: FastCgiConnection): void {
    this.#pool.put(this.#key, conn);
  }

  /** Drops a connection that failed or was abandoned mid-request. */
  discard(conn: FastCgiConnection): void {
    conn.destroy();
    this.#pool.release(this.#key);
  }

  /** Closes idle connections and fails waiters; connections in use close when released. */
  close(): void {
    this.#pool.close();
  }

  /** Opens a connection under a slot already taken; the slot is given back when that fails. */
  async #openUnderSlot(): Promise<FastCgiConnection> {
    try {
      return await FastCgiConnection.open(this.endpoint, { connectTimeoutMs: this.options.connectTimeoutMs });
    } catch (err) {
      this.#pool.release(this.#key);
      throw err;
    }
  }

  /** @internal The FastCGI error for a failed wait. */
  failure(err: PolyproxyError): FastCgiError {
    if (err instanceof PoolClosedError) return this.#closedError();
    return new FastCgiError('FCGI_ERR_QUEUE_TIMEOUT', `no free connection to ${this.endpoint.label} within ${this.options.queueTimeoutMs} ms (maxConnections ${this.options.maxConnections})`, { retryable: true });
  }

  #closedError(): FastCgiError {
    return new FastCgiError('FCGI_ERR_CONNECTION_CLOSED', `the pool for ${this.endpoint.label} is closed`);
  }
}

function noop(): void {}
