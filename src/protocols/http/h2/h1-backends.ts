/**
 * HTTP/1.1 backends for requests that arrived over HTTP/2: per endpoint,
 * an undici Pool (keep-alive connections, at most
 * `pool.maxConnectionsPerBackend`, requests queued inside undici past
 * that), dialing through dial.ts so each connect feeds the endpoint's
 * breaker. The HTTP/1.1 listener path keeps its own relay and pool
 * (pool.ts): it moves a connection's bytes without parsing bodies, which
 * does not fit many streams sharing one client connection; undici's
 * dispatcher takes a request per call with backpressure through its
 * controller (pause/resume) and is the fastest HTTP/1.1 client Node has.
 */
import type { Socket } from 'node:net';
import { Pool } from 'undici';
import type { Endpoint } from '../../../core/endpoint.ts';
import type { EndpointHealth } from '../../../core/health.ts';
import { dialOne } from './dial.ts';

export interface H1BackendOptions {
  /** Connections per endpoint (0: undici's unlimited). */
  readonly maxConnectionsPerBackend: number;
  /** An idle keep-alive connection closes after this long. */
  readonly idleTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly keepAliveMs: number;
}

export class H1Backends {
  readonly #options: H1BackendOptions;
  readonly #pools = new Map<string, Pool>();
  #health: EndpointHealth | undefined = undefined;

  constructor(options: H1BackendOptions) {
    this.#options = options;
  }

  /** The endpoint's pool (made on first use). `health` is the router's, current at the call. */
  pool(endpoint: Endpoint, health: EndpointHealth | undefined): Pool {
    this.#health = health;
    let pool = this.#pools.get(endpoint.label);
    if (pool === undefined) {
      const options = this.#options;
      pool = new Pool('http://backend', {
        connections: options.maxConnectionsPerBackend === 0 ? null : options.maxConnectionsPerBackend,
        keepAliveTimeout: options.idleTimeoutMs,
        keepAliveMaxTimeout: options.idleTimeoutMs,
        pipelining: 1,
        connect: (_opts, callback) => {
          dialOne(endpoint, options.connectTimeoutMs, options.keepAliveMs).then(
            (socket: Socket) => {
              this.#health?.succeeded(endpoint);
              callback(null, socket);
            },
            (err: Error) => {
              this.#health?.failed(endpoint, err.message);
              callback(err, null);
            },
          );
        },
      });
      this.#pools.set(endpoint.label, pool);
    }
    return pool;
  }

  close(): void {
    for (const pool of this.#pools.values()) void pool.destroy();
    this.#pools.clear();
  }
}
