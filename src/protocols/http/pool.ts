/**
 * Idle keep-alive backend connections, per endpoint. LIFO (the most recently
 * used socket is the least likely to have been closed by the backend's own
 * idle timer), at most `maxPerBackend` idle sockets per endpoint, each
 * closed after `idleTimeoutMs` unused. An idle socket that receives bytes,
 * an EOF or an error is discarded: a backend must not speak unasked.
 */
import type { Socket } from 'node:net';

const kIdle = Symbol('polyproxy.http.idle');

interface IdleEntry {
  readonly pool: BackendPool;
  readonly label: string;
}

type PooledSocket = Socket & { [kIdle]?: IdleEntry | undefined };

export interface PoolOptions {
  readonly maxPerBackend: number;
  readonly idleTimeoutMs: number;
}

export class BackendPool {
  readonly maxPerBackend: number;
  readonly idleTimeoutMs: number;
  readonly #idle = new Map<string, Socket[]>();
  /** Counters for tests and stats. */
  reused = 0;
  returned = 0;

  constructor(options: PoolOptions) {
    this.maxPerBackend = options.maxPerBackend;
    this.idleTimeoutMs = options.idleTimeoutMs;
  }

  /** An idle connection to `label`, or null. The caller owns it from now on. */
  take(label: string): Socket | null {
    const list = this.#idle.get(label);
    while (list !== undefined && list.length > 0) {
      const socket = list.pop() as PooledSocket;
      unidle(socket);
      if (socket.destroyed || socket.readableEnded || !socket.writable) {
        socket.destroy();
        continue;
      }
      this.reused++;
      return socket;
    }
    return null;
  }

  /** Parks a connection whose last response was complete; destroys it when the endpoint's idle list is full. */
  put(label: string, socket: Socket): void {
    if (socket.destroyed || !socket.writable || this.maxPerBackend === 0) {
      socket.destroy();
      return;
    }
    let list = this.#idle.get(label);
    if (list === undefined) {
      list = [];
      this.#idle.set(label, list);
    }
    if (list.length >= this.maxPerBackend) {
      socket.destroy();
      return;
    }
    this.returned++;
    const pooled = socket as PooledSocket;
    pooled[kIdle] = { pool: this, label };
    socket.on('data', idleOnData);
    socket.on('end', idleOnEnd);
    socket.on('close', idleOnClose);
    socket.on('error', idleOnError);
    socket.on('timeout', idleOnTimeout);
    socket.setTimeout(this.idleTimeoutMs);
    socket.resume();
    list.push(socket);
  }

  /** Idle connections per endpoint. */
  sizes(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [label, list] of this.#idle) out[label] = list.length;
    return out;
  }

  /** Closes every idle connection (shutdown). */
  clear(): void {
    for (const list of this.#idle.values()) for (const socket of list.splice(0)) socket.destroy();
  }

  /** @internal */
  remove(label: string, socket: Socket): void {
    const list = this.#idle.get(label);
    if (list === undefined) return;
    const i = list.indexOf(socket);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#idle.delete(label);
  }
}

function unidle(socket: PooledSocket): void {
  socket[kIdle] = undefined;
  socket.pause();
  socket.setTimeout(0);
  socket.removeListener('data', idleOnData);
  socket.removeListener('end', idleOnEnd);
  socket.removeListener('close', idleOnClose);
  socket.removeListener('error', idleOnError);
  socket.removeListener('timeout', idleOnTimeout);
}

function discard(socket: PooledSocket): void {
  const entry = socket[kIdle];
  if (entry !== undefined) entry.pool.remove(entry.label, socket);
  unidle(socket);
  socket.on('error', noop);
  socket.destroy();
}

function idleOnData(this: PooledSocket): void {
  discard(this);
}
function idleOnEnd(this: PooledSocket): void {
  discard(this);
}
function idleOnClose(this: PooledSocket): void {
  discard(this);
}
function idleOnError(this: PooledSocket): void {
  discard(this);
}
function idleOnTimeout(this: PooledSocket): void {
  discard(this);
}

function noop(): void {}
