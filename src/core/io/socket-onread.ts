/**
 * Switches a socket Node created for us (an accepted connection) onto the
 * shared read buffer, as if it had been made with net's `onread` option.
 * net.Server has no such option, so this sets the fields net.Socket's
 * constructor sets (found and checked by support.ts) and points the handle
 * at the buffer with `useUserBuffer`, as lib/net.js does.
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { readBuffer } from './shared-read-buffer.ts';
import type { ReadCallback } from './shared-read-buffer.ts';
import { onreadFields } from './support.ts';

/**
 * Reads of `socket` go to `callback` through the shared buffer from now on
 * (also for a socket already reading through it: the callback changes).
 * Returns false, changing nothing, where that is not possible — a TLS
 * socket, a handle without useUserBuffer, a Node whose net.Socket differs —
 * and the caller keeps using 'data' events.
 * Precondition: the socket is paused and its readable buffer is empty.
 */
export function adoptSharedReadBuffer(socket: Socket, callback: ReadCallback): boolean {
  if (onreadFields === null || socket instanceof TLSSocket || socket.readableLength > 0) return false;
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (buf: Buffer) => void } | null })._handle;
  if (handle === null || handle === undefined || typeof handle.useUserBuffer !== 'function') return false;
  const fields = socket as unknown as Record<symbol, unknown>;
  fields[onreadFields.buffer] = readBuffer;
  fields[onreadFields.callback] = callback;
  fields[onreadFields.generator] = null;
  handle.useUserBuffer(readBuffer);
  return true;
}

/** For a socket already reading through the shared buffer: its reads go to `callback` from now on. False (nothing changed) for any other socket. */
export function setReadCallback(socket: Socket, callback: ReadCallback): boolean {
  if (!usesSharedReadBuffer(socket)) return false;
  (socket as unknown as Record<symbol, unknown>)[(onreadFields as NonNullable<typeof onreadFields>).callback] = callback;
  return true;
}

/** True when the socket reads through the shared buffer. */
export function usesSharedReadBuffer(socket: Socket): boolean {
  return onreadFields !== null && (socket as unknown as Record<symbol, unknown>)[onreadFields.buffer] === readBuffer;
}
