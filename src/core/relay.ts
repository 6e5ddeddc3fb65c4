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
import { adoptSharedReadBuffer, borrowRead, lendSpare, reclaimLent, returnLent, settleBorrowed, takeRead, usesSharedReadBuffer } from './shared-read-buffer.ts';
import { directHandleOf, directIo, stopReading } from './stream-handle.ts';
import type { DirectIo, StreamHandle, WriteReq } from './stream-handle.ts';

const kRelay = Symbol('polyproxy.relay');
/** On a handle the relay reads directly: net.Socket's own onread, for EOF and errors. */
const kStreamOnRead = Symbol('polyproxy.streamOnRead');

type RelaySocket = Socket & { [kRelay]?: Relay };
type OnRead = (this: StreamHandle, arrayBuffer?: ArrayBuffer) => unknown;

/** A write request reused while writes complete at once; a queued one stays with its write until oncomplete. */
type DirectReq = WriteReq & { relay: Relay | null; toBackend: boolean; lent: Buffer | null };

/** Writes into one side's handle, bypassing its Writable (core/stream-handle.ts). */
interface DirectWriter {
  readonly handle: StreamHandle;
  req: DirectReq | null;
  /** The queued write in flight: the source stops reading until it lands. */
  pending: DirectReq | null;
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
  /** Why the relay ended early, if it did: 'idle-timeout', 'client-error', 'backend-error', 'shutdown'. */
  reason: string | null = null;
  /** Whatever the owner needs at close (resource id, endpoint...). */
  context: unknown = null;
  /** Direct writes to the backend (from direct client reads), when both are plain TCP. */
  toBackend: DirectWriter | null = null;
  /** Direct writes to the client (from direct backend reads). */
  toClient: DirectWriter | null = null;
  #closed = 0;
  #done = false;
  // Intrusive list of relays with idle timeouts, for the shared sweep.
  prevIdle: Relay | null = null;
  nextIdle: Relay | null = null;

  constructor(client: Socket, backend: Socket, owner: RelayOwner, idleTimeoutMs: number, backendTap: StreamTap | null, clientFilter: ClientFilter | null = null) {
    this.client = client;
    this.backend = backend;
    this.owner = owner;
    this.idleTimeoutMs = idleTimeoutMs;
    this.backendTap = backendTap;
    this.clientFilter = clientFilter;
    this.startedAt = Date.now();
    this.lastActive = coarseNow;
  }

  /** Attaches handlers and starts both directions. `replay` is written to the backend first. */
  start(replay: Buffer | null): void {
    const client = this.client as RelaySocket;
    const backend = this.backend as RelaySocket;
    client[kRelay] = this;
    backend[kRelay] = this;
    client.setNoDelay?.(true);
    backend.setNoDelay?.(true);
    // Plain TCP sockets read through the shared buffer; TLS sockets use 'data' events.
    const clientShared = adoptSharedReadBuffer(client, clientOnRead);
    if (!clientShared) client.on('data', clientOnData);
    client.on('end', clientOnEnd);
    client.on('error', clientOnError);
    client.on('close', socketOnClose);
    client.on('drain', clientOnDrain);
    const backendShared = usesSharedReadBuffer(backend);
    if (!backendShared) backend.on('data', backendOnData);
    backend.on('end', backendOnEnd);
    backend.on('error', backendOnError);
    backend.on('close', socketOnClose);
    backend.on('drain', backendOnDrain);
    if (this.idleTimeoutMs > 0) idleList.add(this);
    if (directIo !== null) this.#goDirect(clientShared, backendShared);
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
   * Plain TCP sides read and write through their handles from here on
   * (core/stream-handle.ts); TLS sides keep their sockets' methods.
   */
  #goDirect(clientShared: boolean, backendShared: boolean): void {
    const clientHandle = directHandleOf(this.client);
    const backendHandle = directHandleOf(this.backend);
    if (clientHandle !== null) this.toClient = { handle: clientHandle, req: null, pending: null };
    if (backendHandle !== null) this.toBackend = { handle: backendHandle, req: null, pending: null };
    if (clientShared && clientHandle !== null) readDirectly(clientHandle, this, clientHandleOnRead);
    if (backendShared && backendHandle !== null) readDirectly(backendHandle, this, backendHandleOnRead);
  }

  /**
   * For client filters: writes bytes the filter owns (never a borrowed
   * chunk) to the backend, through its handle when it can. false = stop the
   * client: the bytes were queued, and the client resumes once they land
   * (or on the backend's 'drain').
   */
  writeToBackend(chunk: Buffer): boolean {
    return forward(this, true, chunk, false);
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
    if (this.idleTimeoutMs > 0) idleList.remove(this);
    this.owner.relayClosed(this);
  }
}

function clientOnData(this: RelaySocket, chunk: Buffer): void {
  const relay = this[kRelay] as Relay;
  relay.bytesIn += chunk.length;
  relay.lastActive = coarseNow;
  if (!(relay.clientFilter === null ? relay.backend.write(chunk) : relay.clientFilter.push(relay, chunk))) this.pause();
}

function backendOnData(this: RelaySocket, chunk: Buffer): void {
  const relay = this[kRelay] as Relay;
  relay.bytesOut += chunk.length;
  relay.lastActive = coarseNow;
  if (relay.backendTap !== null && relay.backendTap.inspect(chunk)) relay.backendTap = null;
  if (!relay.client.write(chunk)) this.pause();
}

/** onread callback for accepted client sockets; returning false stops reading until the peer drains. */
function clientOnRead(this: RelaySocket, nread: number): boolean {
  const relay = this[kRelay] as Relay;
  relay.bytesIn += nread;
  relay.lastActive = coarseNow;
  // A filter may keep the chunk, so it gets its own copy.
  if (relay.clientFilter !== null) return relay.clientFilter.push(relay, takeRead(nread));
  const ok = relay.backend.write(borrowRead(nread));
  settleBorrowed(relay.backend);
  return ok;
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
  const ok = relay.client.write(chunk);
  settleBorrowed(relay.client);
  return ok;
}

// ---- direct reads and writes (core/stream-handle.ts) -----------------------

function readDirectly(handle: StreamHandle, relay: Relay, onread: OnRead): void {
  handle[kStreamOnRead] = handle.onread;
  handle[kRelay] = relay;
  handle.onread = onread;
}

/** A client handle's onread while relayed: bytes go straight to the backend's handle. */
function clientHandleOnRead(this: StreamHandle, arrayBuffer?: ArrayBuffer): unknown {
  const io = directIo as DirectIo;
  const nread = io.state[io.kReadBytesOrError] as number;
  const relay = this[kRelay] as Relay | undefined;
  // EOF and errors take net.Socket's own path ('end', 'error'), which the relay's handlers follow.
  if (nread <= 0 || relay === undefined) return (this[kStreamOnRead] as OnRead).call(this, arrayBuffer);
  relay.bytesIn += nread;
  relay.lastActive = coarseNow;
  // A filter may keep the chunk, so it gets its own copy.
  const ok = relay.clientFilter === null ? forward(relay, true, borrowRead(nread), true) : relay.clientFilter.push(relay, takeRead(nread));
  if (!ok) stopReading(this);
  return undefined;
}

/** A backend handle's onread while relayed. */
function backendHandleOnRead(this: StreamHandle, arrayBuffer?: ArrayBuffer): unknown {
  const io = directIo as DirectIo;
  const nread = io.state[io.kReadBytesOrError] as number;
  const relay = this[kRelay] as Relay | undefined;
  if (nread <= 0 || relay === undefined) return (this[kStreamOnRead] as OnRead).call(this, arrayBuffer);
  relay.bytesOut += nread;
  relay.lastActive = coarseNow;
  const chunk = borrowRead(nread);
  if (relay.backendTap !== null && relay.backendTap.inspect(chunk)) relay.backendTap = null;
  if (!forward(relay, false, chunk, true)) stopReading(this);
  return undefined;
}

/**
 * Writes a borrowed chunk to the backend (toBackend) or the client. Returns
 * false when the source must stop reading: the write was queued, and its
 * completion resumes the source. Falls back to the socket's write() while
 * anything is queued in its Writable (replayed bytes), after end(), or for
 * TLS peers, so bytes never overtake each other.
 */
function forward(relay: Relay, toBackend: boolean, chunk: Buffer, borrowed: boolean): boolean {
  const peer = toBackend ? relay.backend : relay.client;
  const writer = toBackend ? relay.toBackend : relay.toClient;
  if (writer === null || writer.pending !== null || peer.destroyed || peer.writableEnded || peer.writableLength > 0) {
    const ok = peer.write(chunk);
    if (borrowed) settleBorrowed(peer);
    return ok;
  }
  const io = directIo as DirectIo;
  let req = writer.req;
  if (req === null) req = writer.req = newReq(io, relay, toBackend);
  req.handle = writer.handle;
  const err = writer.handle.writeBuffer(req, chunk);
  if (err !== 0) {
    peer.destroy(writeError(err));
    return false;
  }
  if (io.state[io.kLastWriteWasAsync] === 0) return true;
  // Queued: the write keeps the chunk's memory (a borrowed one is the spare) until it completes.
  req.buffer = chunk;
  req.lent = borrowed ? lendSpare() : null;
  req.oncomplete = onDirectWriteComplete as WriteReq['oncomplete'];
  writer.pending = req;
  writer.req = null;
  return false;
}

function newReq(io: DirectIo, relay: Relay, toBackend: boolean): DirectReq {
  const req = new io.WriteWrap() as DirectReq;
  req.relay = relay;
  req.toBackend = toBackend;
  req.lent = null;
  req.buffer = null;
  req.oncomplete = null;
  return req;
}

function onDirectWriteComplete(this: DirectReq, status: number): void {
  const relay = this.relay as Relay;
  const toBackend = this.toBackend;
  const writer = (toBackend ? relay.toBackend : relay.toClient) as DirectWriter;
  writer.pending = null;
  if (this.lent !== null) returnLent(this.lent);
  this.lent = null;
  this.buffer = null;
  this.relay = null;
  const peer = toBackend ? relay.backend : relay.client;
  if (peer.destroyed) return;
  if (status < 0) {
    peer.destroy(writeError(status));
    return;
  }
  const source = toBackend ? relay.client : relay.backend;
  if (!source.destroyed) source.resume();
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

function clientOnEnd(this: RelaySocket): void {
  const backend = (this[kRelay] as Relay).backend;
  if (!backend.destroyed) backend.end();
}

function backendOnEnd(this: RelaySocket): void {
  const client = (this[kRelay] as Relay).client;
  if (!client.destroyed) client.end();
}

function clientOnError(this: RelaySocket): void {
  const relay = this[kRelay] as Relay;
  if (relay.reason === null) relay.reason = 'client-error';
  relay.backend.destroy();
}

function backendOnError(this: RelaySocket): void {
  const relay = this[kRelay] as Relay;
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

// ---- idle timeouts: one coarse clock, one sweep ---------------------------

/** Seconds-resolution clock read on the hot path instead of Date.now(). */
let coarseNow = Date.now();

class IdleList {
  head: Relay | null = null;
  count = 0;

  add(relay: Relay): void {
    relay.nextIdle = this.head;
    relay.prevIdle = null;
    if (this.head !== null) this.head.prevIdle = relay;
    this.head = relay;
    this.count++;
  }

  remove(relay: Relay): void {
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
    // + TICK_MS: lastActive was stamped from a clock up to one tick old, so never close early.
    if (coarseNow - relay.lastActive >= relay.idleTimeoutMs + TICK_MS) relay.destroy('idle-timeout');
    relay = next;
  }
}

// One unref'd timer keeps the coarse clock moving and sweeps idle relays.
setInterval(tick, TICK_MS).unref();
