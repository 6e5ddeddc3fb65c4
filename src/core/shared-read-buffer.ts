/**
 * Reads without a Buffer per chunk. With net.Socket's `onread` option libuv
 * reads straight into a buffer we own and calls our function, skipping the
 * 64 KiB allocation per read and the Readable stream machinery. One buffer
 * serves every socket of the process: JS runs one read callback at a time
 * and each callback copies its bytes out (into a right-sized, usually pooled
 * Buffer) before returning, so a write that the kernel cannot take at once
 * never points into memory the next read will overwrite.
 *
 * Measured (bench/RESULTS.md, relay section): proxy user CPU per pgbench
 * transaction 6.7–7.9 µs with 'data' events → 4.7–5.3 µs.
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

const READ_SIZE = 64 * 1024;
const readBuffer = Buffer.allocUnsafeSlow(READ_SIZE);

export type ReadCallback = (this: Socket, nread: number, buffer: Buffer) => boolean;

/** The `onread` option for sockets we create (backend connections). */
export function onreadOption(callback: ReadCallback): { buffer: Buffer; callback: ReadCallback } {
  return { buffer: readBuffer, callback };
}

/** Copies the bytes of the read that just happened out of the shared buffer. */
export function takeRead(nread: number): Buffer {
  const chunk = Buffer.allocUnsafe(nread);
  readBuffer.copy(chunk, 0, 0, nread);
  return chunk;
}

interface ReadSymbols {
  readonly buffer: symbol;
  readonly callback: symbol;
  readonly generator: symbol;
}

let symbols: ReadSymbols | null | undefined;

/**
 * Switches a socket Node created for us (an accepted connection) to the
 * shared read buffer, as if it had been made with `onread`. net.Server has
 * no `onread` option, so this sets the same fields net.Socket's constructor
 * sets, found by their symbol descriptions. Returns false (and changes
 * nothing) where that is not possible — a TLS socket, or a Node whose
 * internals differ — and the caller keeps using 'data' events.
 * Precondition: the socket is paused and its readable buffer is empty.
 */
export function adoptSharedReadBuffer(socket: Socket, callback: ReadCallback): boolean {
  if (socket instanceof TLSSocket || socket.readableLength > 0) return false;
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (buf: Buffer) => void } | null })._handle;
  if (handle === null || handle === undefined || typeof handle.useUserBuffer !== 'function') return false;
  if (symbols === undefined) symbols = findSymbols(socket);
  if (symbols === null) return false;
  const fields = socket as unknown as Record<symbol, unknown>;
  fields[symbols.buffer] = readBuffer;
  fields[symbols.callback] = callback;
  fields[symbols.generator] = null;
  handle.useUserBuffer(readBuffer);
  return true;
}

/** True when the socket reads through the shared buffer. */
export function usesSharedReadBuffer(socket: Socket): boolean {
  const found = symbols ?? findSymbols(socket);
  return found !== null && (socket as unknown as Record<symbol, unknown>)[found.buffer] === readBuffer;
}

function findSymbols(socket: Socket): ReadSymbols | null {
  const named = new Map(Object.getOwnPropertySymbols(socket).map((s) => [s.description, s]));
  const buffer = named.get('kBuffer');
  const callback = named.get('kBufferCb');
  const generator = named.get('kBufferGen');
  if (buffer === undefined || callback === undefined || generator === undefined) return null;
  return { buffer, callback, generator };
}
