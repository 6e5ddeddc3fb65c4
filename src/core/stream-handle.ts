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
 * the same objects lib/net.js uses), not public API: everything here checks
 * their shape first and reports `null` when it differs, and the relay then
 * keeps using the public socket methods. POLYPROXY_DIRECT_IO=0 turns it off.
 *
 * Measured with callgrind (user-space instructions of the proxy per
 * pgbench -S transaction, which is one read and one write each way):
 * 27,200 through the sockets, 18,000–18,800 direct (bench/RESULTS.md).
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

/** A libuv stream handle as lib/net.js sees it (TCPWrap). */
export interface StreamHandle {
  reading: boolean;
  onread: (this: StreamHandle, arrayBuffer?: ArrayBuffer) => unknown;
  readStart(): number;
  readStop(): number;
  writeBuffer(req: WriteReq, chunk: Buffer): number;
  [key: symbol]: unknown;
}

/** A write request object (WriteWrap); its oncomplete runs when a queued write finishes. */
export interface WriteReq {
  handle: StreamHandle | null;
  buffer: Buffer | null;
  oncomplete: ((this: WriteReq, status: number) => void) | null;
}

interface StreamWrapBinding {
  readonly WriteWrap: new () => WriteReq;
  readonly streamBaseState: Int32Array;
  readonly kReadBytesOrError: number;
  readonly kLastWriteWasAsync: number;
}

export interface DirectIo {
  readonly WriteWrap: new () => WriteReq;
  /** Shared with C++: the byte count (or error) of the read being delivered, and whether the last write was queued. */
  readonly state: Int32Array;
  readonly kReadBytesOrError: number;
  readonly kLastWriteWasAsync: number;
}

function load(): DirectIo | null {
  if (process.env.POLYPROXY_DIRECT_IO === '0') return null;
  try {
    const binding = (process as unknown as { binding(name: string): Partial<StreamWrapBinding> }).binding('stream_wrap');
    const { WriteWrap, streamBaseState, kReadBytesOrError, kLastWriteWasAsync } = binding;
    if (typeof WriteWrap !== 'function' || !(streamBaseState instanceof Int32Array)) return null;
    if (typeof kReadBytesOrError !== 'number' || typeof kLastWriteWasAsync !== 'number') return null;
    return { WriteWrap, state: streamBaseState, kReadBytesOrError, kLastWriteWasAsync };
  } catch {
    return null;
  }
}

/** The bindings, or null where this Node does not offer them in the expected shape. */
export const directIo: DirectIo | null = load();

/**
 * The handle of a plain TCP socket the relay may drive directly, or null
 * (TLS sockets, sockets without a handle or whose handle lacks the
 * methods, sockets with a stream timeout the direct path would not refresh).
 */
export function directHandleOf(socket: Socket): StreamHandle | null {
  if (directIo === null || socket instanceof TLSSocket || socket.destroyed) return null;
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
