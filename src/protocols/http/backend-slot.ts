/**
 * The backend side of one http client connection: the connection slot the
 * current request holds on an endpoint (core's pool through BackendPool),
 * and the backend socket in it.
 *
 * Per request: an idle pooled connection (the fast path: no promise), else
 * a slot — free at once, or after waiting in the endpoint's queue — and a
 * new connection through the router's connect (failover may land on
 * another endpoint: the slot follows the connection). Given back exactly
 * once: to the pool when the response left it reusable, else closed with
 * its slot freed. After a 101 the socket goes to core's Relay and keeps its
 * slot until the relay closes.
 *
 * When the connection dies before a response, `retry` asks core's rule
 * (core/retry.ts) whether the request may be sent again, and does it under
 * the same slot.
 *
 * Backend socket handlers are module-level functions, attached once per
 * connection (they stay across pooled reuse and call the pool's
 * `idleSocketEvent` while no request holds the socket).
 */
import type { Socket } from 'node:net';
import type { Endpoint } from '../../core/endpoint.ts';
import type { PolyproxyError } from '../../core/errors.ts';
import type { PoolWaiter, WaitTicket } from '../../core/pool.ts';
import { backendOnRead as relayBackendOnRead } from '../../core/relay.ts';
import type { ResolveContext } from '../../core/resolver.ts';
import { mayRetry } from '../../core/retry.ts';
import type { Router, RouteDecision } from '../../core/router.ts';
import { reclaimLent } from '../../core/io/shared-read-buffer.ts';
import { adoptSharedReadBuffer } from '../../core/io/socket-onread.ts';
import type { HttpHead } from './head-parser.ts';
import { ConnectionLimitError, idleSocketEvent, kOwnHandlers } from './pool.ts';
import type { BackendPool } from './pool.ts';

const kSlot = Symbol('polyproxy.http.slot');
type SlotSocket = Socket & { [kSlot]?: BackendSlot | undefined; [kOwnHandlers]?: boolean };

/** What the backend slot needs from its session. */
export interface SlotOwner {
  readonly router: Router;
  readonly connectTimeoutMs: number;
  /** TCP keepalive for new backend connections (0 = off). */
  readonly tcpKeepAliveMs: number;
  /** The client went away or the session ended: whatever the slot gets now is given back at once. */
  readonly finished: boolean;
  /** The current request's resource id (its normalized Host). */
  readonly resourceId: string | undefined;
  resolveContext(): ResolveContext;
  /** A backend connection is attached to the current request (start its deadline, reset the response side). */
  backendAttached(): void;
  /** The backend connection left the request (its deadline no longer applies). */
  backendDetached(): void;
  backendBytes(chunk: Buffer, transient: boolean): void;
  backendEnded(): void;
  backendGone(err: Error | null): void;
  backendDrained(): void;
  /** A retry's new connection is attached: send the request again. */
  resend(): void;
  /** A retry failed to get a connection. */
  retryFailed(err: unknown): void;
}

export class BackendSlot {
  readonly owner: SlotOwner;
  readonly pool: BackendPool;
  /** The backend socket the current request holds, or null. */
  backend: Socket | null = null;
  /** The endpoint the slot is held on. */
  label = '';
  /** The connection came from the pool (it carried an earlier request). */
  reused = false;
  /** Times the current request was sent again. */
  retries = 0;
  /**
   * A new connection's endpoint until its first response settles how the
   * backend did (confirm): an accepted connect alone does not count as
   * healthy, so a backend that accepts and then resets, stays silent or
   * answers garbage opens its breaker.
   */
  unconfirmed: Endpoint | null = null;
  /** While waiting for a connection slot (the endpoint was at its limit). */
  #ticket: WaitTicket | null = null;
  #waitReject: ((err: PolyproxyError) => void) | null = null;
  /** An upgraded connection keeps its slot until the relay closes. */
  #upgraded = false;

  constructor(owner: SlotOwner, pool: BackendPool) {
    this.owner = owner;
    this.pool = pool;
  }

  /** Fast path: an idle pooled connection to `label`, attached at once; false when there is none. */
  takeIdle(label: string): boolean {
    const socket = this.pool.take(label);
    if (socket === null) return false;
    this.label = label;
    this.reused = true;
    this.#adopt(socket);
    return true;
  }

  /**
   * Slot accounting (core/pool.ts): from here on the request holds a slot on
   * `label` — with the socket in `backend` once adopted, until `release`
   * gives both back (or the relay closes, after an upgrade).
   */
  async attach(decision: RouteDecision, timeoutMs: number): Promise<void> {
    const first = decision.candidates[0] as Endpoint;
    const pool = this.pool;
    let socket = pool.take(first.label);
    this.label = first.label;
    if (socket === null && !pool.tryReserve(first.label)) {
      socket = await this.#waitForSlot(first.label);
      if (this.owner.finished) {
        if (socket === null) pool.release(first.label);
        else pool.put(first.label, socket);
        return;
      }
    }
    this.reused = socket !== null;
    if (socket === null) socket = await this.#connectWithSlot(decision, timeoutMs);
    if (this.owner.finished) {
      pool.put(this.label, socket); // unused: idle, or straight to a waiter
      return;
    }
    this.#adopt(socket);
  }

  /** Opens a connection under the slot held on `label`; the slot is given back when it fails. */
  async #connectWithSlot(decision: RouteDecision, timeoutMs: number): Promise<Socket> {
    let connected;
    try {
      connected = await this.owner.router.connect(decision, timeoutMs, { keepAliveMs: this.owner.tcpKeepAliveMs, confirmLater: true });
    } catch (err) {
      this.pool.release(this.label);
      throw err;
    }
    const label = connected.endpoint.label;
    this.unconfirmed = connected.endpoint;
    if (label !== this.label) {
      // Failover to another candidate: the slot follows the connection.
      this.pool.release(this.label);
      this.pool.adopt(label);
      this.label = label;
    }
    return connected.socket;
  }

  #waitForSlot(label: string): Promise<Socket | null> {
    return new Promise<Socket | null>((resolve, reject) => {
      const ticket = this.pool.enqueue(label, {
        poolGranted: (grant) => {
          this.#ticket = null;
          this.#waitReject = null;
          resolve(grant);
        },
        poolFailed: (err) => {
          this.#ticket = null;
          this.#waitReject = null;
          reject(err);
        },
      } satisfies PoolWaiter<Socket>);
      if (ticket === null) {
        reject(new ConnectionLimitError(label, `${this.pool.maxQueue} requests already waiting`));
        return;
      }
      this.#ticket = ticket;
      this.#waitReject = reject;
    });
  }

  /** The client went away while the request waited for a slot: out of the queue, and the wait fails with `err`. */
  cancelWait(err: PolyproxyError): void {
    const ticket = this.#ticket;
    if (ticket === null) return;
    this.pool.cancel(ticket);
    const reject = this.#waitReject as (err: PolyproxyError) => void;
    this.#ticket = null;
    this.#waitReject = null;
    reject(err);
  }

  #adopt(socket: Socket): void {
    this.backend = socket;
    const owned = socket as SlotSocket;
    owned[kSlot] = this;
    if (owned[kOwnHandlers] !== true) {
      // Attached once per connection; between requests (idle in the pool) they dispatch to the pool.
      // Backend sockets read through the shared buffer (connect.ts creates them with onread): the
      // callback is switched from the relay's to ours, so no Buffer or 'data' event per read.
      owned[kOwnHandlers] = true;
      if (!adoptSharedReadBuffer(socket, backendOnRead)) socket.on('data', backendOnData);
      socket.on('end', backendOnEnd);
      socket.on('error', backendOnError);
      socket.on('close', backendOnClose);
      socket.on('drain', backendOnDrain);
    }
    this.owner.backendAttached();
    if (socket.readableFlowing !== true) socket.resume();
  }

  /** How the new connection's first response went (null: it came), for the endpoint's breaker; once per connection. */
  confirm(problem: string | null): void {
    const endpoint = this.unconfirmed;
    if (endpoint === null) return;
    this.unconfirmed = null;
    this.owner.router.health?.answered(endpoint, problem);
  }

  /** Gives the backend connection and its slot back: to the pool when `reuse`, else closed (`keepSlot`: the slot stays with this request, for a retry). */
  release(reuse: boolean, keepSlot = false): void {
    const socket = this.backend;
    if (socket === null) return;
    this.backend = null;
    // Nothing settled (the client left first): not the backend's doing either way.
    this.unconfirmed = null;
    (socket as SlotSocket)[kSlot] = undefined;
    this.owner.backendDetached();
    if (reuse) {
      // The pool times idle sockets out; the handlers stay and dispatch to the pool.
      this.pool.put(this.label, socket);
    } else {
      socket.on('error', noop);
      socket.destroy();
      if (!keepSlot) this.pool.release(this.label);
    }
  }

  /**
   * The connection died before the response was complete. True when core's
   * rule lets the request (`req`, nothing of whose response arrived when
   * not `responded`) go out again — then it does, on a fresh connection
   * under the same slot, and the owner hears `resend` or `retryFailed`.
   */
  retry(req: HttpHead, err: Error | null, responded: boolean): boolean {
    const may = mayRetry({
      method: req.method,
      requestSent: true,
      reusedConnection: this.reused,
      connectionClosed: err === null || isConnectionClosed(err),
      responseStarted: responded,
      // The body is streamed, never held: only a body-less request can be sent again.
      replayable: req.framing === 'none',
      retries: this.retries,
    });
    if (!may) return false;
    this.retries++;
    this.release(false, true);
    this.reused = false;
    void this.#reconnect();
    return true;
  }

  /** Runs under the slot the dead connection held on `label`. */
  async #reconnect(): Promise<void> {
    const owner = this.owner;
    try {
      let decision;
      try {
        decision = await owner.router.route(owner.resourceId as string, owner.resolveContext());
      } catch (err) {
        this.pool.release(this.label);
        throw err;
      }
      const socket = await this.#connectWithSlot(decision, decision.entry.route.timeoutMs ?? owner.connectTimeoutMs);
      if (owner.finished) {
        socket.on('error', noop);
        socket.destroy();
        this.pool.release(this.label);
        return;
      }
      this.#adopt(socket);
      owner.resend();
    } catch (err) {
      owner.retryFailed(err);
    }
  }

  /** A 101: the socket leaves the http handlers for core's Relay, keeping its slot until `relayClosed`. */
  detachForRelay(): Socket {
    const backend = this.backend as Socket;
    this.backend = null;
    const owned = backend as SlotSocket;
    owned[kSlot] = undefined;
    owned[kOwnHandlers] = false;
    backend.removeListener('data', backendOnData);
    backend.removeListener('end', backendOnEnd);
    backend.removeListener('error', backendOnError);
    backend.removeListener('close', backendOnClose);
    backend.removeListener('drain', backendOnDrain);
    // Reads go back to the relay's callback (a no-op when the socket uses 'data' events).
    adoptSharedReadBuffer(backend, relayBackendOnRead);
    backend.pause();
    this.#upgraded = true;
    return backend;
  }

  /** The relay of an upgraded connection closed: its slot is free. */
  relayClosed(): void {
    if (!this.#upgraded) return;
    this.#upgraded = false;
    this.pool.release(this.label);
  }
}

/** A socket error that means the peer closed the connection (vs. a local or protocol failure). */
function isConnectionClosed(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ECONNRESET' || code === 'EPIPE';
}

function backendOnData(this: SlotSocket, chunk: Buffer): void {
  const slot = this[kSlot];
  if (slot !== undefined) slot.owner.backendBytes(chunk, false);
  else idleSocketEvent(this);
}
/** onread callback of backend sockets while the http session owns them (and while idle in the pool). */
function backendOnRead(this: SlotSocket, nread: number, buffer: Buffer): boolean {
  const slot = this[kSlot];
  if (slot !== undefined) slot.owner.backendBytes(buffer.subarray(0, nread), true);
  else idleSocketEvent(this);
  return true;
}
function backendOnEnd(this: SlotSocket): void {
  const slot = this[kSlot];
  if (slot !== undefined) slot.owner.backendEnded();
  else idleSocketEvent(this);
}
function backendOnError(this: SlotSocket, err: Error): void {
  const slot = this[kSlot];
  if (slot !== undefined) slot.owner.backendGone(err);
  else idleSocketEvent(this);
}
function backendOnClose(this: SlotSocket): void {
  const slot = this[kSlot];
  if (slot !== undefined) slot.owner.backendGone(null);
  else idleSocketEvent(this);
}
function backendOnDrain(this: SlotSocket): void {
  reclaimLent(this);
  this[kSlot]?.owner.backendDrained();
}

function noop(): void {}
