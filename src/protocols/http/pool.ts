/**
 * The http listener's backend connections: core's EndpointPool
 * (src/core/pool.ts: slots, FIFO waiters, LIFO idle, one sweep timer)
 * holding plain backend sockets, keyed by endpoint label, with the
 * listener's `pool.*` settings.
 *
 * A socket whose session handlers are attached (`kOwnHandlers`: backend-slot
 * attaches them once per connection and they stay across reuse) gets no
 * handlers from the pool; those handlers call `evictIdle` for events that
 * arrive while no request holds the socket. A socket without them gets the
 * pool's own while idle. Either way an idle socket that receives bytes, an
 * EOF or an error is closed and its slot freed.
 */
import type { Socket } from 'node:net';
import { ConnectionLimitError, EndpointPool, evictIdle } from '../../core/pool.ts';
import type { PoolKind } from '../../core/pool.ts';

export { ConnectionLimitError };

/** Set on a backend socket while a session's handlers are attached to it. */
export const kOwnHandlers = Symbol('polyproxy.http.handlers');
type BackendSocket = Socket & { [kOwnHandlers]?: boolean };

export interface PoolOptions {
  /** Idle keep-alive connections kept per endpoint. */
  readonly maxPerBackend: number;
  readonly idleTimeoutMs: number;
  /** Connections (active + idle) per endpoint; 0 = unlimited. */
  readonly maxConnectionsPerBackend?: number;
  /** How long a request may wait for a slot. */
  readonly queueTimeoutMs?: number;
  /** Waiting requests per endpoint; more are refused at once. */
  readonly maxQueue?: number;
}

/** Plain backend sockets, as the pool sees them. */
export const SOCKET_KIND: PoolKind<Socket> = {
  reusable(socket) {
    return !socket.destroyed && socket.writable && !socket.readableEnded;
  },
  close(socket) {
    socket.on('error', noop);
    socket.destroy();
  },
  park(socket) {
    if ((socket as BackendSocket)[kOwnHandlers] !== true) {
      socket.on('data', idleOnEvent);
      socket.on('end', idleOnEvent);
      socket.on('close', idleOnEvent);
      socket.on('error', idleOnEvent);
    }
    // Reading while idle is how an EOF or unasked bytes are noticed.
    if (socket.readableFlowing !== true) socket.resume();
  },
  unpark(socket, taken) {
    if ((socket as BackendSocket)[kOwnHandlers] === true) {
      // Taken by a request that reads at once: it keeps reading (no readStop/readStart pair per request).
      if (!taken) socket.pause();
      return;
    }
    socket.pause();
    socket.removeListener('data', idleOnEvent);
    socket.removeListener('end', idleOnEvent);
    socket.removeListener('close', idleOnEvent);
    socket.removeListener('error', idleOnEvent);
  },
  handOver(socket) {
    socket.pause();
  },
};

export class BackendPool extends EndpointPool<Socket> {
  constructor(options: PoolOptions) {
    super(SOCKET_KIND, {
      maxIdlePerEndpoint: options.maxPerBackend,
      idleTimeoutMs: options.idleTimeoutMs,
      maxConnectionsPerEndpoint: options.maxConnectionsPerBackend ?? 256,
      queueTimeoutMs: options.queueTimeoutMs ?? 5000,
      maxQueue: options.maxQueue ?? 1024,
    });
  }

  /** The listener's name for maxIdlePerEndpoint. */
  get maxPerBackend(): number {
    return this.maxIdlePerEndpoint;
  }
}

/** For a socket's own handlers, on an event while no request holds it (an idle socket is discarded). */
export const idleSocketEvent: (socket: Socket) => void = evictIdle;

function idleOnEvent(this: Socket): void {
  evictIdle(this);
}

function noop(): void {}
