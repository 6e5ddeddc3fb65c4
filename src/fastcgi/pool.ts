/**
 * Connections to one FastCGI server, reused with FCGI_KEEP_CONN.
 *
 * A php-fpm worker serves one connection until it closes, so an idle kept
 * connection pins a worker: `maxConnections` (active + idle) must not exceed
 * the pool's pm.max_children or new connections wait in the listen queue
 * behind idle ones. Past the cap, requests wait FIFO for a connection.
 */
import type { Endpoint } from '../core/endpoint.ts';
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

interface Waiter {
  resolve(conn: FastCgiConnection): void;
  reject(err: unknown): void;
  timer: NodeJS.Timeout;
}

export class ConnectionPool {
  readonly endpoint: Endpoint;
  readonly options: PoolOptions;
  #idle: FastCgiConnection[] = [];
  #active = 0;
  #connecting = 0;
  #waiters: Waiter[] = [];
  #sweeper: NodeJS.Timeout | null = null;
  #closed = false;
  readonly #dropIdle = (conn: FastCgiConnection): void => {
    const i = this.#idle.indexOf(conn);
    if (i >= 0) this.#idle.splice(i, 1);
    this.#serveWaiters();
  };

  constructor(endpoint: Endpoint, options: PoolOptions) {
    this.endpoint = endpoint;
    this.options = options;
  }

  get idleCount(): number {
    return this.#idle.length;
  }

  get activeCount(): number {
    return this.#active;
  }

  /** A connection for one request: the newest idle one, a new one, or the next one freed. `reused` tells which. */
  acquire(): Promise<FastCgiConnection> {
    if (this.#closed) return Promise.reject(new FastCgiError('FCGI_ERR_CONNECTION_CLOSED', `the pool for ${this.endpoint.label} is closed`));
    const idle = this.#takeIdle();
    if (idle !== null) return Promise.resolve(idle);
    if (this.#hasRoom()) return this.#open();
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(new FastCgiError('FCGI_ERR_QUEUE_TIMEOUT', `no free connection to ${this.endpoint.label} within ${this.options.queueTimeoutMs} ms (maxConnections ${this.options.maxConnections})`, { retryable: true }));
        }, this.options.queueTimeoutMs),
      };
      this.#waiters.push(waiter);
    });
  }

  /** Gives a connection back after its request ended; a reusable one is kept or handed to a waiter. */
  release(conn: FastCgiConnection): void {
    this.#active--;
    if (!conn.reusable || this.#closed) {
      conn.destroy();
      this.#serveWaiters();
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      clearTimeout(waiter.timer);
      this.#active++;
      waiter.resolve(conn);
      return;
    }
    if (this.#idle.length >= this.options.maxIdle) {
      conn.destroy();
      return;
    }
    conn.idleSince = Date.now();
    conn.onIdleClose = this.#dropIdle;
    this.#idle.push(conn);
    this.#sweeper ??= setInterval(() => this.#sweep(), Math.max(100, Math.min(this.options.idleTimeoutMs, 1000))).unref();
  }

  /** Drops a connection that failed or was abandoned mid-request. */
  discard(conn: FastCgiConnection): void {
    this.#active--;
    conn.destroy();
    this.#serveWaiters();
  }

  /** Closes idle connections and fails waiters; connections in use close when released. */
  close(): void {
    this.#closed = true;
    for (const conn of this.#idle) conn.destroy();
    this.#idle = [];
    for (const waiter of this.#waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(new FastCgiError('FCGI_ERR_CONNECTION_CLOSED', `the pool for ${this.endpoint.label} is closed`));
    }
    this.#waiters = [];
    if (this.#sweeper !== null) clearInterval(this.#sweeper);
    this.#sweeper = null;
  }

  #hasRoom(): boolean {
    return this.options.maxConnections === 0 || this.#active + this.#connecting + this.#idle.length < this.options.maxConnections;
  }

  #takeIdle(): FastCgiConnection | null {
    while (this.#idle.length > 0) {
      const conn = this.#idle.pop() as FastCgiConnection;
      conn.onIdleClose = null;
      if (conn.reusable) {
        this.#active++;
        return conn;
      }
      conn.destroy();
    }
    return null;
  }

  async #open(): Promise<FastCgiConnection> {
    this.#connecting++;
    try {
      const conn = await FastCgiConnection.open(this.endpoint, { connectTimeoutMs: this.options.connectTimeoutMs });
      this.#active++;
      return conn;
    } finally {
      this.#connecting--;
    }
  }

  /** A slot was freed: open a connection for the first waiter. */
  #serveWaiters(): void {
    if (this.#closed || this.#waiters.length === 0) return;
    const idle = this.#takeIdle();
    if (idle !== null) {
      const waiter = this.#waiters.shift() as Waiter;
      clearTimeout(waiter.timer);
      waiter.resolve(idle);
      return;
    }
    if (!this.#hasRoom()) return;
    const waiter = this.#waiters.shift() as Waiter;
    clearTimeout(waiter.timer);
    this.#open().then(waiter.resolve, waiter.reject);
  }

  #sweep(): void {
    const cutoff = Date.now() - this.options.idleTimeoutMs;
    while (this.#idle.length > 0 && (this.#idle[0] as FastCgiConnection).idleSince <= cutoff) {
      const conn = this.#idle.shift() as FastCgiConnection;
      conn.onIdleClose = null;
      conn.destroy();
    }
    if (this.#idle.length === 0 && this.#sweeper !== null) {
      clearInterval(this.#sweeper);
      this.#sweeper = null;
    }
  }
}
