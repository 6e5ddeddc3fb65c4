/**
 * The tcp fast path on bare libuv handles: one object per connection that
 * dials the backend and then relays, with no net.Socket on either side
 * (io/tcp-handle.ts). A listener uses it for plain connections whose route
 * is cached and needs nothing but a dial to literal addresses (see
 * Listener's accept hook); anything else takes the socket paths, which
 * POLYPROXY_DIRECT_IO=0 forces.
 *
 * Dial: candidates in order, each result fed to the breakers; the connect
 * timeout is a shared 100 ms sweep, as in connect.ts. When every candidate
 * fails the owner gets the client handle back to refuse it the usual way.
 *
 * Relay, as relay.ts's direct mode: both handles read into the process's
 * shared read buffer; a read is copied into the spare (borrowRead) and
 * written to the other handle at once (writeBuffer: uv_try_write first).
 * A write the kernel did not take whole is queued by libuv pointing into
 * the spare, which is then lent to it (lendSpare) while the reading side
 * stops until the write completes — the backpressure. EOF on one side
 * becomes a shutdown (FIN) of the other once its queued writes are out;
 * when both directions are shut, or on any error, both handles close.
 * Idle timeouts use relay.ts's coarse clock and sweep. Per read: no
 * allocation, closure, timer or log line.
 */
import { getSystemErrorName } from 'node:util';
import type { Endpoint } from './endpoint.ts';
import { PolyproxyError } from './errors.ts';
import { fdExhaustedError } from './fd-limit.ts';
import type { EndpointHealth } from './health.ts';
import { borrowRead, lendSpare, returnLent } from './io/shared-read-buffer.ts';
import { lastReadResult, newWriteReq, releaseWriteReq, WRITE_DONE, WRITE_QUEUED, writeReqOwner, writeToHandle } from './io/stream-handle.ts';
import type { WriteReq } from './io/stream-handle.ts';
import { connectHandle, literalFamily, newConnectReq, newShutdownReq, newTcpHandle, startHandle } from './io/tcp-handle.ts';
import type { ConnectReq, ShutdownReq, TcpHandle } from './io/tcp-handle.ts';
import { coarseNow, unwatchIdle, watchIdle } from './relay.ts';
import type { IdleSession } from './relay.ts';

export interface HandleRelayOwner {
  /** The backend accepted: fill `relay.context`, then the relay starts. */
  handleConnected(relay: HandleRelay): void;
  /** Every candidate failed (or shutdown): `relay.client` is untouched (never read), for the owner to refuse and close. */
  handleDialFailed(relay: HandleRelay, error: PolyproxyError): void;
  /** Both handles are closed (after handleConnected only). */
  relayClosed(relay: HandleRelay): void;
}

const DIALING = 0;
const RELAYING = 1;
const CLOSED = 2;

const UV_EOF = -4095;
const UV_EMFILE = -24;
const UV_ENFILE = -23;

const kSide = Symbol('polyproxy.handleSide');
type SideHandle = TcpHandle & { [kSide]?: HandleSide };

/** One handle of a relay: what is written to it, and the side whose reads it receives. */
class HandleSide {
  readonly relay: HandleRelay;
  handle: TcpHandle;
  /** Reads from this side go to `peer`. */
  peer: HandleSide = this;
  /** For writes to this handle, reused while they complete at once. */
  req: WriteReq | null = null;
  /** A queued write to this handle: `peer` stopped reading until it lands. */
  pending: WriteReq | null = null;
  lent: Buffer | null = null;
  /** This side sent EOF (so `peer` was shut down). */
  ended = false;
  /** This handle's shutdown (our FIN to it) completed. */
  shut = false;

  constructor(relay: HandleRelay, handle: TcpHandle) {
    this.relay = relay;
    this.handle = handle;
    (handle as SideHandle)[kSide] = this;
  }
}

export class HandleRelay implements IdleSession {
  readonly owner: HandleRelayOwner;
  readonly client: TcpHandle;
  readonly candidates: readonly Endpoint[];
  readonly timeoutMs: number;
  readonly health: EndpointHealth | undefined;
  readonly keepAliveMs: number;
  /** The backend handle (the attempt in progress while dialing). */
  backend: TcpHandle | null = null;
  endpoint: Endpoint | null = null;
  state = DIALING;
  next = 0;
  failures: string[] | null = null;
  connectReq: ConnectReq | null = null;
  deadline = 0;
  prevPending: HandleRelay | null = null;
  nextPending: HandleRelay | null = null;
  pending = false;
  clientSide: HandleSide;
  backendSide: HandleSide | null = null;
  bytesIn = 0;
  bytesOut = 0;
  startedAt = 0;
  lastActive = coarseNow;
  idleTimeoutMs: number;
  reason: string | null = null;
  /** Whatever the owner needs at close. */
  context: unknown = null;
  /** The client handle came from a listening socket that already set TCP_NODELAY and keepalive (io/tcp-handle.ts setAcceptedSocketOptions). */
  clientOptionsInherited = false;
  // IdleSession
  swept = false;
  prevIdle: IdleSession | null = null;
  nextIdle: IdleSession | null = null;
  firstDeadline = 0;

  constructor(owner: HandleRelayOwner, client: TcpHandle, candidates: readonly Endpoint[], timeoutMs: number, health: EndpointHealth | undefined, keepAliveMs: number, idleTimeoutMs: number) {
    this.owner = owner;
    this.client = client;
    this.candidates = candidates;
    this.timeoutMs = timeoutMs;
    this.health = health;
    this.keepAliveMs = keepAliveMs;
    this.idleTimeoutMs = idleTimeoutMs;
    this.clientSide = new HandleSide(this, client);
  }

  get dialing(): boolean {
    return this.state === DIALING;
  }

  start(): void {
    dialNext(this);
  }

  /** Ends the session now: idle timeout, shutdown deadline. A relay still dialing fails to its owner with SHUTTING_DOWN. */
  destroy(reason: string): void {
    if (this.state === DIALING) {
      cancelAttempt(this);
      this.owner.handleDialFailed(this, new PolyproxyError('SHUTTING_DOWN', 'the proxy is shutting down', { source: 'internal' }));
      return;
    }
    if (this.reason === null) this.reason = reason;
    closeRelay(this);
  }
}

/** Every candidate must be a literal TCP address (no lookup, no unix socket) for this path. */
export function dialableByHandle(candidates: readonly Endpoint[]): boolean {
  for (const endpoint of candidates) {
    if (endpoint.type !== 'tcp' || familyOf(endpoint) === 0) return false;
  }
  return true;
}

const families = new WeakMap<Endpoint, number>();

function familyOf(endpoint: Endpoint & { type: 'tcp' }): number {
  let family = families.get(endpoint);
  if (family === undefined) {
    family = literalFamily(endpoint.host);
    families.set(endpoint, family);
  }
  return family;
}

// ---- dial -------------------------------------------------------------------

function dialNext(relay: HandleRelay): void {
  for (;;) {
    const endpoint = relay.candidates[relay.next] as (Endpoint & { type: 'tcp' }) | undefined;
    if (endpoint === undefined) {
      relay.backend = null;
      relay.endpoint = null;
      const failures = relay.failures === null ? '' : relay.failures.join('; ');
      relay.owner.handleDialFailed(relay, new PolyproxyError('BACKEND_UNREACHABLE', `backend unreachable (${failures})`, { retryable: true }));
      return;
    }
    relay.next++;
    const handle = newTcpHandle();
    const req = newConnectReq(relay, onConnectDone);
    const err = connectHandle(handle, req, familyOf(endpoint), endpoint.host, endpoint.port);
    relay.endpoint = endpoint;
    if (err === 0) {
      relay.backend = handle;
      relay.connectReq = req;
      relay.deadline = Date.now() + relay.timeoutMs;
      pendingDials.add(relay);
      return;
    }
    handle.close();
    if (err === UV_EMFILE || err === UV_ENFILE) {
      // No descriptor for any candidate either, and not the backend's fault: no breaker accounting (as connect.ts).
      relay.backend = null;
      relay.endpoint = null;
      relay.owner.handleDialFailed(relay, fdExhaustedError(connectError(err, endpoint)));
      return;
    }
    attemptFailed(relay, connectError(err, endpoint).message);
  }
}

function attemptFailed(relay: HandleRelay, why: string): void {
  const endpoint = relay.endpoint as Endpoint;
  (relay.failures ??= []).push(`${endpoint.label}: ${why}`);
  relay.health?.failed(endpoint, why);
}

function onConnectDone(this: ConnectReq, status: number): void {
  const relay = this.owner as HandleRelay;
  this.owner = null;
  // A stale attempt (timed out or cancelled: its handle was closed).
  if (relay.connectReq !== this) return;
  relay.connectReq = null;
  pendingDials.remove(relay);
  const backend = relay.backend as TcpHandle;
  if (status < 0) {
    backend.close();
    relay.backend = null;
    attemptFailed(relay, connectError(status, relay.endpoint as Endpoint & { type: 'tcp' }).message);
    dialNext(relay);
    return;
  }
  relay.health?.succeeded(relay.endpoint as Endpoint);
  relay.state = RELAYING;
  relay.startedAt = Date.now();
  const clientSide = relay.clientSide;
  const backendSide = new HandleSide(relay, backend);
  relay.backendSide = backendSide;
  clientSide.peer = backendSide;
  backendSide.peer = clientSide;
  relay.owner.handleConnected(relay);
  if (relay.idleTimeoutMs > 0) watchIdle(relay);
  // The backend's keepalive is armed a second later (armKeepAliveLater); TCP_NODELAY at once.
  if (startHandle(relay.client, clientOnRead, relay.keepAliveMs, relay.clientOptionsInherited) !== 0 || startHandle(backend, backendOnRead, 0) !== 0) {
    if (relay.reason === null) relay.reason = 'client-error';
    closeRelay(relay);
    return;
  }
  if (relay.keepAliveMs > 0) armKeepAliveLater(relay);
}

/** Drops the attempt in progress (no breaker accounting). */
function cancelAttempt(relay: HandleRelay): void {
  pendingDials.remove(relay);
  relay.connectReq = null;
  if (relay.backend !== null) relay.backend.close();
  relay.backend = null;
  relay.state = CLOSED;
}

// ---- relay --------------------------------------------------------------------

function clientOnRead(this: TcpHandle): void {
  const nread = lastReadResult();
  const side = (this as SideHandle)[kSide] as HandleSide;
  const relay = side.relay;
  if (nread > 0) {
    relay.bytesIn += nread;
    relay.lastActive = coarseNow;
    forward(side, nread);
    return;
  }
  sideRead(side, nread, 'client-error');
}

function backendOnRead(this: TcpHandle): void {
  const nread = lastReadResult();
  const side = (this as SideHandle)[kSide] as HandleSide;
  const relay = side.relay;
  if (nread > 0) {
    relay.bytesOut += nread;
    relay.lastActive = coarseNow;
    forward(side, nread);
    return;
  }
  sideRead(side, nread, 'backend-error');
}

/** The read that just happened on `from` goes to its peer. */
function forward(from: HandleSide, nread: number): void {
  const to = from.peer;
  let req = to.req;
  if (req === null) req = to.req = newWriteReq(to.handle, to, sideWriteComplete);
  const result = writeToHandle(req, borrowRead(nread));
  if (result === WRITE_DONE) return;
  const relay = from.relay;
  if (result !== WRITE_QUEUED) {
    if (relay.reason === null) relay.reason = to === relay.clientSide ? 'client-error' : 'backend-error';
    closeRelay(relay);
    return;
  }
  // Queued: the write keeps the spare's memory; `from` stops until it lands.
  to.lent = lendSpare();
  to.pending = req;
  to.req = null;
  from.handle.reading = false;
  from.handle.readStop();
}

function sideWriteComplete(this: WriteReq, status: number): void {
  const to = writeReqOwner(this) as HandleSide;
  releaseWriteReq(this);
  to.pending = null;
  if (to.lent !== null) returnLent(to.lent);
  to.lent = null;
  const relay = to.relay;
  if (relay.state !== RELAYING) return;
  if (status < 0) {
    if (relay.reason === null) relay.reason = to === relay.clientSide ? 'client-error' : 'backend-error';
    closeRelay(relay);
    return;
  }
  const from = to.peer;
  if (!from.ended) {
    from.handle.reading = true;
    if (from.handle.readStart() !== 0) closeRelay(relay);
  }
}

/** EOF (pass the FIN on) or an error (close) on a side. */
function sideRead(side: HandleSide, nread: number, errorReason: string): void {
  const relay = side.relay;
  if (nread !== UV_EOF) {
    if (nread === 0) return;
    if (relay.reason === null) relay.reason = errorReason;
    closeRelay(relay);
    return;
  }
  side.ended = true;
  side.handle.reading = false;
  side.handle.readStop();
  // libuv sends the FIN once the writes queued before it are out.
  const req = newShutdownReq(side.peer, onShutdownDone);
  if (side.peer.handle.shutdown(req) !== 0) closeRelay(relay);
}

function onShutdownDone(this: ShutdownReq, status: number): void {
  const side = this.owner as HandleSide;
  this.owner = null;
  const relay = side.relay;
  if (relay.state !== RELAYING) return;
  side.shut = true;
  const other = side.peer;
  if (status < 0 || other.shut) closeRelay(relay);
}

function closeRelay(relay: HandleRelay): void {
  if (relay.state !== RELAYING) return;
  relay.state = CLOSED;
  unwatchIdle(relay);
  if (relay.keepAliveMs > 0) keepAliveDue.delete(relay);
  // Closing cancels queued writes; their lent spares come back in their oncomplete (libuv no longer reads them).
  relay.client.close();
  (relay.backend as TcpHandle).close();
  relay.owner.relayClosed(relay);
}

/** The error net.connect would have given (same message: `connect ECONNREFUSED 127.0.0.1:1`). */
function connectError(err: number, endpoint: Endpoint & { type: 'tcp' }): Error & { code: string } {
  const code = getSystemErrorName(err);
  return Object.assign(new Error(`connect ${code} ${endpoint.host}:${endpoint.port}`), { code, errno: err, syscall: 'connect' });
}

// ---- backend keepalive, armed late ------------------------------------------

/**
 * A backend connection gets TCP keepalive once it has lived a second or
 * two, not at connect: libuv's setKeepAlive is four setsockopt calls and
 * the kernel arms a timer, which a connection-rate load's short
 * connections never need (setsockopt per 10,000 connections: 50,000 →
 * 10,000; the CPU saved is within tcp-rate's noise, bench/RESULTS.md). The
 * first probe still comes tcpKeepAliveMs after the connection fell idle,
 * give or take those seconds. (The client side inherits its options from
 * the listening socket: setAcceptedSocketOptions.)
 */
const KEEPALIVE_AFTER_MS = 1000;
/** Relays whose backend waits for its keepalive, in the order they connected (a Set keeps insertion order). */
const keepAliveDue = new Set<HandleRelay>();
let keepAliveSweep: NodeJS.Timeout | null = null;

function armKeepAliveLater(relay: HandleRelay): void {
  keepAliveDue.add(relay);
  keepAliveSweep ??= setInterval(armDueKeepAlives, KEEPALIVE_AFTER_MS).unref();
}

function armDueKeepAlives(): void {
  const due = Date.now() - KEEPALIVE_AFTER_MS;
  for (const relay of keepAliveDue) {
    if (relay.startedAt > due) break;
    keepAliveDue.delete(relay);
    if (relay.state === RELAYING) (relay.backend as TcpHandle).setKeepAlive(true, Math.floor(relay.keepAliveMs / 1000));
  }
  if (keepAliveDue.size === 0 && keepAliveSweep !== null) {
    clearInterval(keepAliveSweep);
    keepAliveSweep = null;
  }
}

// ---- connect timeouts: one coarse sweep, as connect.ts ----------------------

const DIAL_TICK_MS = 100;

class PendingDials {
  head: HandleRelay | null = null;
  timer: NodeJS.Timeout | null = null;

  add(relay: HandleRelay): void {
    relay.pending = true;
    relay.prevPending = null;
    relay.nextPending = this.head;
    if (this.head !== null) this.head.prevPending = relay;
    this.head = relay;
    if (this.timer === null) this.timer = setInterval(sweepDials, DIAL_TICK_MS).unref();
  }

  remove(relay: HandleRelay): void {
    if (!relay.pending) return;
    relay.pending = false;
    if (relay.prevPending !== null) relay.prevPending.nextPending = relay.nextPending;
    else this.head = relay.nextPending;
    if (relay.nextPending !== null) relay.nextPending.prevPending = relay.prevPending;
    relay.prevPending = relay.nextPending = null;
  }
}

const pendingDials = new PendingDials();

function sweepDials(): void {
  const now = Date.now();
  let relay = pendingDials.head;
  while (relay !== null) {
    const next = relay.nextPending;
    if (now >= relay.deadline) {
      pendingDials.remove(relay);
      relay.connectReq = null;
      (relay.backend as TcpHandle).close();
      relay.backend = null;
      attemptFailed(relay, `connect timeout after ${relay.timeoutMs} ms`);
      dialNext(relay);
    }
    relay = next;
  }
  if (pendingDials.head === null && pendingDials.timer !== null) {
    clearInterval(pendingDials.timer);
    pendingDials.timer = null;
  }
}
