/**
 * One client-initiated HTTP/2 stream on the proxy's own server framing
 * layer (connection.ts): the request body readable, the response
 * writable. It is shaped like the parts of node's ServerHttp2Stream the
 * proxy used (respond, write/end with backpressure, trailers, close,
 * 'data'/'end' with pause/resume, pipe both ways), without a Duplex per
 * stream: the exchange that owns it hears of resets, closes and 'drain'
 * by direct calls (StreamOwner); events are emitted for the few consumers
 * that listen (the HTTP/1.1 client reading a body, pipes, the WebSocket
 * tunnel).
 *
 * Stream states (RFC 9113 §5.1): open → half-closed (remote) when the
 * client's END_STREAM arrives, half-closed (local) when ours is framed,
 * closed when both are, or on RST_STREAM either way.
 */
import { EventEmitter } from 'node:events';
import type { H2ServerConnection } from './connection.ts';

/** What the stream tells its owner (the exchange) directly. */
export interface StreamOwner {
  /** The client reset the stream, or the connection went, before the stream completed. */
  onClientAborted(): void;
  /** The stream is closed (after onClientAborted, if it was aborted). */
  onClientClose(): void;
  /** A write() that returned false has room again. */
  onClientDrain(): void;
  /** respond(..., { waitForTrailers }) and end(): the data is framed; sendTrailers() now. */
  onWantTrailers(): void;
}

export interface RespondOptions {
  readonly endStream?: boolean;
  readonly waitForTrailers?: boolean;
}

/** A response header list: a raw flat list (`:status` first), or an object like node:http2's. */
export type ResponseFields = string[] | Readonly<Record<string, string | number | readonly string[] | undefined>>;

/** Bytes queued on one stream (waiting for its flow-control window) past which write() asks the writer to wait. */
const HIGH_WATER_MARK = 64 * 1024;

const EMPTY: Buffer = Buffer.alloc(0);

export class H2Stream extends EventEmitter {
  readonly id: number;
  readonly conn: H2ServerConnection;
  owner: StreamOwner | null = null;
  /** The request's HEADERS carried END_STREAM: no body. */
  readonly endAfterHeaders: boolean;
  /** The RST_STREAM code that closed the stream, if one did. */
  rstCode: number | undefined = undefined;
  closed = false;
  destroyed = false;
  /** Our side: headers sent. */
  headersSent = false;
  /** Our side: end() was called (or the response was headers only). */
  writableEnded = false;
  /** Our side: END_STREAM is framed. */
  writableFinished = false;
  /** The client's side: 'end' was emitted. */
  readableEnded = false;
  writableNeedDrain = false;

  /** The client's END_STREAM arrived. */
  remoteEnded: boolean;
  /** Flow control: what we may still send on this stream (§6.9). */
  sendWindow: number;
  /** Flow control: what the client may still send on this stream. */
  recvWindow = 0;
  /** Request body bytes taken by the consumer since the last WINDOW_UPDATE we sent for the stream. */
  recvConsumed = 0;
  /** Request body bytes received (padding excluded), for the content-length check (§8.1.1). */
  received = 0;
  /** The request's trailer fields (a raw list), once a trailing HEADERS frame ended the request; before 'end'. */
  trailers: string[] | null = null;
  /** The request's content-length, -1 without one. */
  readonly contentLength: number;

  /** Response DATA waiting for window (in order), its bytes, and what follows it. */
  outQueue: Buffer[] | null = null;
  outQueued = 0;
  #endQueued = false;
  #trailersQueued: string[] | null = null;
  #waitForTrailers = false;

  /** Request body bytes not yet taken (the consumer is paused or not attached yet). */
  #inQueue: Buffer[] | null = null;
  #flowing = false;

  constructor(conn: H2ServerConnection, id: number, endAfterHeaders: boolean, contentLength: number, sendWindow: number) {
    super();
    this.conn = conn;
    this.id = id;
    this.endAfterHeaders = endAfterHeaders;
    this.remoteEnded = endAfterHeaders;
    this.contentLength = contentLength;
    this.sendWindow = sendWindow;
  }

  // ---- the response (our side) ---------------------------------------------

  /** Sends the response's HEADERS (`:status` first in a raw list). */
  respond(fields: ResponseFields, options?: RespondOptions): void {
    if (this.headersSent || this.destroyed) return;
    this.headersSent = true;
    const list = Array.isArray(fields) ? (fields as string[]) : flatten(fields as Record<string, string | number | readonly string[] | undefined>);
    const endStream = options?.endStream === true;
    this.#waitForTrailers = options?.waitForTrailers === true;
    this.conn.sendHeaders(this, list, endStream);
    if (endStream) {
      this.writableEnded = true;
      this.#finished();
    }
  }

  /** Response body bytes; false: wait for the owner's onClientDrain (or 'drain'). */
  write(chunk: Buffer): boolean {
    if (this.writableEnded || this.destroyed) return false;
    if (chunk.length > 0) this.conn.sendData(this, chunk, false);
    if (this.outQueued >= HIGH_WATER_MARK || this.conn.congested) {
      this.writableNeedDrain = true;
      this.conn.wantDrain(this);
      return false;
    }
    return true;
  }

  /** Ends the response (with `chunk` as its last bytes): END_STREAM, or the trailers once the owner sends them. */
  end(chunk?: Buffer): void {
    if (this.writableEnded || this.destroyed) return;
    this.writableEnded = true;
    if (!this.headersSent) this.respond([':status', '200']);
    if (this.#waitForTrailers) {
      if (chunk !== undefined && chunk.length > 0) this.conn.sendData(this, chunk, false);
      this.owner?.onWantTrailers();
      this.emit('wantTrailers');
      // The owner sent nothing: the stream still ends (an empty DATA frame with END_STREAM).
      this.sendTrailers([]);
      return;
    }
    this.conn.sendData(this, chunk ?? EMPTY, true);
  }

  /** The trailing HEADERS (END_STREAM); an empty list ends the stream with an empty DATA frame. */
  sendTrailers(fields: ResponseFields): void {
    // Once: END_STREAM queued or sent, or trailers queued, ends our side for good (§5.1: nothing may follow it).
    if (this.destroyed || this.writableFinished || this.#endQueued || this.#trailersQueued !== null) return;
    const list = Array.isArray(fields) ? (fields as string[]) : flatten(fields as Record<string, string | number | readonly string[] | undefined>);
    this.writableEnded = true;
    if (list.length === 0) {
      this.conn.sendData(this, EMPTY, true);
      return;
    }
    this.#trailersQueued = list;
    this.conn.flushStream(this);
  }

  /** Resets the stream with RST_STREAM `code` (NO_ERROR after a complete response: the request body is not wanted, §8.1). */
  close(code: number): void {
    if (this.closed) return;
    this.conn.resetStream(this, code);
  }

  // ---- called by the connection --------------------------------------------

  /** @internal A DATA frame queued for flow control, or trailers, wait here. */
  queueOut(chunk: Buffer, end: boolean): void {
    if (chunk.length > 0) {
      if (this.outQueue === null) this.outQueue = [chunk];
      else this.outQueue.push(chunk);
      this.outQueued += chunk.length;
    }
    if (end) this.#endQueued = true;
  }

  /** @internal What follows the queued DATA: 0 nothing, 1 END_STREAM on the last DATA, 2 trailers. */
  get pendingEnd(): number {
    return this.#endQueued ? 1 : this.#trailersQueued !== null ? 2 : 0;
  }

  /** @internal The trailers are framed. */
  takeTrailers(): string[] | null {
    const t = this.#trailersQueued;
    this.#trailersQueued = null;
    return t;
  }

  /** @internal END_STREAM went out on our side. */
  finishedLocal(): void {
    this.#endQueued = false;
    this.#finished();
  }

  #finished(): void {
    if (this.writableFinished) return;
    this.writableFinished = true;
    this.emit('finish');
    // Both sides ended: closed (a body nobody read any more is dropped).
    if (this.remoteEnded && !this.closed) this.conn.streamDone(this);
  }

  /** @internal Request body bytes (a slice of the read chunk: it is not reused). */
  pushData(chunk: Buffer): void {
    if (this.#flowing && this.#inQueue === null) {
      this.conn.consumed(this, chunk.length);
      this.emit('data', chunk);
      return;
    }
    if (this.#inQueue === null) this.#inQueue = [chunk];
    else this.#inQueue.push(chunk);
  }

  /** @internal The client's END_STREAM; `trailers`: the request's trailer fields (checked, raw list), when a trailing HEADERS ended it. */
  pushEnd(trailers?: string[]): void {
    this.remoteEnded = true;
    if (trailers !== undefined && trailers.length > 0) this.trailers = trailers;
    if (this.#inQueue === null) this.#emitEnd();
    if (this.writableFinished && !this.closed) this.conn.streamDone(this);
  }

  #emitEnd(): void {
    if (this.readableEnded) return;
    this.readableEnded = true;
    this.emit('end');
  }

  /** @internal The connection closed the stream: `aborted` when it did not complete. */
  closedBy(code: number | undefined, aborted: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.destroyed = true;
    this.rstCode = code;
    this.#inQueue = null;
    this.outQueue = null;
    this.outQueued = 0;
    const owner = this.owner;
    if (aborted) {
      owner?.onClientAborted();
      this.emit('aborted');
    }
    owner?.onClientClose();
    this.emit('close');
  }

  /** @internal The connection has room again. */
  drained(): void {
    if (!this.writableNeedDrain || this.destroyed) return;
    this.writableNeedDrain = false;
    this.owner?.onClientDrain();
    this.emit('drain');
  }

  // ---- the request body (the client's side) --------------------------------

  isPaused(): boolean {
    return !this.#flowing;
  }

  pause(): this {
    this.#flowing = false;
    return this;
  }

  resume(): this {
    if (this.#flowing) return this;
    this.#flowing = true;
    let queue = this.#inQueue;
    while (queue !== null && this.#flowing && !this.destroyed) {
      const chunk = queue.shift() as Buffer;
      if (queue.length === 0) this.#inQueue = null;
      this.conn.consumed(this, chunk.length);
      this.emit('data', chunk);
      // The consumer may pause, or more may have come meanwhile.
      queue = this.#inQueue;
    }
    if (this.#inQueue === null && this.remoteEnded && this.#flowing && !this.destroyed) this.#emitEnd();
    return this;
  }

  /** The request body into `dest` with backpressure; `dest.end()` at its end. */
  pipe<T extends PipeTarget>(dest: T): T {
    const onData = (chunk: Buffer): void => {
      if (dest.write(chunk) === false) {
        this.pause();
        dest.once('drain', onDrain);
      }
    };
    const onDrain = (): void => {
      this.resume();
    };
    this.on('data', onData);
    this.once('end', () => dest.end());
    this.once('close', () => {
      this.removeListener('data', onData);
      dest.removeListener('drain', onDrain);
    });
    this.resume();
    return dest;
  }
}

/** What pipe() writes into (a socket, a backend stream). */
export interface PipeTarget {
  write(chunk: Buffer): boolean;
  end(): unknown;
  once(event: 'drain', fn: () => void): unknown;
  removeListener(event: 'drain', fn: () => void): unknown;
}

/** node:http2-style header object → raw flat list; names lowercased, arrays as repeated fields, `:status` first. */
export function flatten(fields: Readonly<Record<string, string | number | readonly string[] | undefined>>): string[] {
  const out: string[] = [];
  const status = fields[':status'];
  if (status !== undefined) out.push(':status', String(status));
  for (const key in fields) {
    if (key === ':status') continue;
    const value = fields[key];
    if (value === undefined) continue;
    const name = key.toLowerCase();
    if (Array.isArray(value)) for (const v of value as readonly string[]) out.push(name, String(v));
    else out.push(name, String(value));
  }
  return out;
}
