/**
 * The relay's direct line to libuv: once a session is relayed, reads and
 * writes of plain TCP sockets go to the socket's stream handle itself
 * instead of through net.Socket's Readable/Writable machinery. A write is
 * `handle.writeBuffer()`: libuv tries it at once and, when the kernel takes
 * every byte (nearly always for request/response traffic), that is the
 * whole cost — no WriteWrap per write, no Writable state, no nextTick for
 * the write callback. A read is the handle's own `onread`, without
 * onStreamRead's per-read bookkeeping.
 *
 * These are Node's internal bindings (`process.binding('stream_wrap')`,
 * the same objects lib/net.js uses), not public API: support.ts checks
 * their shape and decides whether this process uses them
 * (`ioSupport.directIo`); callers only reach here when it is on. Outside
 * src/core/io/ a handle is an opaque value passed back to these functions.
 *
 * Measured with callgrind (user-space instructions of the proxy per
 * pgbench -S transaction, which is one read and one write each way):
 * 27,200 through the sockets, 18,000–18,800 direct (bench/RESULTS.md).
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { getSystemErrorName } from 'node:util';
import { streamWrap } from './support.ts';

/** A libuv stream handle as lib/net.js sees it (TCPWrap, PipeWrap). */
export interface StreamHandle {
  reading: boolean;
  onread: HandleOnRead;
  readStart(): number;
  readStop(): number;
  writeBuffer(req: WriteReq, chunk: Buffer): number;
  [key: symbol]: unknown;
}

/** A handle's read callback: the byte count (or error) is in lastReadResult(), not an argument. */
export type HandleOnRead = (this: StreamHandle, arrayBuffer?: ArrayBuffer) => unknown;

/** A write request object (WriteWrap); its oncomplete runs when a queued write finishes. */
export interface WriteReq {
  handle: StreamHandle | null;
  buffer: Buffer | null;
  oncomplete: WriteComplete | null;
  /** Whoever made the request (newWriteReq), for its oncomplete. */
  owner: unknown;
}

/** Runs when a queued write finishes; status < 0 is an errno. */
export type WriteComplete = (this: WriteReq, status: number) => void;

// Bound once: the hot path reads the shared state array without a null check.
const state: Int32Array = streamWrap === null ? new Int32Array(2) : streamWrap.state;
const K_READ = streamWrap === null ? 0 : streamWrap.kReadBytesOrError;
const K_ASYNC = streamWrap === null ? 1 : streamWrap.kLastWriteWasAsync;

/**
 * The handle of a plain TCP (or pipe) socket the relay may drive directly,
 * or null: direct I/O off, TLS sockets, sockets without a handle or whose
 * handle lacks the methods, sockets with a stream timeout the direct path
 * would not refresh.
 */
export function directHandleOf(socket: Socket): StreamHandle | null {
  if (streamWrap === null || socket instanceof TLSSocket || socket.destroyed) return null;
  if (socket.timeout !== undefined && socket.timeout > 0) return null;
  const handle = (socket as unknown as { _handle?: Partial<StreamHandle> | null })._handle;
  if (handle === null || handle === undefined) return null;
  if (typeof handle.writeBuffer !== 'function' || typeof handle.readStart !== 'function' || typeof handle.readStop !== 'function' || typeof handle.onread !== 'function') return null;
  return handle as StreamHandle;
}

/** Stops reading the way net.Socket.pause() does for onread sockets, so socket.resume() restarts it. */
export function stopReading(handle: StreamHandle): void {
  handle.reading = false;
  handle.readStop();
}

/** Restarts reading stopped by stopReading (as net.js tryReadStart). */
export function startReading(handle: StreamHandle): void {
  if (handle.reading) return;
  handle.reading = true;
  handle.readStart();
}

// ---- reads ------------------------------------------------------------------

/** net.Socket's own onread, kept for EOF and errors. */
const kSocketOnRead = Symbol('polyproxy.socketOnRead');
const kOwner = Symbol('polyproxy.handleOwner');

/**
 * From now on `onread` gets the handle's reads, with `owner` available as
 * handleOwner(handle). The socket must read through the shared buffer
 * (shared-read-buffer.ts), which is where the bytes land.
 */
export function takeOverReads(handle: StreamHandle, owner: unknown, onread: HandleOnRead): void {
  handle[kSocketOnRead] = handle.onread;
  handle[kOwner] = owner;
  handle.onread = onread;
}

/** The owner given to takeOverReads. */
export function handleOwner(handle: StreamHandle): unknown {
  return handle[kOwner];
}

/** In an onread callback: the bytes read into the shared buffer, or ≤ 0 for EOF or an errno. */
export function lastReadResult(): number {
  return state[K_READ] as number;
}

/** Hands a read to net.Socket (EOF and errors become its 'end' and 'error'). */
export function passReadToSocket(handle: StreamHandle, arrayBuffer: ArrayBuffer | undefined): unknown {
  return (handle[kSocketOnRead] as HandleOnRead).call(handle, arrayBuffer);
}

// ---- writes -----------------------------------------------------------------

/** writeToHandle: the kernel took every byte. */
export const WRITE_DONE = 0;
/** writeToHandle: libuv queued the write; the request's oncomplete runs when it finishes. */
export const WRITE_QUEUED = 1;

/** A request for writes to `handle`, reusable until one is queued. */
export function newWriteReq(handle: StreamHandle, owner: unknown, oncomplete: WriteComplete): WriteReq {
  const req = new (streamWrap as NonNullable<typeof streamWrap>).WriteWrap() as WriteReq;
  req.handle = handle;
  req.buffer = null;
  req.oncomplete = oncomplete;
  req.owner = owner;
  return req;
}

/** The owner given to newWriteReq, in its oncomplete. */
export function writeReqOwner(req: WriteReq): unknown {
  return req.owner;
}

/**
 * Writes `chunk` now: WRITE_DONE, WRITE_QUEUED (the request then keeps the
 * chunk until its oncomplete; do not reuse it before), or a negative errno.
 */
export function writeToHandle(req: WriteReq, chunk: Buffer): number {
  const err = (req.handle as StreamHandle).writeBuffer(req, chunk);
  if (err !== 0) return err;
  if (state[K_ASYNC] === 0) return WRITE_DONE;
  // As lib/internal/stream_base_commons.js: the queued write reads this memory until it completes.
  req.buffer = chunk;
  return WRITE_QUEUED;
}

/** In oncomplete: drops the request's references (it is not reused). */
export function releaseWriteReq(req: WriteReq): void {
  req.buffer = null;
  req.owner = null;
  req.handle = null;
}

// ---- one-off writes of owned buffers ------------------------------------------

const kSocketReq = Symbol('polyproxy.socketWriteReq');
const kSocketPending = Symbol('polyproxy.socketWritePending');
type DirectSocket = Socket & { [kSocketReq]?: WriteReq | null; [kSocketPending]?: WriteReq | null };

/**
 * Writes `chunk` (a buffer the caller never touches again: a response
 * head, a whole small response) to `socket` through its handle when
 * nothing is ahead of it — no write queued in the Writable, none of ours
 * still in libuv, not ended — and otherwise with socket.write(), which
 * keeps the order (libuv runs a handle's writes in turn). What this saves
 * per call: the Writable's bookkeeping, a WriteWrap and the nextTick that
 * runs the write's callback. A write libuv had to queue keeps its buffer
 * (req.buffer) until it completes; meanwhile this socket's writes take
 * socket.write(), so at most one such write is outside the Writable's
 * accounting. Returns what socket.write() would: false when the caller
 * should wait for 'drain' (never for a direct write).
 */
export function writeOwned(socket: Socket, chunk: Buffer): boolean {
  const s = socket as DirectSocket;
  if (streamWrap === null || s[kSocketPending] != null || socket.writableLength > 0 || socket.writableEnded || socket.destroyed || socket.connecting) return socket.write(chunk);
  let req = s[kSocketReq];
  if (req === undefined || req === null) {
    const handle = directHandleOf(socket);
    if (handle === null) return socket.write(chunk);
    req = newWriteReq(handle, socket, ownedWriteComplete);
    s[kSocketReq] = req;
  }
  const result = writeToHandle(req, chunk);
  if (result === WRITE_DONE) return true;
  if (result === WRITE_QUEUED) {
    s[kSocketPending] = req;
    s[kSocketReq] = null;
    return true;
  }
  socket.destroy(writeErrorOf(result));
  return false;
}

function ownedWriteComplete(this: WriteReq, status: number): void {
  const socket = writeReqOwner(this) as DirectSocket;
  releaseWriteReq(this);
  if (socket[kSocketPending] === this) socket[kSocketPending] = null;
  if (status < 0 && !socket.destroyed) socket.destroy(writeErrorOf(status));
}

function writeErrorOf(status: number): NodeJS.ErrnoException {
  const code = getSystemErrorName(status);
  return Object.assign(new Error(`write ${code}`), { errno: status, code, syscall: 'write' });
}
