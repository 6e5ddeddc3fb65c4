/**
 * The relay: bidirectional forwarding between a client and a backend socket.
 *
 * Hot-path rules (STYLE.md): handlers are module-level named functions that
 * find their Relay through a symbol field on the socket; per chunk there are
 * no closures, timers, string building or Buffer.concat. Backpressure both
 * ways: a side whose peer's write() returns false is paused until the peer
 * drains. Half-close: an 'end' on one side becomes end() on the other, and
 * the relay finishes when both directions are done or either socket closes.
 * Idle timeouts use one shared coarse clock and sweep, not a timer per socket.
 */
import type { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { borrowRead, lendSpare, reclaimLent, returnLent, settleBorrowed, takeRead } from './io/shared-read-buffer.ts';
import { adoptSharedReadBuffer, setReadCallback, usesSharedReadBuffer } from './io/socket-onread.ts';
import { directHandleOf, handleOwner, lastReadResult, newWriteReq, passReadToSocket, releaseWriteReq, stopReading, takeOverReads, WRITE_DONE, WRITE_QUEUED, writeReqOwner, writeToHandle } from './io/stream-handle.ts';
import type { HandleOnRead, StreamHandle, WriteReq } from './io/stream-handle.ts';
import { ioSupport } from './io/support.ts';
import type { Throttle } from './limits/bandwidth.ts';

const kRelay = Symbol('polyproxy.relay');

type RelaySocket = Socket & { [kRelay]?: Relay };

// How a side is read (RelaySide.readMode), chosen in Relay.start().
/** 'data' events: TLS sockets, or a socket that cannot use the shared buffer. */
export const READ_EVENTS = 0;
/** net.Socket's onread callback, through the shared read buffer (io/shared-read-buffer.ts). */
export const READ_SHARED = 1;
/** The libuv handle's own onread, past net.Socket (io/stream-handle.ts). */
export const READ_HANDLE = 2;

// How bytes reach a side (RelaySide.writeMode), chosen in Relay.start().
/** socket.write(): TLS sockets, direct I/O off, sockets with a stream timeout. */
export const WRITE_SOCKET = 0;
/**
 * The handle's writeBuffer(), past the Writable — except for a chunk that
 * other bytes may be ahead of (a direct write still queued, bytes in the
 * Writable from a replay or a filter's answer, after end()): that one takes
 * socket.write(), which keeps the order.
 */
export const WRITE_DIRECT = 1;

/**
 * One socket of a relay and how the relay reads and writes it, chosen once
 * when the relay starts; per chunk the handlers only follow the choice.
 */
export class RelaySide {
  readonly relay: Relay;
  readonly socket: Socket;
  /** The other socket: its reads are written here, and it stops reading while such a write is queued. */
  readonly source: Socket;
  readMode = READ_EVENTS;
  writeMode = WRITE_SOCKET;
  /** The socket's handle with WRITE_DIRECT. */
  handle: StreamHandle | null = null;
  /** The request for direct writes, reused while they complete at once; a queued one stays with its write. */
  req: WriteReq | null = null;
  /** The queued direct write in flight: the source stops reading until it lands. */
  pending: WriteReq | null = null;
  /** The spare that write points into (io/shared-read-buffer.ts lendSpare), back to the free list when it lands. */
  lent: Buffer | null = null;

  constructor(relay: Relay, socket: Socket, source: Socket) {
    this.relay = relay;
    this.socket = socket;
    this.source = source;
  }
}

/** Watches backend bytes at the start of a session; returns true when it has seen enough. The chunk is only valid during the call: copy what you keep. */
export interface StreamTap {
  inspect(chunk: Buffer): boolean;
}

/**
 * Sees every client chunk before the backend does, for protocols that must
 * refuse some commands mid-session (MySQL `USE` of another tenant's
 * database). It owns forwarding while present: it writes what may pass with
 * `relay.writeToBackend()` itself, and may hold bytes or answer the client
 * instead.
 */
export interface ClientFilter {
  /**
   * Takes one client chunk (already counted in bytesIn; the filter may keep
   * it). Returns false when the client must stop reading: the backend did
   * not take the bytes (its 'drain' resumes the client) or the filter holds
   * bytes while it decides (it resumes the client itself).
   */
  push(relay: Relay, chunk: Buffer): boolean;
}

export interface RelayOwner {
  /** Called exactly once when both sockets are closed. */
  relayClosed(relay: Relay): void;
  /**
   * With `firstResponseMs` set: how the backend's first answer went, once
   * per relay at most. `problem` null: a first byte came (seen by the sweep
   * within a tick, or at close). Otherwise it closed or reset before any
   * byte while the client was still there (the relay then ends as usual).
   */
  backendAnswered?(relay: Relay, problem: string | null): void;
  /**
   * With `firstResponseMs` set: no backend byte within it. The owner ends
   * the session (it may write the protocol's error to the client first,
   * which has received nothing yet).
   */
  backendSilent?(relay: Relay): void;
}

export class Relay {
  readonly client: Socket;
  readonly backend: Socket;
  readonly owner: RelayOwner;
  /** Bytes client → backend, including replayed opening bytes. */
  bytesIn = 0;
  /** Bytes backend → client. */
  bytesOut = 0;
  readonly startedAt: number;
  lastActive: number;
  idleTimeoutMs: number;
  backendTap: StreamTap | null;
  readonly clientFilter: ClientFilter | null;
  /**
   * The backend must send its first byte within this long after start()
   * (0 = no such deadline). Checked by the idle sweep, so the hot path pays
   * nothing: the sweep reads bytesOut.
   */
  firstResponseMs = 0;
  /** When the first byte is due (Date.now() scale); 0 once it came or was reported. */
  firstDeadline = 0;
  /** Why the relay ended early, if it did: 'idle-timeout', 'first-response-timeout', 'client-error', 'backend-error', 'shutdown'. */
  reason: string | null = null;
  /** Whatever the owner needs at close (resource id, endpoint...). */
  context: unknown = null;
  /** The tenant's bandwidth buckets (limits.*.bandwidth): set before start() to take the throttled path. */
  throttle: Throttle | null = null;
  /** The throttled path's pause state, from start() on. */
  throttled: ThrottledState | null = null;
  readonly clientSide: RelaySide;
  readonly backendSide: RelaySide;
  #closed = 0;
  #done = false;
  // Intrusive list of relays with idle timeouts or a first-response deadline, for the shared sweep.
  swept = false;
  prevIdle: IdleSession | null = null;
  nextIdle: IdleSession | null = null;

  constructor(client: Socket, backend: Socket, owner: RelayOwner, idleTimeoutMs: number, backendTap: StreamTap | null, clientFilter: ClientFilter | null = null) {
    this.client = client;
    this.backend = backend;
    this.owner = owner;
    this.idleTimeoutMs = idleTimeoutMs;
    this.backendTap = backendTap;
    this.clientFilter = clientFilter;
    this.startedAt = Date.now();
    this.lastActive = coarseNow;
    this.clientSide = new RelaySide(this, client, backend);
    this.backendSide = new RelaySide(this, backend, client);
  }

  /** Attaches handlers and starts both directions. `replay` is written to the backend first. */
  start(replay: Buffer | null): void {
    const client = this.client as RelaySocket;
    const backend = this.backend as RelaySocket;
    client[kRelay] = this;
    backend[kRelay] = this;
    client.setNoDelay?.(true);
    backend.setNoDelay?.(true);
    if (this.throttle !== null) {
      startThrottled(this, replay);
      return;
    }
    // Plain TCP sockets read through the shared buffer; TLS sockets use 'data' events.
    const clientSide = this.clientSide;
    const backendSide = this.backendSide;
    clientSide.readMode = adoptSharedReadBuffer(client, clientOnRead) ? READ_SHARED : READ_EVENTS;
    if (clientSide.readMode === READ_EVENTS) client.on('data', clientOnData);
    client.on('end', clientOnEnd);
    client.on('error', clientOnError);
    client.on('close', socketOnClose);
    client.on('drain', clientOnDrain);
    backendSide.readMode = usesSharedReadBuffer(backend) ? READ_SHARED : READ_EVENTS;
    if (backendSide.readMode === READ_EVENTS) backend.on('data', backendOnData);
    backend.on('end', backendOnEnd);
    backend.on('error', backendOnError);
    backend.on('close', socketOnClose);
    backend.on('drain', backendOnDrain);
    if (this.firstResponseMs > 0) this.firstDeadline = this.startedAt + this.firstResponseMs;
    if (this.idleTimeoutMs > 0 || this.firstDeadline !== 0) idleList.add(this);
    if (ioSupport.directIo) {
      goDirect(clientSide, clientHandleOnRead);
      goDirect(backendSide, backendHandleOnRead);
    }
    if (replay !== null && replay.length > 0) {
      this.bytesIn += replay.length;
      if (!(this.clientFilter === null ? backend.write(replay) : this.clientFilter.push(this, replay))) client.pause();
      else client.resume();
    } else {
      client.resume();
    }
    backend.resume();
    // A side whose 'end' came before the relay (a client's FIN with its opening, read by
    // ClientConnection; a backend's during a protocol's replay) emits no more 'end': pass it on now.
    if (client.readableEnded) clientOnEnd.call(client);
    if (backend.readableEnded) backendOnEnd.call(backend);
    // A socket that closed before the handlers were attached emits no more 'close'.
    if (client.closed) socketOnClose.call(client);
    if (backend.closed) socketOnClose.call(backend);
  }

  /**
   * For client filters: writes bytes the filter owns (never a borrowed
   * chunk) to the backend, through its handle when it can. false = stop the
   * client: the bytes were queued, and the client resumes once they land
   * (or on the backend's 'drain').
   */
  writeToBackend(chunk: Buffer): boolean {
    return forward(this.backendSide, chunk, false);
  }

  /** Ends the session now (idle timeout, shutdown deadline). */
  destroy(reason: string): void {
    if (this.reason === null) this.reason = reason;
    this.client.destroy();
    this.backend.destroy();
  }

  get done(): boolean {
    return this.#done;
  }

  /** @internal called by socketOnClose */
  sideClosed(): void {
    if (++this.#closed < 2 || this.#done) return;
    this.#done = true;
    if (this.throttled !== null) this.throttled.stop();
    if (this.swept) idleList.remove(this);
    // A first byte the sweep has not seen yet still counts.
    if (this.firstDeadline !== 0 && this.bytesOut > 0) answered(this, null);
    this.owner.relayClosed(this);
  }
}

function clientOnData(this: RelaySocket, chunk: Buffer): void {
  const relay = this[kRelay] as Relay;
  relay.bytesIn += chunk.length;
  relay.lastActive = coarseNow;
  if (!(relay.clientFilter === null ? forward(relay.backendSide, chunk, false) : relay.clientFilter.push(relay, chunk))) this.pause();
}

function backendOnData(this: RelaySocket, chunk: Buffer): void {
  const relay = this[kRelay] as Relay;
  relay.bytesOut += chunk.length;
  relay.lastActive = coarseNow;
  if (relay.backendTap !== null && relay.backendTap.inspect(chunk)) relay.backendTap = null;
  if (!forward(relay.clientSide, chunk, false)) this.pause();
}

/** onread callback for accepted client sockets; returning false stops reading until the peer drains. */
function clientOnRead(this: RelaySocket, nread: number): boolean {
  const relay = this[kRelay] as Relay;
  relay.bytesIn += nread;
  relay.lastActive = coarseNow;
  // A filter may keep the chunk, so it gets its own copy.
  if (relay.clientFilter !== null) return relay.clientFilter.push(relay, takeRead(nread));
  return forward(relay.backendSide, borrowRead(nread), true);
}

/**
 * onread callback for backend sockets (created with it by the connect loop).
 * Before a relay owns the socket, bytes go out as ordinary 'data' events
 * so a protocol's replay phase can read them.
 */
export function backendOnRead(this: RelaySocket, nread: number): boolean {
  const relay = this[kRelay];
  if (relay === undefined) {
    this.emit('data', takeRead(nread));
    return true;
  }
  relay.bytesOut += nread;
  relay.lastActive = coarseNow;
  const chunk = borrowRead(nread);
  if (relay.backendTap !== null && relay.backendTap.inspect(chunk)) relay.backendTap = null;
  return forward(relay.clientSide, chunk, true);
}

// ---- direct reads and writes (io/stream-handle.ts) -------------------------

/**
 * A plain-TCP side reads and writes through its handle from here on; a
 * side without one (TLS, direct I/O off, a stream timeout) keeps its
 * socket's methods. Direct reads need the shared buffer, where they land.
 */
function goDirect(side: RelaySide, onread: HandleOnRead): void {
  const handle = directHandleOf(side.socket);
  if (handle === null) return;
  side.handle = handle;
  side.writeMode = WRITE_DIRECT;
  if (side.readMode !== READ_SHARED) return;
  takeOverReads(handle, side.relay, onread);
  side.readMode = READ_HANDLE;
}

/** A client handle's onread while relayed: bytes go straight to the backend's handle. */
function clientHandleOnRead(this: StreamHandle, arrayBuffer?: ArrayBuffer): unknown {
  const nread = lastReadResult();
  const relay = handleOwner(this) as Relay | undefined;
  // EOF and errors take net.Socket's own path ('end', 'error'), which the relay's handlers follow.
  if (nread <= 0 || relay === undefined) return passReadToSocket(this, arrayBuffer);
  relay.bytesIn += nread;
  relay.lastActive = coarseNow;
  // A filter may keep the chunk, so it gets its own copy.
  const ok = relay.clientFilter === null ? forward(relay.backendSide, borrowRead(nread), true) : relay.clientFilter.push(relay, takeRead(nread));
  if (!ok) stopReading(this);
  return undefined;
}

/** A backend handle's onread while relayed. */
function backendHandleOnRead(this: StreamHandle, arrayBuffer?: ArrayBuffer): unknown {
  const nread = lastReadResult();
  const relay = handleOwner(this) as Relay | undefined;
  if (nread <= 0 || relay === undefined) return passReadToSocket(this, arrayBuffer);
  relay.bytesOut += nread;
  relay.lastActive = coarseNow;
  const chunk = borrowRead(nread);
  if (relay.backendTap !== null && relay.backendTap.inspect(chunk)) relay.backendTap = null;
  if (!forward(relay.clientSide, chunk, true)) stopReading(this);
  return undefined;
}

/**
 * Writes a chunk to `to` the way its writeMode says. `borrowed`: the chunk
 * is a view of the spare (io/shared-read-buffer.ts), valid until the next
 * read. Returns false when the source must stop reading: the write was
 * queued, and its completion (or the socket's 'drain') resumes the source.
 */
function forward(to: RelaySide, chunk: Buffer, borrowed: boolean): boolean {
  const peer = to.socket;
  if (to.writeMode === WRITE_SOCKET || to.pending !== null || peer.writableLength > 0 || peer.writableEnded || peer.destroyed) {
    const ok = peer.write(chunk);
    if (borrowed) settleBorrowed(peer);
    return ok;
  }
  let req = to.req;
  if (req === null) req = to.req = newWriteReq(to.handle as StreamHandle, to, sideWriteComplete);
  const result = writeToHandle(req, chunk);
  if (result === WRITE_DONE) return true;
  if (result !== WRITE_QUEUED) {
    peer.destroy(writeError(result));
    return false;
  }
  // Queued: the write keeps the chunk's memory (a borrowed one is the spare) until it completes.
  to.lent = borrowed ? lendSpare() : null;
  to.pending = req;
  to.req = null;
  return false;
}

/** A queued direct write finished: free its spare, resume the source. */
function sideWriteComplete(this: WriteReq, status: number): void {
  const side = writeReqOwner(this) as RelaySide;
  releaseWriteReq(this);
  side.pending = null;
  if (side.lent !== null) returnLent(side.lent);
  side.lent = null;
  const peer = side.socket;
  if (peer.destroyed) return;
  if (status < 0) {
    peer.destroy(writeError(status));
    return;
  }
  if (!side.source.destroyed) side.source.resume();
}

function writeError(status: number): NodeJS.ErrnoException {
  const code = getSystemErrorName(status);
  const err: NodeJS.ErrnoException = new Error(`write ${code}`);
  err.errno = status;
  err.code = code;
  err.syscall = 'write';
  return err;
}

function clientOnDrain(this: RelaySocket): void {
  reclaimLent(this);
  (this[kRelay] as Relay).backend.resume();
}

function backendOnDrain(this: RelaySocket): void {
  reclaimLent(this);
  (this[kRelay] as Relay).client.resume();
}

/** Reports the backend's first answer (or its failure) once. */
function answered(relay: Relay, problem: string | null): void {
  relay.firstDeadline = 0;
  relay.owner.backendAnswered?.(relay, problem);
}

/** The backend closed or reset: before its first byte, with the client still there, that is the backend failing. */
function backendGaveUp(relay: Relay, problem: string): void {
  if (relay.firstDeadline !== 0 && relay.bytesOut === 0 && !relay.client.readableEnded && !relay.client.destroyed) answered(relay, problem);
}

function clientOnEnd(this: RelaySocket): void {
  const backend = (this[kRelay] as Relay).backend;
  if (!backend.destroyed) backend.end();
}

function backendOnEnd(this: RelaySocket): void {
  const relay = this[kRelay] as Relay;
  backendGaveUp(relay, 'closed before answering');
  const client = relay.client;
  if (!client.destroyed) client.end();
}

function clientOnError(this: RelaySocket): void {
  const relay = this[kRelay] as Relay;
  if (relay.reason === null) relay.reason = 'client-error';
  relay.backend.destroy();
}

function backendOnError(this: RelaySocket, err: Error): void {
  const relay = this[kRelay] as Relay;
  backendGaveUp(relay, `${err.message} before answering`);
  if (relay.reason === null) relay.reason = 'backend-error';
  relay.client.destroy();
}

function socketOnClose(this: RelaySocket): void {
  const relay = this[kRelay];
  if (relay === undefined) return;
  this[kRelay] = undefined;
  // Keep a no-op error handler: a late error on a closed socket must not crash the process.
  this.removeListener('error', relay.client === this ? clientOnError : backendOnError);
  this.on('error', noop);
  // One side is gone, so the other can carry nothing more: let it flush what
  // was already written to it, then close (a half-open peer must not linger).
  const other = relay.client === this ? relay.backend : relay.client;
  // (destroySoon ends first, and libuv's shutdown waits for a direct write still queued.)
  if (!other.destroyed) other.destroySoon();
  relay.sideClosed();
}

function noop(): void {}

// ---- throttled relays (a tenant with a bandwidth limit) --------------------
//
// Chosen once in start() for a relay with a Throttle; the handlers above
// never look at it, so an unlimited session pays nothing per chunk. Both
// sides read through 'data' events and write with socket.write(): after
// each chunk the tenant's bucket is spent (into debt if need be), and while
// it is in debt the side that read is paused — the kernel's buffers fill
// and TCP slows the sender (backpressure), nothing is buffered or dropped.
// One timer per pause resumes it when the debt is paid; a side is resumed
// only when neither its bucket nor its peer's 'drain' still holds it.

/** Why a throttled side is paused: its bucket's debt, its peer's full buffer, or both. */
export class ThrottledState {
  readonly relay: Relay;
  /** Client reads wait for the in bucket / for the backend to drain. */
  inWaiting = false;
  inNeedDrain = false;
  outWaiting = false;
  outNeedDrain = false;
  inTimer: NodeJS.Timeout | null = null;
  outTimer: NodeJS.Timeout | null = null;

  constructor(relay: Relay) {
    this.relay = relay;
  }

  stop(): void {
    if (this.inTimer !== null) clearTimeout(this.inTimer);
    if (this.outTimer !== null) clearTimeout(this.outTimer);
    this.inTimer = this.outTimer = null;
  }
}

function startThrottled(relay: Relay, replay: Buffer | null): void {
  const client = relay.client as RelaySocket;
  const backend = relay.backend as RelaySocket;
  relay.throttled = new ThrottledState(relay);
  // A socket reading through the shared buffer hands each read over as a 'data' event.
  setReadCallback(client, readAsData);
  setReadCallback(backend, readAsData);
  client.on('data', clientOnDataThrottled);
  client.on('end', clientOnEnd);
  client.on('error', clientOnError);
  client.on('close', socketOnClose);
  client.on('drain', clientOnDrainThrottled);
  backend.on('data', backendOnDataThrottled);
  backend.on('end', backendOnEnd);
  backend.on('error', backendOnError);
  backend.on('close', socketOnClose);
  backend.on('drain', backendOnDrainThrottled);
  if (relay.firstResponseMs > 0) relay.firstDeadline = relay.startedAt + relay.firstResponseMs;
  if (relay.idleTimeoutMs > 0 || relay.firstDeadline !== 0) idleList.add(relay);
  if (replay !== null && replay.length > 0) clientOnDataThrottled.call(client, replay);
  else client.resume();
  backend.resume();
  if (client.readableEnded) clientOnEnd.call(client);
  if (backend.readableEnded) backendOnEnd.call(backend);
  if (client.closed) socketOnClose.call(client);
  if (backend.closed) socketOnClose.call(backend);
}

function readAsData(this: Socket, nread: number): boolean {
  this.emit('data', takeRead(nread));
  return true;
}

function clientOnDataThrottled(this: RelaySocket, chunk: Buffer): void {
  const relay = this[kRelay] as Relay;
  const state = relay.throttled as ThrottledState;
  relay.bytesIn += chunk.length;
  relay.lastActive = coarseNow;
  if (!(relay.clientFilter === null ? relay.backend.write(chunk) : relay.clientFilter.push(relay, chunk))) {
    state.inNeedDrain = true;
    this.pause();
  }
  const bucket = (relay.throttle as Throttle).in;
  if (bucket === null) return;
  const wait = bucket.spend(chunk.length);
  if (wait === 0 || state.inWaiting) return;
  state.inWaiting = true;
  this.pause();
  state.inTimer = setTimeout(inRefilled, wait, state);
}

function backendOnDataThrottled(this: RelaySocket, chunk: Buffer): void {
  const relay = this[kRelay] as Relay;
  const state = relay.throttled as ThrottledState;
  relay.bytesOut += chunk.length;
  relay.lastActive = coarseNow;
  if (relay.backendTap !== null && relay.backendTap.inspect(chunk)) relay.backendTap = null;
  if (!relay.client.write(chunk)) {
    state.outNeedDrain = true;
    this.pause();
  }
  const bucket = (relay.throttle as Throttle).out;
  if (bucket === null) return;
  const wait = bucket.spend(chunk.length);
  if (wait === 0 || state.outWaiting) return;
  state.outWaiting = true;
  this.pause();
  state.outTimer = setTimeout(outRefilled, wait, state);
}

function inRefilled(state: ThrottledState): void {
  state.inTimer = null;
  // Another session of the tenant may have spent meanwhile: wait for what is still owed.
  const wait = (state.relay.throttle as Throttle).in?.spend(0) ?? 0;
  if (wait > 0) {
    state.inTimer = setTimeout(inRefilled, wait, state);
    return;
  }
  state.inWaiting = false;
  const client = state.relay.client;
  if (!state.inNeedDrain && !client.destroyed) client.resume();
}

function outRefilled(state: ThrottledState): void {
  state.outTimer = null;
  const wait = (state.relay.throttle as Throttle).out?.spend(0) ?? 0;
  if (wait > 0) {
    state.outTimer = setTimeout(outRefilled, wait, state);
    return;
  }
  state.outWaiting = false;
  const backend = state.relay.backend;
  if (!state.outNeedDrain && !backend.destroyed) backend.resume();
}

/** The client took what the backend sent: the backend may read again unless its bucket holds it. */
function clientOnDrainThrottled(this: RelaySocket): void {
  const state = (this[kRelay] as Relay).throttled as ThrottledState;
  state.outNeedDrain = false;
  if (!state.outWaiting) state.relay.backend.resume();
}

function backendOnDrainThrottled(this: RelaySocket): void {
  const state = (this[kRelay] as Relay).throttled as ThrottledState;
  state.inNeedDrain = false;
  if (!state.inWaiting) state.relay.client.resume();
}

// ---- idle timeouts: one coarse clock, one sweep ---------------------------

/** Seconds-resolution clock read on the hot path instead of Date.now() (also by core/handle-relay.ts). */
export let coarseNow = Date.now();

/** What the sweep needs of a session: a Relay, or a HandleRelay (core/handle-relay.ts, which never sets firstDeadline). */
export interface IdleSession {
  swept: boolean;
  prevIdle: IdleSession | null;
  nextIdle: IdleSession | null;
  /** Non-zero only for a Relay waiting for its backend's first byte. */
  firstDeadline: number;
  idleTimeoutMs: number;
  lastActive: number;
  destroy(reason: string): void;
}

/** Puts a session with an idle timeout under the shared sweep. */
export function watchIdle(session: IdleSession): void {
  idleList.add(session);
}

/** Takes it off (it closed). */
export function unwatchIdle(session: IdleSession): void {
  if (session.swept) idleList.remove(session);
}

class IdleList {
  head: IdleSession | null = null;
  count = 0;

  add(relay: IdleSession): void {
    relay.swept = true;
    relay.nextIdle = this.head;
    relay.prevIdle = null;
    if (this.head !== null) this.head.prevIdle = relay;
    this.head = relay;
    this.count++;
  }

  remove(relay: IdleSession): void {
    relay.swept = false;
    if (relay.prevIdle !== null) relay.prevIdle.nextIdle = relay.nextIdle;
    else if (this.head === relay) this.head = relay.nextIdle;
    if (relay.nextIdle !== null) relay.nextIdle.prevIdle = relay.prevIdle;
    relay.prevIdle = relay.nextIdle = null;
    this.count--;
  }
}

const idleList = new IdleList();

/** The clock's resolution: lastActive may lag real activity by up to this much. */
const TICK_MS = 1000;

function tick(): void {
  coarseNow = Date.now();
  let relay = idleList.head;
  while (relay !== null) {
    const next = relay.nextIdle;
    if (relay.firstDeadline !== 0) firstResponseCheck(relay as Relay);
    // + TICK_MS: lastActive was stamped from a clock up to one tick old, so never close early.
    else if (relay.idleTimeoutMs > 0 && coarseNow - relay.lastActive >= relay.idleTimeoutMs + TICK_MS) relay.destroy('idle-timeout');
    relay = next;
  }
}

/** The sweep's look at a relay still waiting for its backend's first byte. */
function firstResponseCheck(relay: Relay): void {
  if (relay.bytesOut > 0) {
    answered(relay, null);
    if (relay.idleTimeoutMs === 0) idleList.remove(relay);
  } else if (coarseNow >= relay.firstDeadline && !relay.done) {
    relay.firstDeadline = 0;
    if (relay.reason === null) relay.reason = 'first-response-timeout';
    if (relay.owner.backendSilent !== undefined) relay.owner.backendSilent(relay);
    else relay.destroy('first-response-timeout');
  }
}

// One unref'd timer keeps the coarse clock moving and sweeps idle relays.
setInterval(tick, TICK_MS).unref();
