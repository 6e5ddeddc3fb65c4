/**
 * One client connection of the http listener: a loop of requests, each
 * routed on its own Host. Per request:
 *
 *   parse head → router.route(host) → pooled or new backend connection →
 *   write the rewritten head → stream the body (framed by Content-Length or
 *   the chunked framer, never buffered whole) → parse the response head →
 *   stream the response → backend back to the pool → next request.
 *
 * A 101 answer to an Upgrade request hands both sockets to core's Relay.
 * Socket handlers are module-level functions that find their session
 * through a symbol field. Backpressure both ways: a false write() pauses the
 * other side until 'drain'.
 */
import type { Socket } from 'node:net';
import type { Endpoint } from '../../core/endpoint.ts';
import { PolyproxyError, toPolyproxyError } from '../../core/errors.ts';
import type { ProtocolSession } from '../../core/protocol.ts';
import type { ResolveContext } from '../../core/resolver.ts';
import type { RouteDecision } from '../../core/router.ts';
import { backendOnRead as relayBackendOnRead, Relay } from '../../core/relay.ts';
import type { RelayOwner } from '../../core/relay.ts';
import { borrowBytes, reclaimLent, settleBorrowed } from '../../core/io/shared-read-buffer.ts';
import { adoptSharedReadBuffer } from '../../core/io/socket-onread.ts';
import { ChunkedFramer } from './chunked.ts';
import { errorResponse } from './errors.ts';
import type { HeadLimits, HttpHead } from './head-parser.ts';
import { parseRequestHead, parseResponseHead } from './head-parser.ts';
import { ConnectionLimitError, idleSocketEvent } from './pool.ts';
import type { BackendPool, Grant, PoolWaiter } from './pool.ts';
import { forwardingFields, requestHeadBytes, responseHeadBytes } from './rewrite.ts';
import type { ForwardInfo } from './rewrite.ts';

export interface HttpSettings {
  readonly limits: HeadLimits;
  /** A request head must arrive within this long (408 when partly sent, a quiet close when idle). */
  readonly requestTimeoutMs: number;
  /** An idle keep-alive client connection is closed after this long. */
  readonly keepAliveTimeoutMs: number;
  /** A backend silent for this long while a request is in flight: 504 (or a cut connection mid-response). */
  readonly backendTimeoutMs: number;
  readonly telemetryHeaders: boolean;
  readonly proto: 'http' | 'https';
}

const kSession = Symbol('polyproxy.http.session');
/** Set on a backend socket while the backend handlers are attached: they stay across pooled reuse. */
const kHandlers = Symbol('polyproxy.http.handlers');
type SessionSocket = Socket & { [kSession]?: HttpSession | undefined; [kHandlers]?: boolean };

const EMPTY = Buffer.alloc(0);

// Client side states.
const READ_HEAD = 0;
const ROUTING = 1;
const REQ_BODY = 2;
const REQ_DONE = 3;
const UPGRADED = 4;
const FINISHED = 5;

// Backend side states.
const RESP_HEAD = 0;
const RESP_BODY = 1;

// What the session's deadline guards.
const NO_DEADLINE = 0;
/** READ_HEAD: a request head must complete (408), or an idle keep-alive connection closes. */
const CLIENT_DEADLINE = 1;
/** A request is in flight: the backend must not stay silent longer (504). */
const BACKEND_DEADLINE = 2;

export class HttpSession implements RelayOwner {
  readonly client: Socket;
  readonly settings: HttpSettings;
  readonly pool: BackendPool;
  readonly core: ProtocolSession;
  readonly done: Promise<void>;
  #resolveDone!: () => void;
  state = READ_HEAD;
  /** Client bytes read but not consumed (a partial head, or what was pipelined). */
  buf: Buffer = EMPTY;
  #scanned = 0;
  req: HttpHead | null = null;
  resourceId: string | undefined = undefined;
  reqRemaining = 0;
  reqFramer: ChunkedFramer | null = null;
  reqDone = false;
  clientEnded = false;
  backend: Socket | null = null;
  backendLabel = '';
  backendReused = false;
  /** The request head as sent, to retry once on a fresh connection when a pooled one was stale. */
  #sentHead: Buffer = EMPTY;
  /** Set when `req.raw` is a view into the shared read buffer (copied before the request waits for anything). */
  #reqTransient = false;
  /** Per connection: the client address and scheme, and the forwarding fields last built (for `#forwardingHost`). */
  #forwardInfo: ForwardInfo | null = null;
  #forwarding: Buffer | null = null;
  #forwardingHost: string | undefined = undefined;
  #rawHost: string | undefined = undefined;
  #normalizedHost: string | undefined = undefined;
  bState = RESP_HEAD;
  bBuf: Buffer = EMPTY;
  #bScanned = 0;
  res: HttpHead | null = null;
  resRemaining = 0;
  resFramer: ChunkedFramer | null = null;
  responseStarted = false;
  #gotBackendBytes = false;
  closeAfter = false;
  /** One lazy timer per session (see #setDeadline): what it guards, and until when (Date.now() ms). */
  #timer: NodeJS.Timeout | null = null;
  #timerAt = 0;
  #deadlineKind = NO_DEADLINE;
  #deadline = 0;
  #deadlineMs = 0;
  #resolveMs = 0;
  #cacheHit = false;
  /** While waiting for a connection slot (the endpoint was at its limit). */
  #waiter: PoolWaiter | null = null;
  #waitReject: ((err: PolyproxyError) => void) | null = null;
  /** An upgraded connection keeps its slot until the relay closes. */
  #upgradedSlot = false;
  #ctx: ResolveContext | null = null;

  constructor(client: Socket, leftover: Buffer | null, settings: HttpSettings, pool: BackendPool, core: ProtocolSession) {
    this.client = client;
    this.settings = settings;
    this.pool = pool;
    this.core = core;
    this.done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
    (client as SessionSocket)[kSession] = this;
    // Plain TCP reads through the shared buffer (parsed in place, copied only
    // when bytes must outlive the callback); TLS sockets use 'data' events.
    if (!adoptSharedReadBuffer(client, clientOnRead)) client.on('data', clientOnData);
    client.on('end', clientOnEnd);
    client.on('error', clientOnError);
    client.on('close', clientOnClose);
    client.on('drain', clientOnDrain);
    client.setNoDelay?.(true);
    this.#setDeadline(CLIENT_DEADLINE, settings.requestTimeoutMs);
    if (leftover !== null) this.onClientBytes(leftover, false);
    if (this.state === READ_HEAD) client.resume();
  }

  // ---- client side ---------------------------------------------------------

  /**
   * `transient`: the chunk is a view into the shared read buffer, valid only
   * during this call — what must outlive it (a partial head, pipelined
   * bytes) is copied, body bytes are written through the borrowed spare.
   */
  onClientBytes(chunk: Buffer, transient: boolean): void {
    switch (this.state) {
      case READ_HEAD:
        if (this.buf.length === 0) {
          this.#tryHead(chunk, transient);
        } else {
          this.buf = Buffer.concat([this.buf, chunk]);
          this.#tryHead(this.buf, false);
        }
        return;
      case REQ_BODY:
        this.#feedBody(chunk, transient);
        return;
      case ROUTING:
      case REQ_DONE:
        // Pipelined: keep it for after the response, and stop reading. One read is
        // kept whatever its size (reads are at most 256 KiB); more than that must fit the limit.
        if (this.buf.length === 0) {
          this.buf = transient ? Buffer.from(chunk) : chunk;
        } else {
          this.buf = Buffer.concat([this.buf, chunk]);
          if (this.buf.length > this.settings.limits.maxHeadBytes * 2) {
            this.#fail(new PolyproxyError('PROTOCOL', 'too many pipelined bytes', { source: 'client' }));
            return;
          }
        }
        this.client.pause();
        return;
      default:
        return;
    }
  }

  /** Parses a request head from `buf` (this.buf itself, or a transient read while this.buf is empty). */
  #tryHead(buf: Buffer, transient: boolean): void {
    if (buf.length === 0) return;
    let parsed: { value: HttpHead; consumed: number } | undefined;
    try {
      parsed = parseRequestHead(buf, this.settings.limits, this.#scanned);
    } catch (err) {
      this.#fail(toPolyproxyError(err));
      return;
    }
    if (parsed === undefined) {
      this.buf = transient ? Buffer.from(buf) : buf;
      this.#scanned = buf.length;
      // From the first bytes of a head on, the request timeout runs (not the keep-alive one).
      if (this.#deadlineKind !== CLIENT_DEADLINE || this.#deadlineMs !== this.settings.requestTimeoutMs) this.#setDeadline(CLIENT_DEADLINE, this.settings.requestTimeoutMs);
      return;
    }
    this.#scanned = 0;
    this.#deadlineKind = NO_DEADLINE;
    const head = parsed.value;
    const rest = parsed.consumed === buf.length ? EMPTY : buf.subarray(parsed.consumed);
    this.buf = transient && rest.length > 0 ? Buffer.from(rest) : rest;
    this.req = head;
    this.#reqTransient = transient;
    this.state = ROUTING;
    // A body is read once the backend can take it (#sendRequest resumes). A request without one
    // keeps the client reading: no readStop/readStart per request; a client that pipelines is
    // paused when those bytes arrive (onClientBytes).
    if (head.framing !== 'none') this.client.pause();
    this.#route(head);
  }

  #route(head: HttpHead): void {
    // A connection usually names one Host: normalized once, while it stays the same.
    let host: string | undefined;
    if (head.host !== undefined && head.host === this.#rawHost) {
      host = this.#normalizedHost;
    } else {
      host = normalizeHost(head.host);
      this.#rawHost = head.host;
      this.#normalizedHost = host;
    }
    this.resourceId = host;
    if (host === undefined) {
      this.#fail(new PolyproxyError('PROTOCOL', 'missing or invalid Host header', { source: 'client' }));
      return;
    }
    const started = this.settings.telemetryHeaders ? performance.now() : 0;
    // Fast path: a cached route and an idle pooled connection need no promise.
    const decision = this.core.router.cached(host, this.#resolveContext());
    if (decision !== undefined) {
      const label = (decision.candidates[0] as Endpoint).label;
      const socket = this.pool.take(label);
      if (socket !== null) {
        this.#routed(decision, started);
        this.backendLabel = label;
        this.backendReused = true;
        this.#adoptBackend(socket);
        this.#sendRequest(head);
        return;
      }
    }
    // Slow path (resolve, connect or wait for a slot): nothing more is read meanwhile.
    this.client.pause();
    // The head is needed after this call: off the shared read buffer.
    if (this.#reqTransient) {
      head.raw = Buffer.from(head.raw);
      this.#reqTransient = false;
    }
    void this.#routeAsync(head, host, decision, started);
  }

  #resolveContext(): ResolveContext {
    let ctx = this.#ctx;
    if (ctx === null) {
      ctx = this.core.resolveContext();
      this.#ctx = ctx;
    }
    return ctx;
  }

  #routed(decision: RouteDecision, started: number): void {
    this.core.served(decision.entry.resourceId);
    if (this.settings.telemetryHeaders) {
      this.#resolveMs = performance.now() - started;
      this.#cacheHit = decision.cacheHit;
    }
  }

  async #routeAsync(head: HttpHead, host: string, cached: RouteDecision | undefined, started: number): Promise<void> {
    try {
      const decision = cached ?? (await this.core.router.route(host, this.#resolveContext()));
      this.#routed(decision, started);
      const timeoutMs = decision.entry.route.timeoutMs ?? this.core.connectTimeoutMs;
      await this.#attachBackend(decision, timeoutMs);
    } catch (err) {
      const error = toPolyproxyError(err);
      this.#fail(error.resourceId === undefined && error.kind !== 'PROTOCOL' ? new PolyproxyError(error.kind, error.message, { source: error.source, resourceId: host, cause: error }) : error);
      return;
    }
    if (this.state === FINISHED) return;
    this.#sendRequest(head);
  }

  /** The backend is attached: the head, and whatever body is already here, leave in one write (writev). */
  #sendRequest(head: HttpHead): void {
    let info = this.#forwardInfo;
    if (info === null) {
      info = { clientAddress: this.client.remoteAddress ?? '', proto: this.settings.proto };
      this.#forwardInfo = info;
    }
    let forwarding = this.#forwarding;
    if (forwarding === null || this.#forwardingHost !== head.host) {
      forwarding = forwardingFields(head.host, info);
      this.#forwarding = forwarding;
      this.#forwardingHost = head.host;
    }
    this.#sentHead = requestHeadBytes(head, info, forwarding);
    const backend = this.backend as Socket;
    if (head.framing === 'none') {
      this.#startBackendRequest();
      this.#requestComplete(this.buf);
    } else {
      backend.cork();
      this.#startBackendRequest();
      this.state = REQ_BODY;
      this.reqRemaining = head.contentLength;
      this.reqFramer = head.framing === 'chunked' ? new ChunkedFramer('client') : null;
      const pending = this.buf;
      this.buf = EMPTY;
      if (pending.length > 0) this.#feedBody(pending, false);
      if (this.state === REQ_BODY && this.backend !== null && this.backend.writableNeedDrain !== true) this.client.resume();
      backend.uncork();
    }
  }

  /**
   * Slot accounting (pool.ts): from here on this request holds a slot on
   * `backendLabel` — with the socket in `backend` once adopted, until
   * #releaseBackend gives both back (or the relay closes, after an upgrade).
   */
  async #attachBackend(decision: RouteDecision, timeoutMs: number): Promise<void> {
    const first = decision.candidates[0] as Endpoint;
    const pool = this.pool;
    let socket = pool.take(first.label);
    this.backendLabel = first.label;
    if (socket === null && !pool.tryReserve(first.label)) {
      socket = await this.#waitForSlot(first.label);
      if (this.state === FINISHED) {
        if (socket === null) pool.release(first.label);
        else pool.put(first.label, socket);
        return;
      }
    }
    this.backendReused = socket !== null;
    if (socket === null) socket = await this.#connectWithSlot(decision, timeoutMs);
    if (this.state === FINISHED) {
      pool.put(this.backendLabel, socket); // unused: idle, or straight to a waiter
      return;
    }
    this.#adoptBackend(socket);
  }

  /** Opens a connection under the slot held on `backendLabel`; the slot is given back when it fails. */
  async #connectWithSlot(decision: RouteDecision, timeoutMs: number): Promise<Socket> {
    let connected;
    try {
      connected = await this.core.router.connect(decision, timeoutMs);
    } catch (err) {
      this.pool.release(this.backendLabel);
      throw err;
    }
    const label = connected.endpoint.label;
    if (label !== this.backendLabel) {
      // Failover to another candidate: the slot follows the connection.
      this.pool.release(this.backendLabel);
      this.pool.adopt(label);
      this.backendLabel = label;
    }
    return connected.socket;
  }

  /** Closes a connection that was never used and frees its slot. */
  #dropConnection(socket: Socket): void {
    socket.on('error', noop);
    socket.destroy();
    this.pool.release(this.backendLabel);
  }

  #waitForSlot(label: string): Promise<Grant> {
    return new Promise<Grant>((resolve, reject) => {
      const waiter = this.pool.enqueue(
        label,
        (grant) => {
          this.#waiter = null;
          this.#waitReject = null;
          resolve(grant);
        },
        (err) => {
          this.#waiter = null;
          this.#waitReject = null;
          reject(err);
        },
      );
      if (waiter === null) {
        reject(new ConnectionLimitError(label, `${this.pool.maxQueue} requests already waiting`));
        return;
      }
      this.#waiter = waiter;
      this.#waitReject = reject;
    });
  }

  #adoptBackend(socket: Socket): void {
    this.backend = socket;
    const owned = socket as SessionSocket;
    owned[kSession] = this;
    if (owned[kHandlers] !== true) {
      // Attached once per connection; between requests (idle in the pool) they dispatch to the pool.
      // Backend sockets read through the shared buffer (connect.ts creates them with onread): the
      // callback is switched from the relay's to ours, so no Buffer or 'data' event per read.
      owned[kHandlers] = true;
      if (!adoptSharedReadBuffer(socket, backendOnRead)) socket.on('data', backendOnData);
      socket.on('end', backendOnEnd);
      socket.on('error', backendOnError);
      socket.on('close', backendOnClose);
      socket.on('drain', backendOnDrain);
    }
    this.#setDeadline(BACKEND_DEADLINE, this.settings.backendTimeoutMs);
    this.bState = RESP_HEAD;
    this.bBuf = EMPTY;
    this.#bScanned = 0;
    this.#gotBackendBytes = false;
    if (socket.readableFlowing !== true) socket.resume();
  }

  /** Gives the backend connection and its slot back: to the pool when `reuse`, else closed (`keepSlot`: the slot stays with this request, for a retry). */
  #releaseBackend(reuse: boolean, keepSlot = false): void {
    const socket = this.backend;
    if (socket === null) return;
    this.backend = null;
    (socket as SessionSocket)[kSession] = undefined;
    if (this.#deadlineKind === BACKEND_DEADLINE) this.#deadlineKind = NO_DEADLINE;
    if (reuse) {
      // The pool times idle sockets out; the handlers stay and dispatch to the pool.
      this.pool.put(this.backendLabel, socket, true);
    } else {
      socket.on('error', noop);
      socket.destroy();
      if (!keepSlot) this.pool.release(this.backendLabel);
    }
  }

  #startBackendRequest(): void {
    (this.backend as Socket).write(this.#sentHead);
  }

  #feedBody(chunk: Buffer, transient: boolean): void {
    const backend = this.backend as Socket;
    let end: number;
    if (this.reqFramer !== null) {
      try {
        end = this.reqFramer.feed(chunk);
      } catch (err) {
        this.#fail(toPolyproxyError(err));
        return;
      }
    } else if (chunk.length < this.reqRemaining) {
      end = -1;
      this.reqRemaining -= chunk.length;
    } else {
      end = this.reqRemaining;
      this.reqRemaining = 0;
    }
    const body = end < 0 || end === chunk.length ? chunk : chunk.subarray(0, end);
    let ok = true;
    if (body.length > 0) {
      this.#touchBackend();
      if (transient) {
        ok = backend.write(borrowBytes(body));
        settleBorrowed(backend);
      } else {
        ok = backend.write(body);
      }
    }
    if (end >= 0) {
      const rest = end === chunk.length ? EMPTY : chunk.subarray(end);
      this.#requestComplete(transient && rest.length > 0 ? Buffer.from(rest) : rest);
    } else if (!ok) {
      this.client.pause();
    }
  }

  /** The whole request reached the backend; `rest` is what the client pipelined after it (the client is paused when there is some). */
  #requestComplete(rest: Buffer): void {
    this.reqDone = true;
    this.state = REQ_DONE;
    this.buf = rest;
    if (rest.length > 0) this.client.pause();
  }

  // ---- backend side --------------------------------------------------------

  /** `transient` as for onClientBytes. */
  onBackendBytes(chunk: Buffer, transient: boolean): void {
    this.#gotBackendBytes = true;
    this.#touchBackend();
    if (this.bState === RESP_BODY) {
      this.#feedResponse(chunk, transient);
      return;
    }
    if (this.bBuf.length === 0) {
      this.#tryResponseHead(chunk, transient);
    } else {
      this.bBuf = Buffer.concat([this.bBuf, chunk]);
      this.#tryResponseHead(this.bBuf, false);
    }
  }

  /** A silent backend times out from its last activity, as a socket timeout would. */
  #touchBackend(): void {
    if (this.#deadlineKind === BACKEND_DEADLINE) this.#deadline = Date.now() + this.#deadlineMs;
  }

  #tryResponseHead(buf: Buffer, transient: boolean): void {
    const req = this.req as HttpHead;
    while (buf.length > 0) {
      let parsed: { value: HttpHead; consumed: number } | undefined;
      try {
        parsed = parseResponseHead(buf, req.method, this.settings.limits, this.#bScanned);
      } catch (err) {
        this.#backendFailed(toPolyproxyError(err));
        return;
      }
      if (parsed === undefined) {
        this.bBuf = transient ? Buffer.from(buf) : buf;
        this.#bScanned = buf.length;
        return;
      }
      this.#bScanned = 0;
      // `head.raw` may be a view into the shared read buffer: used during this call only.
      const head = parsed.value;
      const rest = parsed.consumed === buf.length ? EMPTY : buf.subarray(parsed.consumed);
      buf = rest;
      this.bBuf = EMPTY;
      if (head.status === 101) {
        if (req.upgrade === undefined) {
          this.#backendFailed(new PolyproxyError('BACKEND_UNREACHABLE', 'backend switched protocols without an Upgrade request', { source: 'backend' }));
          return;
        }
        this.#upgrade(head, transient && rest.length > 0 ? Buffer.from(rest) : rest);
        return;
      }
      if (head.status < 200) {
        // Interim responses (100 Continue, 103 Early Hints) pass through to HTTP/1.1 clients (RFC 9110 §15.2).
        if (req.minor === 1) this.client.write(responseHeadBytes(head, 1, false, ''));
        continue;
      }
      this.res = head;
      this.closeAfter = !req.keepAlive || head.framing === 'close' || this.clientEnded;
      const client = this.client;
      const extra = this.#telemetry();
      if (head.framing === 'length' && rest.length === head.contentLength) {
        // The whole response is here (the common small response): one buffer, one write.
        const out = responseHeadBytes(head, req.minor, this.closeAfter, extra, rest.length);
        rest.copy(out, out.length - rest.length);
        this.responseStarted = true;
        this.bState = RESP_BODY;
        client.write(out);
        this.#responseComplete(EMPTY);
        return;
      }
      const headBytes = responseHeadBytes(head, req.minor, this.closeAfter, extra);
      if (head.framing === 'none' || rest.length === 0) {
        this.responseStarted = true;
        this.bState = RESP_BODY;
        this.resRemaining = head.contentLength;
        this.resFramer = head.framing === 'chunked' ? new ChunkedFramer('backend') : null;
        client.write(headBytes);
        if (head.framing === 'none') this.#responseComplete(rest);
        return;
      }
      // Head and the first body bytes in one writev. Corked, a borrowed buffer would stay
      // queued past this call, so these bytes get their own copy.
      client.cork();
      client.write(headBytes);
      this.responseStarted = true;
      this.bState = RESP_BODY;
      this.resRemaining = head.contentLength;
      this.resFramer = head.framing === 'chunked' ? new ChunkedFramer('backend') : null;
      this.#feedResponse(transient ? Buffer.from(rest) : rest, false);
      client.uncork();
      return;
    }
  }

  #telemetry(): string {
    if (!this.settings.telemetryHeaders) return '';
    return `x-proxy-resolve-ms: ${this.#resolveMs.toFixed(3)}\r\nx-proxy-cache: ${this.#cacheHit ? 'hit' : 'miss'}\r\nx-proxy-pool: ${this.backendReused ? 'reused' : 'new'}\r\n`;
  }

  #feedResponse(chunk: Buffer, transient: boolean): void {
    const head = this.res as HttpHead;
    let end: number;
    if (head.framing === 'close') {
      end = -1;
    } else if (this.resFramer !== null) {
      try {
        end = this.resFramer.feed(chunk);
      } catch (err) {
        this.#backendFailed(toPolyproxyError(err));
        return;
      }
    } else if (chunk.length < this.resRemaining) {
      end = -1;
      this.resRemaining -= chunk.length;
    } else {
      end = this.resRemaining;
      this.resRemaining = 0;
    }
    const body = end < 0 || end === chunk.length ? chunk : chunk.subarray(0, end);
    let ok = true;
    if (body.length > 0) {
      if (transient) {
        ok = this.client.write(borrowBytes(body));
        settleBorrowed(this.client);
      } else {
        ok = this.client.write(body);
      }
    }
    // Bytes past the response only matter by being there: the connection is not reused.
    if (end >= 0) this.#responseComplete(end === chunk.length ? EMPTY : chunk.subarray(end));
    else if (!ok) this.backend?.pause();
  }

  /** The response's framing says it is complete; `extra` is anything the backend sent past it. */
  #responseComplete(extra: Buffer): void {
    const reusable = this.reqDone && extra.length === 0 && (this.res as HttpHead).keepAlive;
    this.#releaseBackend(reusable);
    if (!this.reqDone) this.closeAfter = true;
    this.#nextRequest();
  }

  #nextRequest(): void {
    if (this.state === FINISHED) return;
    if (this.closeAfter || !this.reqDone) {
      this.#finish(true);
      return;
    }
    this.req = null;
    this.res = null;
    this.resFramer = null;
    this.reqFramer = null;
    this.reqDone = false;
    this.responseStarted = false;
    this.bState = RESP_HEAD;
    this.state = READ_HEAD;
    this.#scanned = 0;
    this.#setDeadline(CLIENT_DEADLINE, this.buf.length > 0 ? this.settings.requestTimeoutMs : this.settings.keepAliveTimeoutMs);
    if (this.buf.length > 0) this.#tryHead(this.buf, false);
    if (this.state === READ_HEAD) {
      const client = this.client;
      if (this.clientEnded) this.#finish(true);
      // A client that does not read its responses is not read from either ('drain' resumes it).
      else if (client.writableNeedDrain === true) client.pause();
      else if (client.readableFlowing !== true) client.resume();
    }
  }

  #upgrade(head: HttpHead, rest: Buffer): void {
    const req = this.req as HttpHead;
    this.client.write(responseHeadBytes(head, req.minor, false, ''));
    if (rest.length > 0) this.client.write(rest);
    const backend = this.backend as Socket;
    this.backend = null;
    (backend as SessionSocket)[kSession] = undefined;
    (backend as SessionSocket)[kHandlers] = false;
    backend.removeListener('data', backendOnData);
    backend.removeListener('end', backendOnEnd);
    backend.removeListener('error', backendOnError);
    backend.removeListener('close', backendOnClose);
    backend.removeListener('drain', backendOnDrain);
    // Reads go back to the relay's callback (a no-op when the socket uses 'data' events).
    adoptSharedReadBuffer(backend, relayBackendOnRead);
    this.#clearDeadline();
    backend.pause();
    const client = this.client;
    this.#detachClient();
    client.pause();
    this.state = UPGRADED;
    this.#upgradedSlot = true;
    const replay = this.buf.length > 0 ? this.buf : null;
    this.buf = EMPTY;
    const relay = new Relay(client, backend, this, this.core.idleTimeoutMs, null);
    relay.start(replay);
  }

  /** Core's Relay calls this when an upgraded connection is over. */
  relayClosed(): void {
    if (this.#upgradedSlot) {
      this.#upgradedSlot = false;
      this.pool.release(this.backendLabel);
    }
    this.state = FINISHED;
    this.#resolveDone();
  }

  #backendFailed(err: PolyproxyError): void {
    this.#releaseBackend(false);
    if (!this.responseStarted) this.#fail(err);
    else this.#finish(false);
  }

  onBackendEnd(): void {
    if (this.bState === RESP_BODY && (this.res as HttpHead).framing === 'close') {
      this.#releaseBackend(false);
      this.closeAfter = true;
      this.#finish(true);
      return;
    }
    this.onBackendGone(null);
  }

  onBackendGone(err: Error | null): void {
    if (this.backend === null) return;
    // A pooled connection the backend closed while idle: retry once on a fresh one,
    // only when nothing came back and the request had no body (so nothing is sent twice that matters).
    const req = this.req as HttpHead;
    if (this.backendReused && !this.#gotBackendBytes && req.framing === 'none' && this.state !== FINISHED) {
      this.#releaseBackend(false, true);
      this.backendReused = false;
      void this.#retry();
      return;
    }
    this.#backendFailed(
      new PolyproxyError('BACKEND_UNREACHABLE', err === null ? 'the backend closed the connection before the response was complete' : `backend error: ${err.message}`, {
        source: 'backend',
        resourceId: this.resourceId,
      }),
    );
  }

  /** Runs under the slot the stale connection held on `backendLabel`. */
  async #retry(): Promise<void> {
    try {
      let decision;
      try {
        decision = await this.core.router.route(this.resourceId as string, this.#resolveContext());
      } catch (err) {
        this.pool.release(this.backendLabel);
        throw err;
      }
      const socket = await this.#connectWithSlot(decision, decision.entry.route.timeoutMs ?? this.core.connectTimeoutMs);
      if (this.state === FINISHED) {
        this.#dropConnection(socket);
        return;
      }
      this.#adoptBackend(socket);
      this.#startBackendRequest();
    } catch (err) {
      this.#fail(toPolyproxyError(err));
    }
  }

  onBackendTimeout(): void {
    const err = new PolyproxyError('TIMEOUT', `the backend did not answer within ${this.settings.backendTimeoutMs} ms`, { source: 'backend', resourceId: this.resourceId });
    this.#backendFailed(err);
  }

  // ---- endings -------------------------------------------------------------

  /** Answers with the error page when no response byte was sent yet, then closes. */
  #fail(err: PolyproxyError): void {
    if (this.state === FINISHED) return;
    this.core.failed(err);
    this.#releaseBackend(false);
    if (this.responseStarted || this.client.destroyed) {
      this.#finish(false);
      return;
    }
    const req = this.req;
    const accept = req?.accept;
    this.responseStarted = true;
    this.client.write(errorResponse(err, err.resourceId ?? this.resourceId, accept, req?.method === 'HEAD'));
    this.#finish(true);
  }

  /** Ends the session: `graceful` flushes and ends the client, otherwise it is cut. */
  #finish(graceful: boolean): void {
    if (this.state === FINISHED) return;
    this.state = FINISHED;
    this.#clearDeadline();
    this.#releaseBackend(false);
    if (this.#waiter !== null) {
      // Client gone while waiting for a slot: out of the queue; #route's catch sees FINISHED.
      this.pool.cancel(this.#waiter);
      const reject = this.#waitReject as (err: PolyproxyError) => void;
      this.#waiter = null;
      this.#waitReject = null;
      reject(new PolyproxyError('INTERNAL', 'the client went away while waiting for a backend connection', { source: 'client' }));
    }
    const client = this.client;
    this.#detachClient();
    client.on('error', noop);
    if (graceful && !client.destroyed) {
      client.end();
      client.resume(); // discard what the client still sends, so its FIN arrives
    } else {
      client.destroy();
    }
    this.#resolveDone();
  }

  /** Cut both sides (client error or close, shutdown). */
  abort(): void {
    if (this.state === FINISHED || this.state === UPGRADED) return;
    this.#finish(false);
  }

  onClientEnd(): void {
    this.clientEnded = true;
    if (this.state === READ_HEAD) {
      if (this.buf.length > 0) this.#fail(new PolyproxyError('PROTOCOL', 'client closed the connection in the middle of a request head', { source: 'client' }));
      else this.#finish(true);
    } else if (this.state === REQ_BODY) {
      this.#finish(false);
    }
    // ROUTING / REQ_DONE: answer this request, then close.
  }

  onClientDrain(): void {
    if (this.state === FINISHED) return;
    if (this.bState === RESP_BODY) this.backend?.resume();
    else if (this.state === READ_HEAD && !this.clientEnded) this.client.resume();
  }

  onBackendDrain(): void {
    if (this.state === REQ_BODY) this.client.resume();
  }

  /**
   * Sets what the session's deadline guards and when it passes. The timer
   * is lazy: moving the deadline later (every request, every backend read)
   * only stores a number; when the timer fires early it re-arms itself for
   * the rest. A new Timeout is made only when the deadline moves earlier
   * than the armed one — no clearTimeout/setTimeout pair per request.
   */
  #setDeadline(kind: number, ms: number): void {
    const now = Date.now();
    this.#deadlineKind = kind;
    this.#deadlineMs = ms;
    this.#deadline = now + ms;
    if (this.#timer !== null) {
      if (this.#timerAt <= this.#deadline) return;
      clearTimeout(this.#timer);
    }
    this.#timerAt = now + ms;
    this.#timer = setTimeout(sessionOnTimeout, ms, this);
  }

  /** No deadline any more (the session ends, or the relay takes over). */
  #clearDeadline(): void {
    this.#deadlineKind = NO_DEADLINE;
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
  }

  onTimeout(): void {
    this.#timer = null;
    const kind = this.#deadlineKind;
    if (kind === NO_DEADLINE || this.state === FINISHED) return;
    const now = Date.now();
    if (now < this.#deadline) {
      this.#timerAt = this.#deadline;
      this.#timer = setTimeout(sessionOnTimeout, this.#deadline - now, this);
      return;
    }
    this.#deadlineKind = NO_DEADLINE;
    if (kind === BACKEND_DEADLINE) {
      if (this.backend !== null) this.onBackendTimeout();
      return;
    }
    if (this.state !== READ_HEAD) return;
    if (this.buf.length > 0) this.#fail(new PolyproxyError('HANDSHAKE_TIMEOUT', `request head not received within ${this.settings.requestTimeoutMs} ms`, { source: 'client' }));
    else this.#finish(true);
  }

  #detachClient(): void {
    const client = this.client as SessionSocket;
    client[kSession] = undefined;
    client.removeListener('data', clientOnData);
    client.removeListener('end', clientOnEnd);
    client.removeListener('error', clientOnError);
    client.removeListener('close', clientOnClose);
    client.removeListener('drain', clientOnDrain);
  }
}

/** The resource id: Host lowercased, port stripped (DESIGN.md §3); undefined when unusable. */
export function normalizeHost(host: string | undefined): string | undefined {
  if (host === undefined || host === '') return undefined;
  let name = host;
  if (name.startsWith('[')) {
    const close = name.indexOf(']');
    if (close < 0) return undefined;
    name = name.slice(0, close + 1);
  } else {
    const colon = name.lastIndexOf(':');
    if (colon >= 0) {
      if (!/^[0-9]*$/.test(name.slice(colon + 1))) return undefined;
      name = name.slice(0, colon);
    }
  }
  name = name.toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name === '' || !/^[a-z0-9._\-[\]:]+$/.test(name)) return undefined;
  return name;
}

function sessionOnTimeout(session: HttpSession): void {
  session.onTimeout();
}

function clientOnData(this: SessionSocket, chunk: Buffer): void {
  this[kSession]?.onClientBytes(chunk, false);
}
/** onread callback of plain client sockets: `buffer` is the shared read buffer, valid during the call. */
function clientOnRead(this: SessionSocket, nread: number, buffer: Buffer): boolean {
  const session = this[kSession];
  // No session (finished, draining the client before close): discard.
  if (session !== undefined) session.onClientBytes(buffer.subarray(0, nread), true);
  return true;
}
function clientOnEnd(this: SessionSocket): void {
  this[kSession]?.onClientEnd();
}
function clientOnError(this: SessionSocket): void {
  this[kSession]?.abort();
}
function clientOnClose(this: SessionSocket): void {
  this[kSession]?.abort();
}
function clientOnDrain(this: SessionSocket): void {
  reclaimLent(this);
  this[kSession]?.onClientDrain();
}
function backendOnData(this: SessionSocket, chunk: Buffer): void {
  const session = this[kSession];
  if (session !== undefined) session.onBackendBytes(chunk, false);
  else idleSocketEvent(this);
}
/** onread callback of backend sockets while the http session owns them (and while idle in the pool). */
function backendOnRead(this: SessionSocket, nread: number, buffer: Buffer): boolean {
  const session = this[kSession];
  if (session !== undefined) session.onBackendBytes(buffer.subarray(0, nread), true);
  else idleSocketEvent(this);
  return true;
}
function backendOnEnd(this: SessionSocket): void {
  const session = this[kSession];
  if (session !== undefined) session.onBackendEnd();
  else idleSocketEvent(this);
}
function backendOnError(this: SessionSocket, err: Error): void {
  const session = this[kSession];
  if (session !== undefined) session.onBackendGone(err);
  else idleSocketEvent(this);
}
function backendOnClose(this: SessionSocket): void {
  const session = this[kSession];
  if (session !== undefined) session.onBackendGone(null);
  else idleSocketEvent(this);
}
function backendOnDrain(this: SessionSocket): void {
  reclaimLent(this);
  this[kSession]?.onBackendDrain();
}

function noop(): void {}
