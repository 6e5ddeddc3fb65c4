/**
 * PostgreSQL message framing for the pooling session, both directions
 * (https://www.postgresql.org/docs/current/protocol-message-formats.html):
 * every message is a type byte, an int32 length that counts itself, and a
 * body. The pool must see every header (to follow transactions, prepared
 * statements and parameters) but only a few bodies.
 *
 * `MessageReader` is an incremental state machine over chunks. Per message
 * it asks its owner what to do with it (`PASS`: stream the bytes through as
 * they come, never buffered whole; `WHOLE`: collect the body, then hand it
 * over in one piece). The header carry (5 bytes) and the body store are
 * made once per reader and grow only for a larger message: the steady state
 * allocates nothing per message.
 *
 * `Outbox` collects the bytes to write to one socket during one read
 * callback and writes them with one write at the end; its memory is
 * reused unless the kernel kept the previous write queued (then the queued
 * write keeps it and a new one takes its place). On a plain TCP socket the
 * write goes straight to the libuv handle (core/io/stream-handle.ts, as the
 * relay does: no Writable state, no WriteWrap per write); a write libuv has
 * to queue reports false, and its completion emits the socket's 'drain'
 * (where the session's backpressure handlers already listen).
 */
import type { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { directHandleOf, takeOverReads, newWriteReq, releaseWriteReq, writeReqOwner, writeToHandle, WRITE_DONE, WRITE_QUEUED } from '../../../core/io/stream-handle.ts';
import type { StreamHandle, WriteReq } from '../../../core/io/stream-handle.ts';
import { ioSupport } from '../../../core/io/support.ts';

/** What to do with a message, decided from its header. */
export const PASS = 0;
export const WHOLE = 1;

/** PostgreSQL refuses larger messages (PQ_LARGE_MESSAGE_LIMIT, 1 GiB − 1). */
export const MAX_MESSAGE_LENGTH = 0x3fffffff;

export interface MessageOwner {
  /** A header arrived: PASS or WHOLE. `length` counts the 4 length bytes, not the type. Throw to refuse it. */
  messageStart(type: number, length: number): number;
  /** PASS: the next bytes of the current message (starting with its 5 header bytes, alone or with body bytes), valid during the call only. */
  messageBytes(bytes: Buffer, start: number, end: number): void;
  /** PASS: the current message ended. */
  messageEnd(type: number): void;
  /** WHOLE: the body (without type and length), valid during the call only. */
  messageWhole(type: number, body: Buffer, start: number, end: number): void;
}

const READ_HEADER = 0;
const READ_PASS = 1;
const READ_WHOLE = 2;

/** The reader met a length PostgreSQL would refuse (the session answers 08P01 and closes). */
export class FramingError extends Error {
  readonly code = 'PP_ERR_PG_FRAMING';
}

export class MessageReader {
  readonly owner: MessageOwner;
  readonly maxLength: number;
  readonly #header = Buffer.alloc(5);
  #headerFill = 0;
  #state = READ_HEADER;
  #type = 0;
  #remaining = 0;
  #store: Buffer;
  #storeFill = 0;

  constructor(owner: MessageOwner, maxLength = MAX_MESSAGE_LENGTH, storeSize = 8192) {
    this.owner = owner;
    this.maxLength = maxLength;
    this.#store = Buffer.allocUnsafeSlow(storeSize);
  }

  /** True between messages (no partial header or body pending). */
  get atBoundary(): boolean {
    return this.#state === READ_HEADER && this.#headerFill === 0;
  }

  /** Consumes `chunk[start, end)`; stops early (returning the offset reached) when `stop()` says so after a message. */
  push(chunk: Buffer, start: number, end: number, stop?: () => boolean): number {
    let at = start;
    const owner = this.owner;
    while (at < end) {
      if (this.#state === READ_HEADER) {
        let type: number;
        let length: number;
        if (this.#headerFill === 0 && end - at >= 5) {
          type = chunk[at] as number;
          length = chunk.readUInt32BE(at + 1);
          at += 5;
          if (!this.#begin(type, length)) {
            // The header and as much of the body as this chunk holds, in one call.
            const take = Math.min(this.#remaining, end - at);
            owner.messageBytes(chunk, at - 5, at + take);
            at += take;
            this.#remaining -= take;
            if (this.#remaining === 0) {
              this.#state = READ_HEADER;
              owner.messageEnd(type);
              if (stop !== undefined && stop()) return at;
            }
            continue;
          }
        } else {
          const take = Math.min(5 - this.#headerFill, end - at);
          chunk.copy(this.#header, this.#headerFill, at, at + take);
          this.#headerFill += take;
          at += take;
          if (this.#headerFill < 5) return at;
          this.#headerFill = 0;
          type = this.#header[0] as number;
          length = this.#header.readUInt32BE(1);
          if (!this.#begin(type, length)) {
            owner.messageBytes(this.#header, 0, 5);
            if (this.#remaining === 0) {
              this.#state = READ_HEADER;
              owner.messageEnd(type);
              if (stop !== undefined && stop()) return at;
            }
            continue;
          }
        }
        // WHOLE with an empty body
        if (this.#remaining === 0) {
          this.#state = READ_HEADER;
          owner.messageWhole(type, this.#store, 0, 0);
          if (stop !== undefined && stop()) return at;
        }
        continue;
      }
      const take = Math.min(this.#remaining, end - at);
      if (this.#state === READ_PASS) {
        owner.messageBytes(chunk, at, at + take);
        at += take;
        this.#remaining -= take;
        if (this.#remaining === 0) {
          this.#state = READ_HEADER;
          owner.messageEnd(this.#type);
          if (stop !== undefined && stop()) return at;
        }
        continue;
      }
      // READ_WHOLE: hand the body over in place when it is all in this chunk.
      if (this.#storeFill === 0 && take === this.#remaining) {
        at += take;
        this.#remaining = 0;
        this.#state = READ_HEADER;
        owner.messageWhole(this.#type, chunk, at - take, at);
        if (stop !== undefined && stop()) return at;
        continue;
      }
      chunk.copy(this.#store, this.#storeFill, at, at + take);
      this.#storeFill += take;
      at += take;
      this.#remaining -= take;
      if (this.#remaining === 0) {
        this.#state = READ_HEADER;
        const fill = this.#storeFill;
        this.#storeFill = 0;
        owner.messageWhole(this.#type, this.#store, 0, fill);
        if (stop !== undefined && stop()) return at;
      }
    }
    return at;
  }

  /** Starts a message; true when it is collected whole. */
  #begin(type: number, length: number): boolean {
    if (length < 4 || length > this.maxLength) throw new FramingError(`invalid message length ${length} for message type 0x${type.toString(16)}`);
    this.#type = type;
    this.#remaining = length - 4;
    if (this.owner.messageStart(type, length) === WHOLE) {
      this.#state = READ_WHOLE;
      this.#storeFill = 0;
      if (this.#store.length < this.#remaining) this.#store = Buffer.allocUnsafeSlow(Math.max(this.#remaining, this.#store.length * 2));
      return true;
    }
    this.#state = READ_PASS;
    return false;
  }
}

/** Bytes bound for one socket, written once per read callback. */
export class Outbox {
  #buf: Buffer;
  length = 0;
  /** The socket flushed to last, its direct handle (null: none) and write requests. */
  #socket: Socket | null = null;
  #handle: StreamHandle | null = null;
  #req: WriteReq | null = null;
  #pending: WriteReq | null = null;

  constructor(size = 16 * 1024) {
    this.#buf = Buffer.allocUnsafeSlow(size);
  }

  #room(n: number): Buffer {
    const need = this.length + n;
    let buf = this.#buf;
    if (need > buf.length) {
      const next = Buffer.allocUnsafeSlow(Math.max(need, buf.length * 2));
      buf.copy(next, 0, 0, this.length);
      this.#buf = buf = next;
    }
    return buf;
  }

  bytes(src: Buffer, start: number, end: number): void {
    const n = end - start;
    if (n <= 0) return;
    src.copy(this.#room(n), this.length, start, end);
    this.length += n;
  }

  byte(value: number): void {
    this.#room(1)[this.length++] = value;
  }

  int32(value: number): void {
    this.#room(4).writeInt32BE(value, this.length);
    this.length += 4;
  }

  int16(value: number): void {
    this.#room(2).writeInt16BE(value, this.length);
    this.length += 2;
  }

  /** A NUL-terminated string (latin1/ASCII names: the proxy's own statement names). */
  cstring(value: string): void {
    const n = Buffer.byteLength(value);
    const buf = this.#room(n + 1);
    buf.write(value, this.length);
    this.length += n;
    buf[this.length++] = 0;
  }

  /** Starts a message; returns where its length goes (see endMessage). */
  startMessage(type: number): number {
    this.byte(type);
    const at = this.length;
    this.int32(0);
    return at;
  }

  endMessage(at: number): void {
    this.#buf.writeInt32BE(this.length - at, at);
  }

  /**
   * Writes what was collected to `socket` and empties the box. Returns
   * false when the socket cannot take more now (wait for its 'drain').
   */
  flush(socket: Socket): boolean {
    if (this.length === 0) return true;
    const n = this.length;
    this.length = 0;
    if (socket.destroyed) return true;
    const chunk = this.#buf.subarray(0, n);
    if (this.#pending === null && ioSupport.directIo && socket.writableLength === 0 && !socket.writableEnded) {
      let handle = this.#handle;
      if (this.#socket !== socket) {
        this.#socket = socket;
        this.#handle = handle = directHandleOf(socket);
        this.#req = null;
      }
      if (handle !== null) {
        let req = this.#req;
        if (req === null) req = this.#req = newWriteReq(handle, this, outboxWriteComplete);
        const result = writeToHandle(req, chunk);
        if (result === WRITE_DONE) return true;
        if (result !== WRITE_QUEUED) {
          socket.destroy(writeError(result));
          return true;
        }
        // Queued: the request keeps this memory until it completes.
        this.#pending = req;
        this.#req = null;
        this.#buf = Buffer.allocUnsafeSlow(this.#buf.length);
        return false;
      }
    }
    const ok = socket.write(chunk);
    // A write the kernel did not take at once keeps pointing at this memory.
    if (socket.writableLength > 0) this.#buf = Buffer.allocUnsafeSlow(this.#buf.length);
    return ok;
  }

  /** A queued direct write finished (outboxWriteComplete). */
  writeComplete(req: WriteReq, status: number): void {
    releaseWriteReq(req);
    this.#pending = null;
    const socket = this.#socket;
    if (socket === null || socket.destroyed) return;
    if (status < 0) {
      socket.destroy(writeError(status));
      return;
    }
    if (socket.writableLength === 0) socket.emit('drain');
  }
}

function outboxWriteComplete(this: WriteReq, status: number): void {
  (writeReqOwner(this) as Outbox).writeComplete(this, status);
}

function writeError(status: number): NodeJS.ErrnoException {
  const code = getSystemErrorName(status);
  const err: NodeJS.ErrnoException = new Error(`write ${code}`);
  err.errno = status;
  err.code = code;
  err.syscall = 'write';
  return err;
}

/**
 * A plain-TCP socket reading through the shared buffer reads past
 * net.Socket from here on (as the relay does, core/relay.ts): its handle's
 * onread calls the session with the byte count, skipping onStreamRead's
 * per-read bookkeeping. EOF and errors still take net.Socket's path;
 * socket.pause()/resume() still stop and restart the handle.
 */
export function readDirect(socket: Socket, owner: unknown, onread: (this: StreamHandle, arrayBuffer?: ArrayBuffer) => unknown): void {
  const handle = directHandleOf(socket);
  if (handle !== null) takeOverReads(handle, owner, onread);
}

/** Strings shorter than this are scanned in JS: Buffer.indexOf is a call into C++, dearer than the scan for a name or a short query. */
const SCAN_IN_JS = 256;

/** Where the NUL ending the string at `start` is, or -1. */
export function cstringEnd(buf: Buffer, start: number, end: number): number {
  const stop = Math.min(end, start + SCAN_IN_JS);
  for (let i = start; i < stop; i++) if (buf[i] === 0) return i;
  if (stop === end) return -1;
  const i = buf.indexOf(0, stop);
  return i < 0 || i >= end ? -1 : i;
}
