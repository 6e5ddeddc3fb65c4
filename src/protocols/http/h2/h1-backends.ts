/**
 * HTTP/1.1 backends for requests that arrived over HTTP/2 (and for the
 * ws-bridge's API calls, ws-bridge/api-client.ts): a minimal
 * HTTP/1.1 client of our own on keep-alive connections held in core's
 * EndpointPool (src/core/pool.ts: slots per endpoint up to
 * `pool.maxConnectionsPerBackend`, FIFO waiters, LIFO idle, one sweep
 * timer), dialing through dial.ts so each connect feeds the endpoint's
 * breaker.
 *
 * Why not undici (the previous client): per request it built a Request
 * object, validated every header again, ran llhttp through wasm callbacks
 * and scheduled its queue with nextTick — about a fifth of the worker's
 * CPU under h2load. Here a request is one string written once (the head,
 * built by headers.ts from the HTTP/2 header list wire/request-fields.ts
 * already checked), and the response is parsed by the listener's own head
 * parser (head-parser.ts) and chunked framer (chunked.ts), whose strict
 * rules (no CL with TE, no bare LF...) apply to backends here as on the
 * HTTP/1.1 path.
 *
 * One request at a time per connection (no pipelining). Bodies: requests
 * with Content-Length go as they are, others chunked; responses by
 * Content-Length, chunked (decoded; its trailer fields handed over at the
 * end) or to the close; HEAD, 1xx, 204 and 304 have none; 1xx interim
 * responses are skipped. A connection goes
 * back to the pool only after a complete exchange that leaves it
 * reusable (keep-alive, request fully sent, no stray bytes). A reused
 * connection that closes before any response byte sends an idempotent
 * bodyless request once more on a fresh one (core/retry.ts's rule).
 * Backpressure both ways: a full backend socket pauses the client's
 * request stream; the exchange pauses the backend socket while the
 * client's stream is full.
 *
 * Socket handlers are module-level functions attached once per connection
 * that find the connection through a symbol field.
 */
import type { Socket } from 'node:net';
import type { Endpoint } from '../../../core/endpoint.ts';
import { PolyproxyError } from '../../../core/errors.ts';
import { HttpStatusError } from '../../../core/http-error-response.ts';
import type { EndpointHealth } from '../../../core/health.ts';
import { ConnectionLimitError, EndpointPool, evictIdle, isIdle } from '../../../core/pool.ts';
import type { PoolKind, PoolWaiter, WaitTicket } from '../../../core/pool.ts';
import { mayRetry } from '../../../core/retry.ts';
import { writeOwned } from '../../../core/io/stream-handle.ts';
import { ChunkedFramer } from '../chunked.ts';
import type { ChunkSink } from '../chunked.ts';
import { HttpParseError, parseResponseHead } from '../head-parser.ts';
import type { Framing, HeadLimits, HttpHead } from '../head-parser.ts';
import { dialOne } from './dial.ts';
import { lastChunk } from './headers.ts';

export interface H1BackendOptions {
  /** Connections per endpoint, active + idle (0: unlimited); past it requests wait in a FIFO queue. */
  readonly maxConnectionsPerBackend: number;
  /** An idle keep-alive connection closes after this long. */
  readonly idleTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly keepAliveMs: number;
  /** How long a request waits for a connection slot (503 past it). */
  readonly queueTimeoutMs: number;
  /** Requests waiting per endpoint; more get a 503 at once. */
  readonly maxQueue: number;
  /** Largest response head, and most header fields in one. */
  readonly limits: HeadLimits;
  /** Inside a response body, the backend may stay silent this long (the listener's backendTimeoutMs). */
  readonly bodyTimeoutMs: number;
  /** Idle connections kept per endpoint (default: as many as maxConnectionsPerBackend, or unbounded). */
  readonly maxIdlePerBackend?: number;
  /** Opens a connection (default dial.ts's dialOne; the ws-bridge adds TLS for an https API). */
  readonly dial?: (endpoint: Endpoint, timeoutMs: number, keepAliveMs: number) => Promise<Socket>;
}

/** How the request body is framed on the HTTP/1.1 hop. */
export const BODY_NONE = 0;
/** The client's content-length is forwarded: the bytes go as they are. */
export const BODY_LENGTH = 1;
export const BODY_CHUNKED = 2;

/** Where a request body comes from (the client's HTTP/2 stream, or a bridged HTTP/1.1 request): 'data' and 'end' with pause/resume. */
export interface BodySource {
  on(event: 'data' | 'end', listener: (chunk: Buffer) => void): unknown;
  removeListener(event: 'data' | 'end', listener: (chunk: Buffer) => void): unknown;
  pause(): unknown;
  resume(): unknown;
  isPaused(): boolean;
}

/** One request for an HTTP/1.1 backend, and what hears its response (the HTTP/2 exchange, or a bridged HTTP/1.1 request: h1-bridge.ts). */
export interface H1Request {
  readonly method: string;
  /** Request line, header fields and the blank line (latin1). */
  readonly requestHead: string;
  /** BODY_NONE, BODY_LENGTH or BODY_CHUNKED. */
  readonly bodyFraming: number;
  /** Where the body is read from (the client's HTTP/2 stream); null without one. */
  readonly body: BodySource | null;
  /** A body known up front (BODY_LENGTH, `body` null; requestHead carries its content-length): written with the head in one write, and replayable. */
  readonly bodyBytes?: Buffer | null;
  /** A chunked body's trailer fields, read when the body has ended (forwardableTrailers: filtered, names lowercase); null or absent: none. */
  requestTrailers?(): readonly string[] | null;
  /** Waits for a connection ahead of the endpoint's other waiters (core/pool.ts). */
  readonly urgent?: boolean;
  /** A connection carries the request (`reused`: it carried an earlier one); `call` is what send() returns (it may not have returned yet). */
  h1Sent(call: H1Call, reused: boolean): void;
  /** The final response head: an HTTP/2 raw header list (`:status` first), connection-specific fields dropped; `chunked`: the body is chunked, so it may end with trailers. */
  h1Response(status: number, headers: string[], chunked: boolean): void;
  /** Body bytes (the caller may keep `chunk`). */
  h1Data(chunk: Buffer): void;
  /** The response is complete; `trailers`: a chunked body's trailer fields as a raw list (names lowercased, connection-specific ones dropped), null without any. */
  h1End(trailers: string[] | null): void;
  /** The exchange failed: DialError (nothing sent), PolyproxyError, or HttpParseError (status 502). */
  h1Failed(err: Error): void;
}

/** Never relayed to an HTTP/2 client (RFC 9113 §8.2.2). */
const DROP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

const kConn = Symbol('polyproxy.h2.h1conn');
const kCall = Symbol('polyproxy.h2.h1call');
type ConnSocket = Socket & { [kConn]?: H1Conn };
type BodyStream = BodySource & { [kCall]?: H1Call };

/** Connection states. */
const IDLE = 0;
const HEAD = 1;
const BODY = 2;

const CONN_KIND: PoolKind<H1Conn> = {
  reusable(conn) {
    const socket = conn.socket;
    return !conn.broken && !socket.destroyed && socket.writable && !socket.readableEnded;
  },
  close(conn) {
    conn.destroy();
  },
  park() {
    // Reads go on while idle (the socket stays flowing): an EOF or stray bytes evict it (connOn* handlers).
  },
  unpark() {},
  handOver() {},
};

export class H1Backends {
  readonly options: H1BackendOptions;
  readonly pool: EndpointPool<H1Conn>;
  health: EndpointHealth | undefined = undefined;

  constructor(options: H1BackendOptions) {
    this.options = options;
    this.pool = new EndpointPool(CONN_KIND, {
      maxConnectionsPerEndpoint: options.maxConnectionsPerBackend,
      // Idle connections are bounded by the connection limit and idleTimeoutMs, not maxPerBackend: many
      // streams share one client connection, and a connection given back while its endpoint has hundreds
      // of streams in flight is needed again within the tick — closing it past a small idle cap made every
      // burst dial again (connect + close ≈ 7 % of the worker's CPU under h2load -m32).
      maxIdlePerEndpoint: options.maxIdlePerBackend ?? (options.maxConnectionsPerBackend === 0 ? Number.MAX_SAFE_INTEGER : options.maxConnectionsPerBackend),
      idleTimeoutMs: options.idleTimeoutMs,
      queueTimeoutMs: options.queueTimeoutMs,
      maxQueue: options.maxQueue,
    });
  }

  /** Sends `req` to `endpoint`: on an idle connection at once, else once one is open or free. `health` is the router's, current at the call. */
  send(endpoint: Endpoint, health: EndpointHealth | undefined, req: H1Request): H1Call {
    this.health = health;
    const call = new H1Call(this, endpoint, req);
    call.start();
    return call;
  }

  /** Idle connections to `label` (telemetry: will the next request reuse one). */
  hasIdle(label: string): boolean {
    return this.pool.idleCount(label) > 0;
  }

  close(): void {
    this.pool.close();
  }
}

/** One request's life on the backend side: waiting for a slot, dialing, then on a connection. */
export class H1Call implements PoolWaiter<H1Conn> {
  readonly backends: H1Backends;
  readonly endpoint: Endpoint;
  readonly req: H1Request;
  conn: H1Conn | null = null;
  retries = 0;
  /** Cancelled by the exchange, or over: nothing more is reported. */
  over = false;
  #ticket: WaitTicket | null = null;

  constructor(backends: H1Backends, endpoint: Endpoint, req: H1Request) {
    this.backends = backends;
    this.endpoint = endpoint;
    this.req = req;
  }

  start(): void {
    const pool = this.backends.pool;
    const label = this.endpoint.label;
    const conn = pool.take(label);
    if (conn !== null) {
      this.#run(conn, true);
      return;
    }
    if (pool.tryReserve(label)) {
      void this.#dial();
      return;
    }
    const ticket = pool.enqueue(label, this, this.req.urgent === true);
    if (ticket === null) {
      this.#fail(new ConnectionLimitError(label, `${pool.maxQueue} requests already waiting`));
      return;
    }
    this.#ticket = ticket;
  }

  poolGranted(conn: H1Conn | null): void {
    this.#ticket = null;
    if (this.over) {
      if (conn === null) this.backends.pool.release(this.endpoint.label);
      else this.backends.pool.put(this.endpoint.label, conn);
      return;
    }
    if (conn !== null && CONN_KIND.reusable(conn)) {
      this.#run(conn, true);
      return;
    }
    // Handed over but gone meanwhile: its slot is ours, for a new connection.
    if (conn !== null) conn.destroy();
    void this.#dial();
  }

  poolFailed(err: PolyproxyError): void {
    this.#ticket = null;
    this.#fail(err);
  }

  /** Opens a connection under the slot this call holds. */
  async #dial(): Promise<void> {
    const backends = this.backends;
    const endpoint = this.endpoint;
    let socket: Socket;
    try {
      socket = await (backends.options.dial ?? dialOne)(endpoint, backends.options.connectTimeoutMs, backends.options.keepAliveMs);
    } catch (err) {
      backends.health?.failed(endpoint, (err as Error).message);
      backends.pool.release(endpoint.label);
      this.#fail(err as Error);
      return;
    }
    backends.health?.succeeded(endpoint);
    const conn = new H1Conn(backends, endpoint.label, socket);
    if (this.over) {
      backends.pool.put(endpoint.label, conn);
      return;
    }
    this.#run(conn, false);
  }

  #run(conn: H1Conn, reused: boolean): void {
    this.conn = conn;
    conn.begin(this, reused);
  }

  #fail(err: Error): void {
    if (this.over) return;
    this.over = true;
    this.req.h1Failed(err);
  }

  /**
   * The connection failed before the response was complete. True when the
   * request went out again on a new connection (core's retry rule).
   */
  retry(conn: H1Conn, err: Error | null, responded: boolean): boolean {
    const may = mayRetry({
      method: this.req.method,
      requestSent: true,
      reusedConnection: conn.reused,
      connectionClosed: err === null || isConnectionClosed(err),
      responseStarted: responded,
      replayable: this.req.bodyFraming === BODY_NONE || (this.req.bodyBytes !== undefined && this.req.bodyBytes !== null),
      retries: this.retries,
    });
    if (!may || this.over) return false;
    this.retries++;
    this.conn = null;
    conn.destroy();
    // The dead connection's slot carries the new one.
    void this.#dial();
    return true;
  }

  /** The response is complete (the connection went back to the pool or closed). */
  finished(trailers: string[] | null): void {
    this.conn = null;
    if (this.over) return;
    this.over = true;
    this.req.h1End(trailers);
  }

  /** The connection failed mid-exchange (after its slot was given back). */
  failed(err: Error): void {
    this.conn = null;
    this.#fail(err);
  }

  /** The exchange is over on the client side (reset, deadline, error): the backend connection, if any, is closed. */
  cancel(): void {
    if (this.over) return;
    this.over = true;
    const ticket = this.#ticket;
    if (ticket !== null) {
      this.#ticket = null;
      this.backends.pool.cancel(ticket);
    }
    const conn = this.conn;
    if (conn !== null) {
      this.conn = null;
      conn.abort();
    }
  }

  /** Response backpressure: stop reading the backend until `resume`. */
  pause(): void {
    this.conn?.socket.pause();
  }

  resume(): void {
    this.conn?.socket.resume();
  }
}

/** One keep-alive connection to a backend and the exchange it carries. */
export class H1Conn implements ChunkSink {
  readonly backends: H1Backends;
  readonly label: string;
  readonly socket: Socket;
  call: H1Call | null = null;
  /** The connection carried an earlier exchange. */
  reused = false;
  /** Not to be reused (stray bytes, EOF, error). */
  broken = false;
  #state = IDLE;
  #method = '';
  /** Response bytes received for the current exchange (a retry needs none). */
  #gotBytes = false;
  /** Part of a response head, waiting for the rest. */
  #pending: Buffer | null = null;
  #framing: Framing = 'none';
  #remaining = 0;
  #chunked: ChunkedFramer | null = null;
  /** The chunked body's trailer fields so far (raw list), null until one comes. */
  #trailers: string[] | null = null;
  #keepAlive = false;
  #requestDone = false;
  #bodyTimer = false;

  constructor(backends: H1Backends, label: string, socket: Socket) {
    this.backends = backends;
    this.label = label;
    this.socket = socket;
    (socket as ConnSocket)[kConn] = this;
    socket.on('data', connOnData);
    socket.on('end', connOnEnd);
    socket.on('error', connOnError);
    socket.on('close', connOnClose);
    socket.on('drain', connOnDrain);
    socket.on('timeout', connOnTimeout);
  }

  /** Sends `call`'s request. */
  begin(call: H1Call, reused: boolean): void {
    this.call = call;
    this.reused = reused;
    const req = call.req;
    this.#state = HEAD;
    this.#method = req.method;
    this.#gotBytes = false;
    this.#pending = null;
    this.#chunked = null;
    this.#trailers = null;
    const socket = this.socket;
    if (socket.readableFlowing !== true) socket.resume();
    req.h1Sent(call, reused);
    if (call.over) return; // h1Sent may not cancel, but be safe
    const bytes = req.bodyBytes;
    if (bytes !== undefined && bytes !== null) {
      // Head and body in one write (one syscall per request).
      const head = req.requestHead;
      const out = Buffer.allocUnsafe(head.length + bytes.length);
      out.write(head, 0, 'latin1');
      bytes.copy(out, head.length);
      writeOwned(socket, out);
      this.#requestDone = true;
      return;
    }
    // Straight to the libuv handle when nothing is queued (no Writable state, WriteWrap or nextTick per request); body writes after it keep their order.
    writeOwned(socket, Buffer.from(req.requestHead, 'latin1'));
    const body = req.body as BodyStream | null;
    if (body === null || req.bodyFraming === BODY_NONE) {
      this.#requestDone = true;
      return;
    }
    this.#requestDone = false;
    body[kCall] = call;
    body.on('data', bodyOnData);
    body.on('end', bodyOnEnd);
    if (body.isPaused()) body.resume();
  }

  /** A body chunk from the client: framed and written; the client stream pauses while the socket is full. */
  writeBody(body: BodySource, chunk: Buffer): void {
    if (this.#requestDone || chunk.length === 0) return;
    const socket = this.socket;
    let ok: boolean;
    if (this.call?.req.bodyFraming === BODY_CHUNKED) {
      socket.cork();
      socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      socket.write(chunk);
      ok = socket.write('\r\n', 'latin1');
      socket.uncork();
    } else {
      ok = socket.write(chunk);
    }
    if (!ok) body.pause();
  }

  endBody(body: BodySource): void {
    this.#detachBody(body);
    if (this.#requestDone) return;
    this.#requestDone = true;
    const req = this.call?.req;
    if (req?.bodyFraming === BODY_CHUNKED) this.socket.write(lastChunk(req.requestTrailers?.() ?? null), 'latin1');
  }

  #detachBody(body: BodySource): void {
    const stream = body as BodyStream;
    if (stream[kCall] === undefined) return;
    stream[kCall] = undefined;
    stream.removeListener('data', bodyOnData);
    stream.removeListener('end', bodyOnEnd);
  }

  onDrain(): void {
    const body = this.call?.req.body;
    if (body !== null && body !== undefined && !this.#requestDone && body.isPaused()) body.resume();
  }

  onData(chunk: Buffer): void {
    const call = this.call;
    if (call === null) {
      // Idle: unasked bytes; the connection is discarded.
      this.broken = true;
      if (isIdle(this)) evictIdle(this);
      else this.destroy();
      return;
    }
    this.#gotBytes = true;
    try {
      if (this.#state === HEAD) this.#head(call, chunk);
      else this.#body(call, chunk, 0);
    } catch (err) {
      this.#failed(call, err as Error);
    }
  }

  /** Response head bytes (maybe with body bytes after them). */
  #head(call: H1Call, chunk: Buffer): void {
    let buf = chunk;
    const pending = this.#pending;
    if (pending !== null) {
      buf = Buffer.concat([pending, chunk]);
      this.#pending = null;
    }
    const limits = this.backends.options.limits;
    for (;;) {
      const parsed = parseResponseHead(buf, this.#method, limits);
      if (parsed === undefined) {
        this.#pending = buf;
        return;
      }
      const head = parsed.value;
      const rest = parsed.consumed;
      if (head.status < 200) {
        // 1xx interim responses are not relayed (101: we never ask for an upgrade).
        if (head.status === 101) throw new HttpParseError('unexpected 101 from the backend', 502, 'backend');
        if (rest === buf.length) return;
        buf = buf.subarray(rest);
        continue;
      }
      this.#framing = head.framing;
      this.#remaining = head.contentLength;
      this.#keepAlive = head.keepAlive;
      this.#state = BODY;
      if (head.framing === 'chunked') this.#chunked = new ChunkedFramer('backend');
      call.req.h1Response(head.status, h1ResponseHeaders(head), head.framing === 'chunked');
      if (call.over || this.call !== call) return;
      if (head.framing === 'none') {
        if (rest < buf.length) this.broken = true; // bytes past a complete response
        this.#complete(call);
        return;
      }
      if (rest < buf.length) this.#body(call, buf, rest);
      if (this.call === call && this.#state === BODY && !this.#bodyTimer) {
        // The body goes on past this read: the backend must not fall silent for longer than backendTimeoutMs.
        this.#bodyTimer = true;
        this.socket.setTimeout(this.backends.options.bodyTimeoutMs);
      }
      return;
    }
  }

  #body(call: H1Call, buf: Buffer, start: number): void {
    const req = call.req;
    switch (this.#framing) {
      case 'length': {
        const n = Math.min(this.#remaining, buf.length - start);
        if (n > 0) req.h1Data(start === 0 && n === buf.length ? buf : buf.subarray(start, start + n));
        this.#remaining -= n;
        if (this.#remaining === 0 && this.call === call) {
          if (start + n < buf.length) this.broken = true;
          this.#complete(call);
        }
        return;
      }
      case 'chunked': {
        const end = (this.#chunked as ChunkedFramer).feed(buf, start, buf.length, this);
        if (end >= 0 && this.call === call) {
          if (end < buf.length) this.broken = true;
          this.#complete(call);
        }
        return;
      }
      default: // 'close': everything to the EOF
        if (start < buf.length) req.h1Data(start === 0 ? buf : buf.subarray(start));
    }
  }

  /** ChunkSink: decoded chunk data (a view into the read's buffer, which no later read reuses). */
  chunkData(buf: Buffer, start: number, end: number): void {
    const call = this.call;
    if (call === null || call.over) return;
    call.req.h1Data(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
  }

  /** ChunkSink: one trailer field line (rare: strings are fine), kept for the end; connection-specific fields dropped. */
  chunkTrailer(buf: Buffer, start: number, end: number): void {
    const colon = buf.indexOf(0x3a, start);
    const name = buf.toString('latin1', start, colon).toLowerCase();
    if (DROP_RESPONSE.has(name)) return;
    const value = buf.toString('latin1', colon + 1, end).trim();
    if (this.#trailers === null) this.#trailers = [name, value];
    else this.#trailers.push(name, value);
  }

  /** The response is complete: the connection goes back to the pool (or closes), then the exchange hears the end. */
  #complete(call: H1Call): void {
    this.#state = IDLE;
    this.call = null;
    this.#chunked = null;
    const trailers = this.#trailers;
    this.#trailers = null;
    const socket = this.socket;
    if (this.#bodyTimer) {
      this.#bodyTimer = false;
      socket.setTimeout(0);
    }
    // Paused by the exchange on its last chunk: an idle connection must read (to notice an EOF).
    if (socket.isPaused()) socket.resume();
    const body = call.req.body;
    if (body !== null) this.#detachBody(body);
    if (!this.#keepAlive || !this.#requestDone) this.broken = true;
    const pool = this.backends.pool;
    if (this.broken) {
      this.destroy();
      pool.release(this.label);
    } else {
      pool.put(this.label, this);
    }
    call.finished(trailers);
  }

  /** The exchange failed on this connection: closed, its slot given back unless a retry took it. */
  #failed(call: H1Call, err: Error): void {
    this.#detach(call);
    this.broken = true;
    this.destroy();
    this.backends.pool.release(this.label);
    call.failed(err);
  }

  #detach(call: H1Call): void {
    this.call = null;
    this.#state = IDLE;
    const body = call.req.body;
    if (body !== null) this.#detachBody(body);
  }

  onEnd(): void {
    const call = this.call;
    if (call === null) {
      this.broken = true;
      if (isIdle(this)) evictIdle(this);
      return;
    }
    if (this.#state === BODY && this.#framing === 'close') {
      this.#keepAlive = false;
      this.#complete(call);
      return;
    }
    this.#gone(call, null);
  }

  onError(err: Error): void {
    this.broken = true;
    const call = this.call;
    if (call === null) {
      if (isIdle(this)) evictIdle(this);
      return;
    }
    this.#gone(call, err);
  }

  onClose(): void {
    this.broken = true;
    const call = this.call;
    if (call === null) {
      if (isIdle(this)) evictIdle(this);
      return;
    }
    this.#gone(call, null);
  }

  onTimeout(): void {
    const call = this.call;
    if (call === null) return;
    this.#failed(call, new PolyproxyError('TIMEOUT', `the backend sent nothing for ${this.backends.options.bodyTimeoutMs} ms mid-response`, { source: 'backend' }));
  }

  /** The connection closed or failed before the response was complete. */
  #gone(call: H1Call, err: Error | null): void {
    const responded = this.#state === BODY || this.#gotBytes;
    this.#detach(call);
    this.broken = true;
    this.destroy();
    if (call.retry(this, err, responded)) return; // the slot carries the retry's connection
    this.backends.pool.release(this.label);
    const why = err === null ? 'the backend closed the connection' : `backend error: ${err.message}`;
    call.failed(new PolyproxyError('BACKEND_UNREACHABLE', why, { source: 'backend', cause: err ?? undefined }));
  }

  /** The exchange was cancelled while this connection carried it: closed, its slot given back. */
  abort(): void {
    const call = this.call;
    if (call !== null) this.#detach(call);
    this.broken = true;
    this.destroy();
    this.backends.pool.release(this.label);
  }

  destroy(): void {
    const socket = this.socket;
    if (!socket.destroyed) socket.destroy();
  }
}

/**
 * A response head as an HTTP/2 raw header list (name, value, ...: node:http2
 * takes it without building and validating an object): names lowercased,
 * connection-specific fields and those Connection names dropped, repeated
 * fields as repeated entries.
 */
export function h1ResponseHeaders(head: HttpHead): string[] {
  const out: string[] = [':status', String(head.status)];
  const raw = head.raw;
  const f = head.fields;
  const nominated = head.connection;
  for (let k = 0; k < f.length; k += 4) {
    const name = raw.toString('latin1', f[k] as number, f[k + 1] as number).toLowerCase();
    if (DROP_RESPONSE.has(name) || (nominated.length > 0 && nominated.includes(name))) continue;
    out.push(name, raw.toString('latin1', f[k + 2] as number, f[k + 3] as number));
  }
  return out;
}

/** The HTTP/1.1 client's failures as the proxy's kinds (a parse error keeps its 502, a queue refusal its 503, a silent body its TIMEOUT); anything else 502. */
export function h1Error(err: Error, resourceId: string | undefined): PolyproxyError {
  if (err instanceof PolyproxyError) {
    if (err.resourceId !== undefined || resourceId === undefined) return err;
    if (err instanceof HttpStatusError) return new HttpStatusError(err.kind, err.status, err.message, { source: err.source, resourceId, cause: err });
    return new PolyproxyError(err.kind, err.message, { source: err.source, resourceId, cause: err, retryable: err.retryable });
  }
  return new PolyproxyError('BACKEND_UNREACHABLE', `backend error: ${err.message}`, { source: 'backend', resourceId, cause: err });
}

function isConnectionClosed(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ECONNRESET' || code === 'EPIPE';
}

function connOnData(this: ConnSocket, chunk: Buffer): void {
  this[kConn]?.onData(chunk);
}
function connOnEnd(this: ConnSocket): void {
  this[kConn]?.onEnd();
}
function connOnError(this: ConnSocket, err: Error): void {
  this[kConn]?.onError(err);
}
function connOnClose(this: ConnSocket): void {
  this[kConn]?.onClose();
}
function connOnDrain(this: ConnSocket): void {
  this[kConn]?.onDrain();
}
function connOnTimeout(this: ConnSocket): void {
  this[kConn]?.onTimeout();
}
function bodyOnData(this: BodyStream, chunk: Buffer): void {
  const conn = this[kCall]?.conn;
  if (conn !== null && conn !== undefined) conn.writeBody(this, chunk);
}
function bodyOnEnd(this: BodyStream): void {
  const conn = this[kCall]?.conn;
  if (conn !== null && conn !== undefined) conn.endBody(this);
}
