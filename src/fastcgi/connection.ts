/**
 * One FastCGI connection to an application (php-fpm): TCP or unix socket,
 * one request at a time (php-fpm does not multiplex: FCGI_MPXS_CONNS is 0),
 * FCGI_KEEP_CONN to reuse it. The caller streams stdin with backpressure and
 * receives stdout/stderr chunks through an ExchangeHandler.
 */
import type net from 'node:net';
import type { Endpoint } from '../core/endpoint.ts';
import { Dial } from '../core/connect.ts';
import type { DialOwner } from '../core/connect.ts';
import { FastCgiError } from './errors.ts';
import {
  FCGI_END_REQUEST,
  FCGI_HEADER_LEN,
  FCGI_KEEP_CONN,
  FCGI_MAX_CONTENT,
  FCGI_PARAMS,
  FCGI_REQUEST_COMPLETE,
  FCGI_RESPONDER,
  FCGI_STDERR,
  FCGI_STDIN,
  FCGI_STDOUT,
  RecordParser,
  decodeEndRequest,
  writeHeader,
} from './records.ts';

/** The request id used on every connection: one request at a time. */
export const REQUEST_ID = 1;

const PROTOCOL_STATUS_NAMES: Record<number, string> = { 1: 'FCGI_CANT_MPX_CONN', 2: 'FCGI_OVERLOADED', 3: 'FCGI_UNKNOWN_ROLE' };

/** Receives one request's output. Called on the connection's socket events; never re-entrantly. */
export interface ExchangeHandler {
  onStdout(chunk: Buffer): void;
  onStderr(chunk: Buffer): void;
  /** FCGI_END_REQUEST with FCGI_REQUEST_COMPLETE; the connection is free again (or closing without keep-conn). */
  onEnd(appStatus: number): void;
  /** The request failed; the connection is destroyed. */
  onError(err: FastCgiError): void;
  /** The socket drained after writeStdin returned false. */
  onDrain?(): void;
}

export interface ConnectOptions {
  readonly connectTimeoutMs?: number;
}

interface Opening {
  readonly resolve: (socket: net.Socket) => void;
  readonly reject: (err: FastCgiError) => void;
}

/** Hears core's Dial for connectSocket: one candidate, no breaker accounting. */
const OPEN_OWNER: DialOwner = {
  dialConnected(dial) {
    (dial.context as Opening).resolve(halfOpenOff(dial.socket as net.Socket));
  },
  dialFailed(dial, error) {
    const label = (dial.candidates[0] as Endpoint).label;
    const err =
      dial.timeouts > 0
        ? new FastCgiError('FCGI_ERR_CONNECT_TIMEOUT', `connect to ${label} timed out after ${dial.timeoutMs} ms`, { retryable: true, cause: error })
        : new FastCgiError('FCGI_ERR_CONNECT_FAILED', `connect to ${label} failed: ${dial.failures?.[0]?.slice(label.length + 2) ?? error.message}`, { retryable: true, cause: error });
    (dial.context as Opening).reject(err);
  },
};

/**
 * Opens a socket to `endpoint` through core's connect loop (src/core/connect.ts: the
 * only place that dials backends); rejects with FCGI_ERR_CONNECT_FAILED /
 * FCGI_ERR_CONNECT_TIMEOUT (both retryable). The timeout is checked by core's
 * 100 ms sweep.
 */
export function connectSocket(endpoint: Endpoint, options: ConnectOptions = {}): Promise<net.Socket> {
  const timeoutMs = options.connectTimeoutMs ?? 5000;
  return new Promise((resolve, reject) => {
    const dial = new Dial(OPEN_OWNER, [endpoint], timeoutMs, undefined);
    dial.context = { resolve, reject } satisfies Opening;
    dial.start();
  });
}

/**
 * Core dials backend sockets half-open capable (for the relay); a FastCGI
 * connection ends when the application ends it: its 'close' is what tells an
 * idle or in-flight connection that php-fpm went away.
 */
function halfOpenOff(socket: net.Socket): net.Socket {
  socket.allowHalfOpen = false;
  return socket;
}

export class FastCgiConnection {
  readonly endpoint: Endpoint;
  readonly socket: net.Socket;
  /** Requests completed on this connection. */
  requests = 0;
  #handler: ExchangeHandler | null = null;
  #keepConn = false;
  #reusable = true;
  #closed = false;
  #gotOutput = false;
  #timeoutMs = 0;
  readonly #parser: RecordParser;
  #onIdleClose: ((conn: FastCgiConnection) => void) | null = null;

  /**
   * A connection on `socket`, already connected to `endpoint` (connectSocket,
   * or core's connectFirst: their reads arrive as 'data' events while no relay
   * owns the socket). Attach at once: the socket has no 'error' listener before.
   */
  constructor(endpoint: Endpoint, socket: net.Socket) {
    this.endpoint = endpoint;
    this.socket = halfOpenOff(socket);
    this.#parser = new RecordParser((type, requestId, content) => this.#record(type, requestId, content));
    socket.on('data', (chunk: Buffer) => this.#data(chunk));
    socket.on('drain', () => this.#handler?.onDrain?.());
    // The socket's inactivity timer stays armed between requests (re-arming it per request costs two timer
    // operations); firing while idle means nothing: idle connections are the pool's business.
    socket.on('timeout', () => {
      if (this.#handler !== null) this.#fail(new FastCgiError('FCGI_ERR_READ_TIMEOUT', `${endpoint.label} sent nothing for ${this.#timeoutMs} ms`));
    });
    socket.on('error', (err: Error) => this.#fail(this.#closedError(`connection to ${endpoint.label} failed: ${err.message}`, err)));
    socket.on('close', () => {
      this.#closed = true;
      if (this.#handler !== null) this.#fail(this.#closedError(`${endpoint.label} closed the connection before FCGI_END_REQUEST`));
      else this.#onIdleClose?.(this);
    });
  }

  static async open(endpoint: Endpoint, options: ConnectOptions = {}): Promise<FastCgiConnection> {
    return new FastCgiConnection(endpoint, await connectSocket(endpoint, options));
  }

  /** True when a request is in flight. */
  get busy(): boolean {
    return this.#handler !== null;
  }

  /** True once the application sent any byte for the current (or last) request. */
  get responded(): boolean {
    return this.#gotOutput;
  }

  /** True when the connection can carry another request. */
  get reusable(): boolean {
    return this.#reusable && !this.#closed && this.#handler === null;
  }

  /** A pool's hook for an idle connection the application closed. */
  set onIdleClose(fn: ((conn: FastCgiConnection) => void) | null) {
    this.#onIdleClose = fn;
  }

  /**
   * Starts a request: FCGI_BEGIN_REQUEST, the encoded params (`params` from
   * encodeNameValuePairs) and the params' end, plus `stdin` and the stdin end
   * when `endStdin` — all in one write. `timeoutMs` (0 = none) fails the
   * request with FCGI_ERR_READ_TIMEOUT when the application is silent that long.
   */
  begin(params: Buffer, handler: ExchangeHandler, options: { keepConn: boolean; timeoutMs: number; stdin?: Buffer | null; endStdin?: boolean }): void {
    if (this.#handler !== null) throw new FastCgiError('FCGI_ERR_INVALID_ARGUMENT', 'a request is already in flight on this connection');
    if (this.#closed) throw new FastCgiError('FCGI_ERR_CONNECTION_CLOSED', `connection to ${this.endpoint.label} is closed`, { retryable: true });
    this.#handler = handler;
    this.#keepConn = options.keepConn;
    this.#gotOutput = false;
    if (this.#timeoutMs !== options.timeoutMs) {
      this.#timeoutMs = options.timeoutMs;
      this.socket.setTimeout(options.timeoutMs);
    }
    // The previous request's consumer may have paused reading (backpressure) just before its END_REQUEST.
    this.socket.resume();
    const stdin = options.stdin ?? null;
    const paramRecords = Math.ceil(params.length / FCGI_MAX_CONTENT);
    const stdinRecords = stdin === null ? 0 : Math.ceil(stdin.length / FCGI_MAX_CONTENT);
    const size = 16 + paramRecords * FCGI_HEADER_LEN + params.length + FCGI_HEADER_LEN + stdinRecords * FCGI_HEADER_LEN + (stdin?.length ?? 0) + (options.endStdin === true ? FCGI_HEADER_LEN : 0);
    const out = Buffer.allocUnsafe(size);
    writeHeader(out, 0, 1, REQUEST_ID, 8);
    out.writeUInt16BE(FCGI_RESPONDER, 8);
    out[10] = options.keepConn ? FCGI_KEEP_CONN : 0;
    out.fill(0, 11, 16);
    let at = writeStreamInto(out, 16, FCGI_PARAMS, params);
    writeHeader(out, at, FCGI_PARAMS, REQUEST_ID, 0);
    at += FCGI_HEADER_LEN;
    if (stdin !== null) at = writeStreamInto(out, at, FCGI_STDIN, stdin);
    if (options.endStdin === true) writeHeader(out, at, FCGI_STDIN, REQUEST_ID, 0);
    this.socket.write(out);
  }

  /** Writes stdin bytes as records; false means wait for ExchangeHandler.onDrain. */
  writeStdin(chunk: Uint8Array): boolean {
    if (this.#closed || chunk.length === 0) return true;
    if (chunk.length <= FCGI_MAX_CONTENT) {
      const header = Buffer.allocUnsafe(FCGI_HEADER_LEN);
      writeHeader(header, 0, FCGI_STDIN, REQUEST_ID, chunk.length);
      this.socket.cork();
      this.socket.write(header);
      const ok = this.socket.write(chunk);
      this.socket.uncork();
      return ok;
    }
    const out = Buffer.allocUnsafe(chunk.length + Math.ceil(chunk.length / FCGI_MAX_CONTENT) * FCGI_HEADER_LEN);
    writeStreamInto(out, 0, FCGI_STDIN, chunk);
    return this.socket.write(out);
  }

  /** The empty FCGI_STDIN record: the request body is complete. */
  endStdin(): void {
    if (this.#closed) return;
    const out = Buffer.allocUnsafe(FCGI_HEADER_LEN);
    writeHeader(out, 0, FCGI_STDIN, REQUEST_ID, 0);
    this.socket.write(out);
  }

  /** Stops reading the application's output (the consumer is slow). */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Abandons the request in flight (if any) and closes the connection; the handler is not called. */
  destroy(): void {
    this.#handler = null;
    this.#reusable = false;
    this.#closed = true;
    this.socket.destroy();
  }

  #closedError(message: string, cause?: unknown): FastCgiError {
    // A kept-alive connection the application had already closed: nothing of this request was processed.
    const retryable = this.requests > 0 && !this.#gotOutput;
    return new FastCgiError('FCGI_ERR_CONNECTION_CLOSED', message, { retryable, cause });
  }

  #data(chunk: Buffer): void {
    if (this.#handler === null) {
      // Bytes with no request in flight: the application broke the protocol; the connection cannot be trusted.
      this.destroy();
      return;
    }
    this.#gotOutput = true;
    try {
      this.#parser.push(chunk);
    } catch (err) {
      this.#fail(err instanceof FastCgiError ? err : new FastCgiError('FCGI_ERR_PROTOCOL', (err as Error).message, { cause: err }));
    }
  }

  #record(type: number, requestId: number, content: Buffer): void {
    const handler = this.#handler;
    if (handler === null) return;
    if (requestId !== REQUEST_ID) {
      if (requestId === 0) return; // management records (FCGI_GET_VALUES_RESULT, FCGI_UNKNOWN_TYPE)
      throw new FastCgiError('FCGI_ERR_PROTOCOL', `record for request ${requestId}, expected ${REQUEST_ID}`);
    }
    if (type === FCGI_STDOUT) {
      if (content.length > 0) handler.onStdout(content);
    } else if (type === FCGI_STDERR) {
      if (content.length > 0) handler.onStderr(content);
    } else if (type === FCGI_END_REQUEST) {
      const end = decodeEndRequest(content);
      if (end.protocolStatus !== FCGI_REQUEST_COMPLETE) {
        const name = PROTOCOL_STATUS_NAMES[end.protocolStatus] ?? `protocol status ${end.protocolStatus}`;
        throw new FastCgiError('FCGI_ERR_REJECTED', `${this.endpoint.label} rejected the request: ${name}`, { retryable: end.protocolStatus !== 3 });
      }
      this.#handler = null;
      this.requests++;
      if (!this.#keepConn) {
        this.#reusable = false;
        this.socket.end();
      }
      handler.onEnd(end.appStatus);
    } else {
      throw new FastCgiError('FCGI_ERR_PROTOCOL', `unexpected record type ${type} from ${this.endpoint.label}`);
    }
  }

  #fail(err: FastCgiError): void {
    const handler = this.#handler;
    this.#handler = null;
    this.#reusable = false;
    this.#closed = true;
    this.socket.destroy();
    handler?.onError(err);
  }
}

function writeStreamInto(out: Buffer, at: number, type: number, content: Uint8Array): number {
  for (let from = 0; from < content.length; from += FCGI_MAX_CONTENT) {
    const n = Math.min(FCGI_MAX_CONTENT, content.length - from);
    writeHeader(out, at, type, REQUEST_ID, n);
    out.set(content.subarray(from, from + n), at + FCGI_HEADER_LEN);
    at += FCGI_HEADER_LEN + n;
  }
  return at;
}
