/**
 * Backend connections, per endpoint (the endpoint's label).
 *
 * Slots: at most `maxConnectionsPerBackend` connections per endpoint, active
 * plus idle (0 = unlimited). A request that needs a new connection when its
 * endpoint is full waits in a FIFO queue (at most `maxQueue` waiters per
 * endpoint, each at most `queueTimeoutMs`; past either: ConnectionLimitError,
 * a 503). A released connection goes straight to the first waiter when it is
 * reusable; when it is closed instead, its slot goes to the first waiter, who
 * opens a new connection. The holder of a slot must give it back exactly
 * once: `put` (a reusable socket) or `release` (the socket is gone, or was
 * never opened). A timer exists only while a request actually waits.
 *
 * Idle keep-alive connections: LIFO (the most recently used socket is the
 * least likely to have been closed by the backend's own idle timer), at most
 * `maxPerBackend` idle sockets per endpoint, each closed after
 * `idleTimeoutMs` unused — by one lazy sweep timer per pool, not a socket
 * timeout re-armed per request. An idle socket that receives bytes, an EOF
 * or an error is discarded (and its slot freed): a backend must not speak
 * unasked.
 */
import type { Socket } from 'node:net';
import { PolyproxyError } from '../../core/errors.ts';

const kIdle = Symbol('polyproxy.http.idle');

/** Made once per socket and kept across reuse (no allocation per request). */
interface IdleEntry {
  pool: BackendPool;
  label: string;
  /** The socket's own handlers stay attached and call `idleSocketEvent`: the pool adds none. */
  listening: boolean;
  /** In an idle list now. */
  idle: boolean;
  /** When it was parked (Date.now()). */
  since: number;
}

type PooledSocket = Socket & { [kIdle]?: IdleEntry | undefined };

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

/** 503: the endpoint is at its connection limit and the request could not wait (longer). */
export class ConnectionLimitError extends PolyproxyError {
  constructor(label: string, why: string) {
    super('UNAVAILABLE', `backend ${label} connection limit reached (${why})`, { source: 'backend', retryable: true });
  }
}

/** What a waiter is given: a reusable connection (the slot comes with it), or null: a slot to open a new one. */
export type Grant = Socket | null;

export interface PoolWaiter {
  readonly label: string;
  /** @internal */ grant: ((grant: Grant) => void) | null;
  /** @internal */ fail: ((err: PolyproxyError) => void) | null;
  /** @internal */ timer: NodeJS.Timeout | null;
}

interface EndpointState {
  /** Slots taken: active connections, idle ones, and reservations still connecting. */
  open: number;
  readonly idle: Socket[];
  readonly queue: PoolWaiter[];
}

/** The sweep never runs more often than this (a very short idleTimeoutMs). */
const MIN_SWEEP_MS = 10;

export class BackendPool {
  readonly maxPerBackend: number;
  readonly idleTimeoutMs: number;
  readonly maxConnectionsPerBackend: number;
  readonly queueTimeoutMs: number;
  readonly maxQueue: number;
  readonly #endpoints = new Map<string, EndpointState>();
  /** Counters for tests and stats. */
  reused = 0;
  returned = 0;
  /** Requests that had to wait for a slot, and those refused (queue full or timed out). */
  queued = 0;
  rejected = 0;
  /** Closes idle sockets past idleTimeoutMs; armed only while some socket is idle. */
  #sweepTimer: NodeJS.Timeout | null = null;

  constructor(options: PoolOptions) {
    this.maxPerBackend = options.maxPerBackend;
    this.idleTimeoutMs = options.idleTimeoutMs;
    this.maxConnectionsPerBackend = options.maxConnectionsPerBackend ?? 256;
    this.queueTimeoutMs = options.queueTimeoutMs ?? 5000;
    this.maxQueue = options.maxQueue ?? 1024;
  }

  #state(label: string): EndpointState {
    let state = this.#endpoints.get(label);
    if (state === undefined) {
      state = { open: 0, idle: [], queue: [] };
      this.#endpoints.set(label, state);
    }
    return state;
  }

  #maybeDrop(label: string, state: EndpointState): void {
    if (state.open === 0 && state.idle.length === 0 && state.queue.length === 0) this.#endpoints.delete(label);
  }

  /** An idle connection to `label` (its slot comes with it), or null. The caller owns it from now on. */
  take(label: string): Socket | null {
    const state = this.#endpoints.get(label);
    if (state === undefined) return null;
    const list = state.idle;
    while (list.length > 0) {
      const socket = list.pop() as PooledSocket;
      unidle(socket, false);
      if (socket.destroyed || socket.readableEnded || !socket.writable) {
        socket.destroy();
        this.release(label);
        continue;
      }
      this.reused++;
      return socket;
    }
    return null;
  }

  /** Takes a slot to open a new connection to `label`; false when the endpoint is full (then `enqueue`). */
  tryReserve(label: string): boolean {
    const state = this.#state(label);
    if (this.maxConnectionsPerBackend !== 0 && state.open >= this.maxConnectionsPerBackend) return false;
    state.open++;
    return true;
  }

  /**
   * Counts a connection the caller already has (failover landed on another
   * endpoint than the one reserved): it may briefly exceed the limit rather
   * than drop a connection that is open already.
   */
  adopt(label: string): void {
    this.#state(label).open++;
  }

  /**
   * Waits for a slot on `label`: `grant` is called with a reusable socket or
   * null (a slot: open a new connection), or `fail` with a
   * ConnectionLimitError after `queueTimeoutMs`. Null when the queue is full
   * (nothing is called then). Each callback is called at most once, never
   * synchronously from here, never after `cancel`.
   */
  enqueue(label: string, grant: (grant: Grant) => void, fail: (err: PolyproxyError) => void): PoolWaiter | null {
    const state = this.#state(label);
    if (state.queue.length >= this.maxQueue) {
      this.rejected++;
      this.#maybeDrop(label, state);
      return null;
    }
    const waiter: PoolWaiter = { label, grant, fail, timer: null };
    waiter.timer = setTimeout(waiterOnTimeout, this.queueTimeoutMs, this, waiter);
    state.queue.push(waiter);
    this.queued++;
    return waiter;
  }

  /** Stops waiting (the client went away). */
  cancel(waiter: PoolWaiter): void {
    if (waiter.grant === null) return;
    this.#unqueue(waiter);
  }

  /** @internal */
  timeout(waiter: PoolWaiter): void {
    const fail = waiter.fail;
    if (fail === null) return;
    waiter.timer = null;
    this.#unqueue(waiter);
    this.rejected++;
    fail(new ConnectionLimitError(waiter.label, `waited ${this.queueTimeoutMs} ms`));
  }

  #unqueue(waiter: PoolWaiter): void {
    if (waiter.timer !== null) clearTimeout(waiter.timer);
    waiter.timer = null;
    waiter.grant = null;
    waiter.fail = null;
    const state = this.#endpoints.get(waiter.label);
    if (state === undefined) return;
    const i = state.queue.indexOf(waiter);
    if (i >= 0) state.queue.splice(i, 1);
    this.#maybeDrop(waiter.label, state);
  }

  /** The first waiter of `state`, out of the queue, with its grant callback. */
  #nextWaiter(state: EndpointState): ((grant: Grant) => void) | null {
    const waiter = state.queue.shift();
    if (waiter === undefined) return null;
    const grant = waiter.grant as (grant: Grant) => void;
    if (waiter.timer !== null) clearTimeout(waiter.timer);
    waiter.timer = null;
    waiter.grant = null;
    waiter.fail = null;
    return grant;
  }

  /**
   * Gives back a slot with a connection whose last response was complete:
   * to the first waiter, else parked idle; destroyed (slot freed) when it is
   * unusable or the endpoint's idle list is full.
   */
  put(label: string, socket: Socket, listening = false): void {
    if (socket.destroyed || !socket.writable) {
      socket.destroy();
      this.release(label);
      return;
    }
    const state = this.#state(label);
    const next = this.#nextWaiter(state);
    if (next !== null) {
      this.reused++;
      socket.pause();
      queueMicrotask(() => next(socket));
      return;
    }
    if (state.idle.length >= this.maxPerBackend) {
      socket.destroy();
      this.release(label);
      return;
    }
    this.returned++;
    const pooled = socket as PooledSocket;
    const now = Date.now();
    let entry = pooled[kIdle];
    if (entry === undefined) {
      entry = { pool: this, label, listening, idle: true, since: now };
      pooled[kIdle] = entry;
    } else {
      entry.pool = this;
      entry.label = label;
      entry.listening = listening;
      entry.idle = true;
      entry.since = now;
    }
    if (!listening) {
      socket.on('data', idleOnData);
      socket.on('end', idleOnEnd);
      socket.on('close', idleOnClose);
      socket.on('error', idleOnError);
    }
    if (socket.readableFlowing !== true) socket.resume();
    state.idle.push(socket);
    if (this.#sweepTimer === null) this.#armSweep(this.idleTimeoutMs);
  }

  #armSweep(ms: number): void {
    this.#sweepTimer = setTimeout(poolOnSweep, Math.max(ms, MIN_SWEEP_MS), this);
    this.#sweepTimer.unref();
  }

  /**
   * @internal Closes the sockets idle for idleTimeoutMs or more. An idle
   * list is a stack, so its oldest sockets are at the bottom; re-arms for
   * the oldest one left.
   */
  sweep(): void {
    this.#sweepTimer = null;
    const now = Date.now();
    let next = Infinity;
    for (const state of [...this.#endpoints.values()]) {
      const list = state.idle;
      while (list.length > 0) {
        const oldest = list[0] as PooledSocket;
        const since = oldest[kIdle]?.since ?? 0;
        if (now - since < this.idleTimeoutMs) {
          next = Math.min(next, since + this.idleTimeoutMs - now);
          break;
        }
        discard(oldest);
      }
    }
    if (next !== Infinity) this.#armSweep(next);
  }

  /** Gives back a slot whose connection is gone (closed, failed, or never opened); the first waiter gets it. */
  release(label: string): void {
    const state = this.#endpoints.get(label);
    if (state === undefined) return;
    if (state.open > 0) state.open--;
    if (this.maxConnectionsPerBackend === 0 || state.open < this.maxConnectionsPerBackend) {
      const next = this.#nextWaiter(state);
      if (next !== null) {
        state.open++;
        queueMicrotask(() => next(null));
        return;
      }
    }
    this.#maybeDrop(label, state);
  }

  /** Idle connections per endpoint. */
  sizes(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [label, state] of this.#endpoints) if (state.idle.length > 0) out[label] = state.idle.length;
    return out;
  }

  /** Slots taken (active + idle + connecting) and waiters, per endpoint. */
  stats(): Record<string, { open: number; idle: number; queued: number }> {
    const out: Record<string, { open: number; idle: number; queued: number }> = {};
    for (const [label, state] of this.#endpoints) out[label] = { open: state.open, idle: state.idle.length, queued: state.queue.length };
    return out;
  }

  /** Closes every idle connection (shutdown). */
  clear(): void {
    for (const [label, state] of this.#endpoints) {
      for (const socket of state.idle.splice(0)) {
        unidle(socket, true);
        socket.on('error', noop);
        socket.destroy();
        this.release(label);
      }
    }
  }

  /** @internal An idle socket went bad: out of the idle list, slot freed. */
  remove(label: string, socket: Socket): void {
    const state = this.#endpoints.get(label);
    if (state === undefined) return;
    const i = state.idle.indexOf(socket);
    if (i < 0) return;
    state.idle.splice(i, 1);
    this.release(label);
  }
}

function waiterOnTimeout(pool: BackendPool, waiter: PoolWaiter): void {
  pool.timeout(waiter);
}

function poolOnSweep(pool: BackendPool): void {
  pool.sweep();
}

/**
 * For sockets put with `listening`: their own 'data', 'end', 'close', 'error'
 * and 'timeout' handlers call this when no request owns the socket. An idle
 * socket is discarded; one that is not idle (being handed over) is left alone.
 */
export function idleSocketEvent(socket: Socket): void {
  if ((socket as PooledSocket)[kIdle]?.idle === true) discard(socket);
}

/**
 * Out of the idle state. A socket with its own handlers is taken by a
 * request that reads at once, so it keeps reading (no readStop/readStart
 * pair per request) unless `pause`; the pool's own handlers are removed and
 * the socket paused.
 */
function unidle(socket: PooledSocket, pause: boolean): void {
  const entry = socket[kIdle];
  if (entry !== undefined) entry.idle = false;
  if (entry === undefined || !entry.listening) {
    socket.pause();
    if (entry === undefined) return;
  } else {
    if (pause) socket.pause();
    return;
  }
  socket.removeListener('data', idleOnData);
  socket.removeListener('end', idleOnEnd);
  socket.removeListener('close', idleOnClose);
  socket.removeListener('error', idleOnError);
}

function discard(socket: PooledSocket): void {
  const entry = socket[kIdle];
  const wasIdle = entry?.idle === true;
  unidle(socket, true);
  socket.on('error', noop);
  socket.destroy();
  if (entry !== undefined && wasIdle) entry.pool.remove(entry.label, socket);
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

function noop(): void {}
