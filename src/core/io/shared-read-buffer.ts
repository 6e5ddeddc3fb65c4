/**
 * Reads without a Buffer per chunk. With net.Socket's `onread` option libuv
 * reads straight into a buffer we own and calls our function, skipping
 * Node's 64 KiB allocation per read and the Readable stream machinery. One
 * read buffer serves every socket of the process: JS runs one read callback
 * at a time and each callback copies its bytes out before returning (into
 * the reusable `spare` for the relay, or a new Buffer for callers that keep
 * them), so a write the kernel cannot take at once never points into memory
 * the next read of another socket will overwrite.
 *
 * Measured: proxy user CPU per pgbench transaction 6.7–7.9 µs with 'data'
 * events → 4.7–5.3 µs; tcp-bulk 1.41 → 0.63–0.70 CPU-s per GiB with flat
 * RSS (bench/RESULTS.md has the side-by-side runs).
 */
import type { Socket } from 'node:net';

/** 256 KiB: bulk transfers need 4× fewer read callbacks than with 64 KiB. */
const READ_SIZE = 256 * 1024;
/** The one read buffer; socket-onread.ts points accepted sockets at it. */
export const readBuffer = Buffer.allocUnsafeSlow(READ_SIZE);

export type ReadCallback = (this: Socket, nread: number, buffer: Buffer) => boolean;

/** The `onread` option for sockets we create (backend connections). */
export function onreadOption(callback: ReadCallback): { buffer: Buffer; callback: ReadCallback } {
  return { buffer: readBuffer, callback };
}

/** Copies the bytes of the read that just happened into a new Buffer the caller may keep. */
export function takeRead(nread: number): Buffer {
  const chunk = Buffer.allocUnsafe(nread);
  readBuffer.copy(chunk, 0, 0, nread);
  return chunk;
}

/**
 * The write side's buffer: a read is copied here and written at once. When
 * the write completes synchronously (the common case) the same memory takes
 * the next read, so steady traffic allocates nothing; a fresh Buffer per
 * 64 KiB read made bulk transfers run a full GC every ~64 MB of external
 * memory. When the write is queued, the queued write keeps this memory and
 * settleBorrowed() puts a new one in its place.
 */
let spare: Buffer = Buffer.allocUnsafeSlow(READ_SIZE);

/**
 * Views of the spare by length: request/response traffic repeats a few
 * sizes, so a borrowed chunk is usually a view made before rather than a new
 * Buffer object per read. Emptied whenever the spare changes.
 */
const views = new Map<number, Buffer>();
const MAX_VIEW = 16 * 1024;

function viewOfSpare(length: number): Buffer {
  if (length > MAX_VIEW) return spare.subarray(0, length);
  let view = views.get(length);
  if (view === undefined) {
    view = spare.subarray(0, length);
    views.set(length, view);
  }
  return view;
}

function replaceSpare(): void {
  spare = freeList.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE);
  views.clear();
}

/** The bytes of the read that just happened, valid until the next read: write them at once, keep nothing. */
export function borrowRead(nread: number): Buffer {
  const chunk = viewOfSpare(nread);
  readBuffer.copy(chunk, 0, 0, nread);
  return chunk;
}

/**
 * Like borrowRead, for any bytes (usually a part of the read that just
 * happened, e.g. the body after an HTTP head): copied into the spare, valid
 * until the next read. Call settleBorrowed(peer) right after writing them.
 */
export function borrowBytes(bytes: Buffer): Buffer {
  if (bytes.length > spare.length) return Buffer.from(bytes);
  const chunk = viewOfSpare(bytes.length);
  bytes.copy(chunk, 0);
  return chunk;
}

const kLent = Symbol('polyproxy.lentBuffer');
type LendingSocket = Socket & { [kLent]?: Buffer | null };
/** Buffers whose queued writes finished, ready to be the spare again (bounded). */
const freeList: Buffer[] = [];
const MAX_FREE = 16;

/** Call right after writing a borrowed chunk to `peer`. */
export function settleBorrowed(peer: Socket): void {
  if (peer.writableLength === 0) return;
  // The write is queued and points into `spare`: lend it to `peer` until it drains.
  (peer as LendingSocket)[kLent] = spare;
  replaceSpare();
}

/**
 * For writes that bypass the socket's Writable (io/stream-handle.ts):
 * the borrowed chunk just written was queued, so its memory leaves with the
 * write and a new spare takes its place. Give it back with returnLent()
 * when the write completes.
 */
export function lendSpare(): Buffer {
  const lent = spare;
  replaceSpare();
  return lent;
}

/** A buffer from lendSpare() whose write completed. */
export function returnLent(lent: Buffer): void {
  if (freeList.length < MAX_FREE) freeList.push(lent);
}

/**
 * Call when `socket` emits 'drain': every write queued on it has completed,
 * so the buffer lent to it can serve reads again. Without this, each lent
 * buffer waits for a GC, and bulk transfers swing RSS by V8's 64 MB
 * external-memory threshold.
 */
export function reclaimLent(socket: Socket): void {
  const lent = (socket as LendingSocket)[kLent];
  if (lent === undefined || lent === null) return;
  (socket as LendingSocket)[kLent] = null;
  if (freeList.length < MAX_FREE) freeList.push(lent);
}
