/**
 * Backend connections per endpoint: the one pool implementation, generic
 * over what it pools (a socket, a FastCGI connection, an undici Client).
 * What a connection is — whether it can be reused, how it closes, how it
 * notices going bad while idle — comes from a `PoolKind`.
 *
 * Slots: at most `maxConnectionsPerEndpoint` connections per endpoint (the
 * key, an endpoint label), active plus idle plus being opened (0 =
 * unlimited). A request that needs a new connection when its endpoint is
 * full waits in a FIFO queue (urgent waiters ahead of the others; at most
 * `maxQueue` waiters per endpoint, each at most `queueTimeoutMs`; past
 * either: ConnectionLimitError, a 503). A
 * connection given back reusable goes straight to the first waiter; when it
 * is closed instead, its slot goes to the first waiter, who opens a new one.
 * The holder of a slot gives it back exactly once: `put` (a reusable
 * connection) or `release` (the connection is gone, or was never opened).
 * A timer exists only while a request actually waits.
 *
 * Idle keep-alive connections: LIFO (the most recently used one is the
 * least likely to have been closed by the backend's own idle timer), at most
 * `maxIdlePerEndpoint` per endpoint, each closed after `idleTimeoutMs`
 * unused — by one lazy sweep timer per pool, not a timer re-armed per
 * request. A connection that goes bad while idle (the kind calls
 * `evictIdle`) is closed and its slot freed: a backend must not speak
 * unasked. Reuse allocates nothing: the bookkeeping entry is made once per
 * connection and kept on it.
 */
import { PolyproxyError } from './errors.ts';

/** What the pool needs to know about the connections it holds. */
export interface PoolKind<T extends object> {
  /** True when `conn` can carry another request now (asked when it is given back and when it is taken). */
  reusable(conn: T): boolean;
  /** Closes `conn` for good; must not throw or let an error escape later. */
  close(conn: T): void;
  /** `conn` goes idle: from now on an EOF, error or unasked byte on it must call `evictIdle(conn)`. */
  park(conn: T): void;
  /** `conn` leaves the idle list: `taken` for a request (it is used at once), else to be closed. */
  unpark(conn: T, taken: boolean): void;
  /** `conn` goes from one holder straight to a waiter (granted on the next tick): hold its reads meanwhile. */
  handOver(conn: T): void;
}

export interface EndpointPoolOptions {
  /** Connections (active + idle + opening) per endpoint; 0 = unlimited. */
  readonly maxConnectionsPerEndpoint: number;
  /** Idle connections kept per endpoint (0 = none: each closes when given back). */
  readonly maxIdlePerEndpoint: number;
  /** An idle connection unused this long is closed. */
  readonly idleTimeoutMs: number;
  /** How long a request may wait for a slot; 0 = no limit. */
  readonly queueTimeoutMs: number;
  /** Waiting requests per endpoint; more are refused at once (Infinity = no bound). */
  readonly maxQueue: number;
}

/** 503: the endpoint is at its connection limit and the request could not wait (longer). */
export class ConnectionLimitError extends PolyproxyError {
  constructor(label: string, why: string) {
    super('UNAVAILABLE', `backend ${label} connection limit reached (${why})`, { source: 'backend', retryable: true });
  }
}

/** The pool was closed (shutdown) while a request waited for a slot. */
export class PoolClosedError extends PolyproxyError {
  constructor(label: string) {
    super('UNAVAILABLE', `the connection pool for ${label} is closed`, { source: 'internal' });
  }
}

/**
 * Hears how a wait for a slot ends: exactly one of these, once, never
 * synchronously from the call that queued or freed it, never after `cancel`.
 */
export interface PoolWaiter<T> {
  /** A slot: with a reusable connection (`conn`), or null: open a new connection under it. */
  poolGranted(conn: T | null): void;
  /** ConnectionLimitError after queueTimeoutMs, or PoolClosedError. */
  poolFailed(err: PolyproxyError): void;
}

/** One queued wait; `cancel` takes it back. */
export interface WaitTicket {
  readonly key: string;
}

interface Ticket<T extends object> extends WaitTicket {
  readonly pool: EndpointPool<T>;
  waiter: PoolWaiter<T> | null;
  timer: NodeJS.Timeout | null;
  /** Queued ahead of every non-urgent waiter (see `enqueue`). */
  readonly urgent: boolean;
}

const kEntry = Symbol('polyproxy.pool.entry');

/** Made once per connection and kept across reuse (no allocation per request). */
interface Entry {
  pool: EndpointPool<object>;
  key: string;
  /** In an idle list now. */
  idle: boolean;
  /** When it was parked (Date.now()). */
  since: number;
}

type Pooled = { [kEntry]?: Entry | undefined };

interface EndpointState<T extends object> {
  /** Slots taken: active connections, idle ones, and reservations still opening. */
  open: number;
  readonly idle: T[];
  readonly queue: Array<Ticket<T>>;
}

/** The sweep never runs more often than this (a very short idleTimeoutMs). */
const MIN_SWEEP_MS = 10;

export class EndpointPool<T extends object> {
  readonly kind: PoolKind<T>;
  readonly maxConnectionsPerEndpoint: number;
  readonly maxIdlePerEndpoint: number;
  readonly idleTimeoutMs: number;
  readonly queueTimeoutMs: number;
  readonly maxQueue: number;
  readonly #endpoints = new Map<string, EndpointState<T>>();
  /** Counters for tests and stats: connections reused (taken idle or handed to a waiter), parked idle. */
  reused = 0;
  returned = 0;
  /** Requests that had to wait for a slot, and those refused (queue full or timed out). */
  queued = 0;
  rejected = 0;
  /** Closes idle connections past idleTimeoutMs; armed only while some connection is idle. */
  #sweepTimer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(kind: PoolKind<T>, options: EndpointPoolOptions) {
    this.kind = kind;
    this.maxConnectionsPerEndpoint = options.maxConnectionsPerEndpoint;
    this.maxIdlePerEndpoint = options.maxIdlePerEndpoint;
    this.idleTimeoutMs = options.idleTimeoutMs;
    this.queueTimeoutMs = options.queueTimeoutMs;
    this.maxQueue = options.maxQueue;
  }

  get closed(): boolean {
    return this.#closed;
  }

  #state(key: string): EndpointState<T> {
    let state = this.#endpoints.get(key);
    if (state === undefined) {
      state = { open: 0, idle: [], queue: [] };
      this.#endpoints.set(key, state);
    }
    return state;
  }

  #maybeDrop(key: string, state: EndpointState<T>): void {
    if (state.open === 0 && state.idle.length === 0 && state.queue.length === 0) this.#endpoints.delete(key);
  }

  /** An idle connection to `key` (its slot comes with it), or null. The caller holds it from now on. */
  take(key: string): T | null {
    const state = this.#endpoints.get(key);
    if (state === undefined) return null;
    const list = state.idle;
    while (list.length > 0) {
      const conn = list.pop() as T;
      const entry = (conn as Pooled)[kEntry] as Entry;
      entry.idle = false;
      this.kind.unpark(conn, true);
      if (!this.kind.reusable(conn)) {
        this.kind.close(conn);
        this.release(key);
        continue;
      }
      this.reused++;
      return conn;
    }
    return null;
  }

  /** Takes a slot to open a new connection to `key`; false when the endpoint is full (then `enqueue`). */
  tryReserve(key: string): boolean {
    const state = this.#state(key);
    if (this.maxConnectionsPerEndpoint !== 0 && state.open >= this.maxConnectionsPerEndpoint) return false;
    state.open++;
    return true;
  }

  /**
   * Counts a connection the caller already has (failover landed on another
   * endpoint than the one reserved): it may briefly exceed the limit rather
   * than drop a connection that is open already.
   */
  adopt(key: string): void {
    this.#state(key).open++;
  }

  /**
   * Waits for a slot on `key` (see PoolWaiter). Null when the queue is full
   * or the pool is closed: nothing is called then. An `urgent` waiter goes
   * after the urgent ones already queued but ahead of every other (the
   * ws-bridge's upgrade GETs: a client's handshake must not wait behind a
   * backlog of other clients' messages).
   */
  enqueue(key: string, waiter: PoolWaiter<T>, urgent = false): WaitTicket | null {
    const state = this.#state(key);
    if (this.#closed || state.queue.length >= this.maxQueue) {
      this.rejected++;
      this.#maybeDrop(key, state);
      return null;
    }
    const ticket: Ticket<T> = { pool: this, key, waiter, timer: null, urgent };
    if (this.queueTimeoutMs > 0) ticket.timer = setTimeout(ticketOnTimeout, this.queueTimeoutMs, ticket);
    const queue = state.queue;
    if (urgent && queue.length > 0 && !(queue[queue.length - 1] as Ticket<T>).urgent) {
      let at = 0;
      while ((queue[at] as Ticket<T>).urgent) at++;
      queue.splice(at, 0, ticket);
    } else {
      queue.push(ticket);
    }
    this.queued++;
    return ticket;
  }

  /** Stops waiting (the request went away); its waiter hears nothing more. */
  cancel(ticket: WaitTicket): void {
    const t = ticket as Ticket<T>;
    if (t.waiter === null) return;
    this.#unqueue(t);
  }

  /** @internal The queue timeout of one ticket passed. */
  timeout(ticket: Ticket<T>): void {
    const waiter = ticket.waiter;
    if (waiter === null) return;
    ticket.timer = null;
    this.#unqueue(ticket);
    this.rejected++;
    waiter.poolFailed(new ConnectionLimitError(ticket.key, `waited ${this.queueTimeoutMs} ms`));
  }

  #unqueue(ticket: Ticket<T>): void {
    if (ticket.timer !== null) clearTimeout(ticket.timer);
    ticket.timer = null;
    ticket.waiter = null;
    const state = this.#endpoints.get(ticket.key);
    if (state === undefined) return;
    const i = state.queue.indexOf(ticket);
    if (i >= 0) state.queue.splice(i, 1);
    this.#maybeDrop(ticket.key, state);
  }

  /** The first waiter of `state`, out of the queue. */
  #nextWaiter(state: EndpointState<T>): PoolWaiter<T> | null {
    const ticket = state.queue.shift();
    if (ticket === undefined) return null;
    const waiter = ticket.waiter as PoolWaiter<T>;
    if (ticket.timer !== null) clearTimeout(ticket.timer);
    ticket.timer = null;
    ticket.waiter = null;
    return waiter;
  }

  /**
   * Gives back a slot with a connection whose last exchange was complete:
   * to the first waiter, else parked idle; closed (slot freed) when it is
   * not reusable, the endpoint's idle list is full, or the pool is closed.
   */
  put(key: string, conn: T): void {
    const kind = this.kind;
    if (this.#closed || !kind.reusable(conn)) {
      kind.close(conn);
      this.release(key);
      return;
    }
    const state = this.#state(key);
    const next = this.#nextWaiter(state);
    if (next !== null) {
      this.reused++;
      kind.handOver(conn);
      process.nextTick(grantWaiter, next, conn);
      return;
    }
    if (state.idle.length >= this.maxIdlePerEndpoint) {
      kind.close(conn);
      this.release(key);
      return;
    }
    this.returned++;
    const pooled = conn as Pooled;
    const now = Date.now();
    const entry = pooled[kEntry];
    if (entry === undefined) {
      pooled[kEntry] = { pool: this as EndpointPool<object>, key, idle: true, since: now };
    } else {
      entry.pool = this as EndpointPool<object>;
      entry.key = key;
      entry.idle = true;
      entry.since = now;
    }
    kind.park(conn);
    state.idle.push(conn);
    if (this.#sweepTimer === null) this.#armSweep(this.idleTimeoutMs);
  }

  /** Gives back a slot whose connection is gone (closed, failed, or never opened); the first waiter gets it. */
  release(key: string): void {
    const state = this.#endpoints.get(key);
    if (state === undefined) return;
    if (state.open > 0) state.open--;
    if (this.maxConnectionsPerEndpoint === 0 || state.open < this.maxConnectionsPerEndpoint) {
      const next = this.#nextWaiter(state);
      if (next !== null) {
        state.open++;
        process.nextTick(grantWaiter, next, null);
        return;
      }
    }
    this.#maybeDrop(key, state);
  }

  #armSweep(ms: number): void {
    this.#sweepTimer = setTimeout(poolOnSweep, Math.max(ms, MIN_SWEEP_MS), this);
    this.#sweepTimer.unref();
  }

  /**
   * @internal Closes the connections idle for idleTimeoutMs or more. An idle
   * list is a stack, so its oldest connections are at the bottom; re-arms
   * for the oldest one left.
   */
  sweep(): void {
    this.#sweepTimer = null;
    const now = Date.now();
    let next = Infinity;
    for (const [key, state] of [...this.#endpoints]) {
      const list = state.idle;
      while (list.length > 0) {
        const entry = (list[0] as Pooled)[kEntry] as Entry;
        if (now - entry.since < this.idleTimeoutMs) {
          next = Math.min(next, entry.since + this.idleTimeoutMs - now);
          break;
        }
        const conn = list.shift() as T;
        entry.idle = false;
        this.kind.unpark(conn, false);
        this.kind.close(conn);
        this.release(key);
      }
    }
    if (next !== Infinity) this.#armSweep(next);
  }

  /** @internal An idle connection went bad: out of its idle list, closed, slot freed. */
  evict(key: string, conn: T): void {
    const state = this.#endpoints.get(key);
    if (state === undefined) return;
    const i = state.idle.lastIndexOf(conn);
    if (i < 0) return;
    state.idle.splice(i, 1);
    ((conn as Pooled)[kEntry] as Entry).idle = false;
    this.kind.unpark(conn, false);
    this.kind.close(conn);
    this.release(key);
  }

  /** Idle connections to `key`. */
  idleCount(key: string): number {
    return this.#endpoints.get(key)?.idle.length ?? 0;
  }

  /** Slots taken on `key`: active + idle + opening. */
  openCount(key: string): number {
    return this.#endpoints.get(key)?.open ?? 0;
  }

  /** Slots taken (active + idle + opening) and waiters, per endpoint. */
  stats(): Record<string, { open: number; idle: number; queued: number }> {
    const out: Record<string, { open: number; idle: number; queued: number }> = {};
    for (const [key, state] of this.#endpoints) out[key] = { open: state.open, idle: state.idle.length, queued: state.queue.length };
    return out;
  }

  /**
   * Shutdown: closes every idle connection, fails every waiter with
   * PoolClosedError; from now on a connection given back is closed and
   * nobody may wait. Connections in use stay with their holders.
   */
  close(): void {
    this.#closed = true;
    if (this.#sweepTimer !== null) clearTimeout(this.#sweepTimer);
    this.#sweepTimer = null;
    for (const [key, state] of [...this.#endpoints]) {
      // Waiters first: a slot freed below must not go to one of them.
      for (let waiter = this.#nextWaiter(state); waiter !== null; waiter = this.#nextWaiter(state)) process.nextTick(failWaiter, waiter, new PoolClosedError(key));
      while (state.idle.length > 0) this.evict(key, state.idle[state.idle.length - 1] as T);
      this.#maybeDrop(key, state);
    }
  }
}

/**
 * A kind's hook for an event on an idle connection (EOF, error, unasked
 * bytes): the connection is closed and its slot freed. Does nothing for a
 * connection that is not idle in a pool (a request holds it, or it is being
 * handed to a waiter).
 */
export function evictIdle(conn: object): void {
  const entry = (conn as Pooled)[kEntry];
  if (entry?.idle === true) entry.pool.evict(entry.key, conn);
}

/** True while `conn` sits in a pool's idle list. */
export function isIdle(conn: object): boolean {
  return (conn as Pooled)[kEntry]?.idle === true;
}

function grantWaiter<T>(waiter: PoolWaiter<T>, conn: T | null): void {
  waiter.poolGranted(conn);
}

function failWaiter<T>(waiter: PoolWaiter<T>, err: PolyproxyError): void {
  waiter.poolFailed(err);
}

function ticketOnTimeout<T extends object>(ticket: Ticket<T>): void {
  ticket.pool.timeout(ticket);
}

function poolOnSweep<T extends object>(pool: EndpointPool<T>): void {
  pool.sweep();
}
