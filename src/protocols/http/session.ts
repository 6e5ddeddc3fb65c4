/**
 * One client connection of the http listener: a loop of requests, each
 * routed on its own Host. Per request:
 *
 *   parse head → router.route(host) → pooled or new backend connection →
 *   write the rewritten head → stream the body (framed by Content-Length or
 *   the chunked framer, never buffered whole) → parse the response head →
 *   stream the response → backend back to the pool → next request.
 *
 * The session is the coordinator: the connection's state, routing,
 * deadlines, errors and endings. Its parts, each made once per connection:
 * `request` (request.ts: heads and request bodies), `response`
 * (response.ts: response heads and bodies) and `slot` (backend-slot.ts: the
 * backend connection, its pool slot, core's retry rule). A 101 answer to an
 * Upgrade request hands both sockets to core's Relay. Socket handlers are
 * module-level functions that find their session through a symbol field.
 * Backpressure both ways: a false write() pauses the other side until
 * 'drain'.
 */
import type { Socket } from 'node:net';
import type { Endpoint } from '../../core/endpoint.ts';
import { PolyproxyError, toPolyproxyError } from '../../core/errors.ts';
import type { DrainTarget, ProtocolSession } from '../../core/protocol.ts';
import type { ResolveContext } from '../../core/resolver.ts';
import type { Router, RouteDecision } from '../../core/router.ts';
import { Relay } from '../../core/relay.ts';
import type { RelayOwner } from '../../core/relay.ts';
import { reclaimLent } from '../../core/io/shared-read-buffer.ts';
import { adoptSharedReadBuffer } from '../../core/io/socket-onread.ts';
import { BackendSlot } from './backend-slot.ts';
import type { SlotOwner } from './backend-slot.ts';
import { throttleFor } from '../../core/limits/bandwidth.ts';
import type { Throttle } from '../../core/limits/bandwidth.ts';
import { routeOnlyLimits } from '../../core/limits/tenant-limits.ts';
import { errorResponse } from './errors.ts';
import type { HeadLimits, HttpHead } from './head-parser.ts';
import type { BackendPool } from './pool.ts';
import { FINISHED, READ_HEAD, REQ_BODY, ROUTING, RequestReader, UPGRADED } from './request.ts';
import type { RequestOwner } from './request.ts';
import { RESP_BODY, ResponseWriter } from './response.ts';
import type { ResponseOwner } from './response.ts';
import { responseHeadBytes } from './rewrite.ts';
import type { H2Connection, H2Front } from './h2/front.ts';
import { bridgeFor, rebuiltHead } from './h2/h1-bridge.ts';
import type { BridgeConnection } from './h2/h1-bridge.ts';
import { httpCounters } from './h2/metrics.ts';
import type { HttpVersionCounters } from './h2/metrics.ts';
import { IS_H2, NOT_H2, prefaceState } from './h2/preface.ts';

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
  /** HTTP/2 (null: off). A cleartext connection that starts with the HTTP/2 preface is handed to it (h2c, prior knowledge). */
  readonly h2: H2Front | null;
}

const kSession = Symbol('polyproxy.http.session');
type SessionSocket = Socket & { [kSession]?: HttpSession | undefined };

const EMPTY = Buffer.alloc(0);

// What the session's deadline guards.
const NO_DEADLINE = 0;
/** READ_HEAD: a request head must complete (408), or an idle keep-alive connection closes. */
const CLIENT_DEADLINE = 1;
/** A request is in flight: the backend must not stay silent longer (504). */
const BACKEND_DEADLINE = 2;

/**
 * Draining, a connection idle for less than this may still carry the
 * client's next request (on its way, or about to be sent on a connection
 * the client just got back): it gets that long to arrive, and is answered
 * with `Connection: close`. Closing it at once would fail that request.
 */
export const DRAIN_IDLE_GRACE_MS = 1000;

export class HttpSession implements RelayOwner, RequestOwner, ResponseOwner, SlotOwner, DrainTarget {
  readonly client: Socket;
  readonly settings: HttpSettings;
  readonly limits: HeadLimits;
  readonly proto: string;
  readonly pool: BackendPool;
  readonly core: ProtocolSession;
  readonly request: RequestReader;
  readonly response: ResponseWriter;
  readonly slot: BackendSlot;
  readonly done: Promise<void>;
  #resolveDone!: () => void;
  state = READ_HEAD;
  resourceId: string | undefined = undefined;
  clientEnded = false;
  /** The listener drains: each response says `Connection: close`, and the connection closes after it. */
  draining = false;
  /** An upgraded connection's relay (cut at the drain deadline). */
  #relay: Relay | null = null;
  #rawHost: string | undefined = undefined;
  #normalizedHost: string | undefined = undefined;
  /** One lazy timer per session (see #setDeadline): what it guards, and until when (Date.now() ms). */
  #timer: NodeJS.Timeout | null = null;
  #timerAt = 0;
  #deadlineKind = NO_DEADLINE;
  #deadline = 0;
  #deadlineMs = 0;
  #resolveMs = 0;
  #cacheHit = false;
  #ctx: ResolveContext | null = null;
  readonly #counters: HttpVersionCounters;
  /** The first head of a cleartext connection may still turn out to be the HTTP/2 preface. */
  prefaceCheck: boolean;
  /** After the preface: the HTTP/2 connection that serves the socket now. */
  #h2: H2Connection | null = null;
  /** After a request for a `protocol: h2` route: the h1→h2 bridge serves the socket now. */
  #bridged: BridgeConnection | null = null;
  /** The current request's tenant bandwidth (limits.*.bandwidth); null = unlimited, and the response path never looks further. */
  #throttle: Throttle | null = null;
  /** A backend paused until its tenant's out bucket is out of debt (resumed by the timer even if it went back to the pool meanwhile). */
  #throttledBackend: Socket | null = null;
  #throttleTimer: NodeJS.Timeout | null = null;

  constructor(client: Socket, leftover: Buffer | null, settings: HttpSettings, pool: BackendPool, core: ProtocolSession) {
    this.client = client;
    this.settings = settings;
    this.limits = settings.limits;
    this.proto = settings.proto;
    this.pool = pool;
    this.core = core;
    this.request = new RequestReader(this);
    this.response = new ResponseWriter(this);
    this.slot = new BackendSlot(this, pool);
    this.#counters = httpCounters(core.listener);
    this.#counters.connectionsH1++;
    this.prefaceCheck = settings.h2 !== null && settings.proto === 'http';
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
    if (leftover !== null) this.request.onClientBytes(leftover, false);
    if (this.state === READ_HEAD) client.resume();
    core.onDrain(this);
  }

  // ---- what the parts read -------------------------------------------------

  get router(): Router {
    return this.core.router;
  }

  get tcpKeepAliveMs(): number {
    return this.core.tcpKeepAliveMs;
  }

  get connectTimeoutMs(): number {
    return this.core.connectTimeoutMs;
  }

  get finished(): boolean {
    return this.state === FINISHED;
  }

  get backendSocket(): Socket | null {
    return this.slot.backend;
  }

  get currentRequest(): HttpHead {
    return this.request.req as HttpHead;
  }

  resolveContext(): ResolveContext {
    let ctx = this.#ctx;
    if (ctx === null) {
      ctx = this.core.resolveContext();
      this.#ctx = ctx;
    }
    return ctx;
  }

  telemetry(): string {
    if (!this.settings.telemetryHeaders) return '';
    return `x-proxy-resolve-ms: ${this.#resolveMs.toFixed(3)}\r\nx-proxy-cache: ${this.#cacheHit ? 'hit' : 'miss'}\r\nx-proxy-pool: ${this.slot.reused ? 'reused' : 'new'}\r\n`;
  }

  // ---- request side --------------------------------------------------------

  /**
   * The connection's first bytes, while they may be the HTTP/2 preface
   * (RFC 9113 §3.4). True when this took them: a partial preface is kept,
   * a whole one hands the connection to HTTP/2. False: HTTP/1.1, parse as usual.
   */
  checkPreface(chunk: Buffer, transient: boolean): boolean {
    const request = this.request;
    const buf = request.buf.length === 0 ? chunk : Buffer.concat([request.buf, chunk]);
    const state = prefaceState(buf);
    if (state === NOT_H2) {
      this.prefaceCheck = false;
      return false;
    }
    const owned = buf === chunk && transient ? Buffer.from(chunk) : buf;
    if (state === IS_H2) {
      request.buf = EMPTY;
      this.#switchToH2(owned);
    } else {
      request.buf = owned;
      this.headPending();
    }
    return true;
  }

  #switchToH2(bytes: Buffer): void {
    const h2 = this.settings.h2 as H2Front;
    this.#clearDeadline();
    const client = this.client;
    this.#detachClient();
    this.state = UPGRADED;
    this.#counters.connectionsH1--;
    const conn = h2.accept(client, bytes, this.core);
    this.#h2 = conn;
    void conn.done.then(() => {
      this.state = FINISHED;
      this.#resolveDone();
    });
  }

  headPending(): void {
    // From the first bytes of a head on, the request timeout runs (not the keep-alive one).
    if (this.#deadlineKind !== CLIENT_DEADLINE || this.#deadlineMs !== this.settings.requestTimeoutMs) this.#setDeadline(CLIENT_DEADLINE, this.settings.requestTimeoutMs);
  }

  headReceived(head: HttpHead): void {
    this.#deadlineKind = NO_DEADLINE;
    this.state = ROUTING;
    // A body is read once the backend can take it (request.send resumes). A request without one
    // keeps the client reading: no readStop/readStart per request; a client that pipelines is
    // paused when those bytes arrive (request.onClientBytes).
    if (head.framing !== 'none') this.client.pause();
    this.#route(head);
  }

  requestFailed(err: PolyproxyError): void {
    this.#fail(err);
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
    const decision = this.core.router.cached(host, this.resolveContext());
    if (decision !== undefined && this.#bridgeH2(decision, head)) return;
    if (decision !== undefined && (decision.entry.limits ?? null) !== null && !this.#admitRequest(decision)) return;
    if (decision !== undefined && this.slot.takeIdle((decision.candidates[0] as Endpoint).label)) {
      this.#routed(decision, started);
      this.request.send(this.slot.backend as Socket);
      return;
    }
    // Slow path (resolve, connect or wait for a slot): nothing more is read meanwhile.
    this.client.pause();
    this.request.keepHead();
    void this.#routeAsync(host, decision, started);
  }

  /**
   * A `protocol: h2` route (an h2-only backend refuses HTTP/1.1): the
   * connection goes to the h1→h2 bridge (h2/h1-bridge.ts), which serves
   * this request and the connection's later ones (limits included). Not an
   * Upgrade request: it stays here and its backend answers it. True: handed over.
   */
  #bridgeH2(decision: RouteDecision, head: HttpHead): boolean {
    const h2 = this.settings.h2;
    if (h2 === null || decision.entry.route.protocol !== 'h2' || head.upgrade !== undefined) return false;
    const request = this.request;
    const bytes = request.buf.length === 0 ? rebuiltHead(head) : Buffer.concat([rebuiltHead(head), request.buf]);
    request.buf = EMPTY;
    this.#clearDeadline();
    const client = this.client;
    this.#detachClient();
    this.state = UPGRADED;
    const settings = this.settings;
    const bridge = bridgeFor(h2, { maxHeadBytes: settings.limits.maxHeadBytes, maxHeaders: settings.limits.maxHeaders, requestTimeoutMs: settings.requestTimeoutMs, keepAliveTimeoutMs: settings.keepAliveTimeoutMs, backendTimeoutMs: settings.backendTimeoutMs, telemetryHeaders: settings.telemetryHeaders, proto: settings.proto });
    const conn = bridge.accept(client, bytes, this.core);
    this.#bridged = conn;
    void conn.done.then(() => {
      this.state = FINISHED;
      this.#resolveDone();
    });
    return true;
  }

  /**
   * A tenant with limits: its requestsPerSecond (429 with Retry-After when
   * over, and the connection closes like every refusal), and its bandwidth
   * for this request's response. False: refused.
   */
  #admitRequest(decision: RouteDecision): boolean {
    const limits = decision.entry.limits ?? null;
    const resourceId = decision.entry.resourceId;
    const refusal = (this.core.router.limits ?? routeOnlyLimits).request(resourceId, limits);
    if (refusal !== null) {
      this.#fail(refusal);
      return false;
    }
    this.#throttle = limits === null ? null : throttleFor(resourceId, limits.inBytesPerSecond, limits.outBytesPerSecond);
    return true;
  }

  #routed(decision: RouteDecision, started: number): void {
    if ((decision.entry.limits ?? null) === null) this.#throttle = null;
    this.core.served(decision.entry.resourceId);
    this.#counters.requestsH1++;
    if (this.settings.telemetryHeaders) {
      this.#resolveMs = performance.now() - started;
      this.#cacheHit = decision.cacheHit;
    }
  }

  async #routeAsync(host: string, cached: RouteDecision | undefined, started: number): Promise<void> {
    try {
      const decision = cached ?? (await this.core.router.route(host, this.resolveContext()));
      if (this.state === FINISHED || this.#bridgeH2(decision, this.request.req as HttpHead)) return;
      if (cached === undefined && (decision.entry.limits ?? null) !== null && !this.#admitRequest(decision)) return;
      this.#routed(decision, started);
      const timeoutMs = decision.entry.route.timeoutMs ?? this.core.connectTimeoutMs;
      await this.slot.attach(decision, timeoutMs);
    } catch (err) {
      const error = toPolyproxyError(err);
      this.#fail(error.resourceId === undefined && error.kind !== 'PROTOCOL' ? new PolyproxyError(error.kind, error.message, { source: error.source, resourceId: host, cause: error }) : error);
      return;
    }
    if (this.state === FINISHED) return;
    this.request.send(this.slot.backend as Socket);
  }

  // ---- backend side --------------------------------------------------------

  backendAttached(): void {
    this.#setDeadline(BACKEND_DEADLINE, this.settings.backendTimeoutMs);
    this.response.attached();
  }

  backendDetached(): void {
    if (this.#deadlineKind === BACKEND_DEADLINE) this.#deadlineKind = NO_DEADLINE;
  }

  backendBytes(chunk: Buffer, transient: boolean): void {
    this.response.onBackendBytes(chunk, transient);
    if (this.#throttle !== null) this.#spendOut(chunk.length);
  }

  /** Bandwidth: the response's bytes spend the tenant's out bucket; in debt, the backend pauses (TCP slows it) until it is paid. */
  #spendOut(n: number): void {
    const bucket = (this.#throttle as Throttle).out;
    if (bucket === null) return;
    const wait = bucket.spend(n);
    if (wait === 0 || this.#throttledBackend !== null) return;
    const backend = this.slot.backend;
    if (backend === null) return;
    this.#throttledBackend = backend;
    backend.pause();
    this.#throttleTimer = setTimeout(httpOutRefilled, wait, this);
  }

  /** @internal The out bucket's debt is paid: the backend reads again, unless the client still has to drain. */
  outRefilled(): void {
    this.#throttleTimer = null;
    const wait = this.#throttle?.out?.spend(0) ?? 0;
    if (wait > 0 && this.state !== FINISHED) {
      this.#throttleTimer = setTimeout(httpOutRefilled, wait, this);
      return;
    }
    const backend = this.#throttledBackend;
    this.#throttledBackend = null;
    if (backend === null || backend.destroyed) return;
    if (backend !== this.slot.backend || this.state === FINISHED || this.client.writableNeedDrain !== true) backend.resume();
  }

  /** A silent backend times out from its last activity, as a socket timeout would. */
  backendActivity(): void {
    if (this.#deadlineKind === BACKEND_DEADLINE) this.#deadline = Date.now() + this.#deadlineMs;
  }

  pauseBackend(): void {
    this.slot.backend?.pause();
  }

  backendDrained(): void {
    if (this.state === REQ_BODY) this.client.resume();
  }

  resend(): void {
    this.request.resend(this.slot.backend as Socket);
  }

  retryFailed(err: unknown): void {
    this.#fail(toPolyproxyError(err));
  }

  /** The response's framing says it is complete; `extra` is anything the backend sent past it. */
  responseComplete(extra: Buffer): void {
    const reqDone = this.request.reqDone;
    const reusable = reqDone && extra.length === 0 && (this.response.res as HttpHead).keepAlive;
    if (this.slot.unconfirmed !== null) this.slot.confirm(null);
    this.slot.release(reusable);
    if (!reqDone) this.response.closeAfter = true;
    this.#nextRequest();
  }

  #nextRequest(): void {
    if (this.state === FINISHED) return;
    const request = this.request;
    if (this.response.closeAfter || !request.reqDone || this.draining) {
      this.#finish(true);
      return;
    }
    request.reset();
    this.response.reset();
    this.slot.retries = 0;
    this.state = READ_HEAD;
    this.#setDeadline(CLIENT_DEADLINE, request.buf.length > 0 ? this.settings.requestTimeoutMs : this.settings.keepAliveTimeoutMs);
    if (request.buf.length > 0) request.tryHead(request.buf, false);
    if (this.state === READ_HEAD) {
      const client = this.client;
      if (this.clientEnded) this.#finish(true);
      // A client that does not read its responses is not read from either ('drain' resumes it).
      else if (client.writableNeedDrain === true) client.pause();
      else if (client.readableFlowing !== true) client.resume();
    }
  }

  switchProtocols(head: HttpHead, rest: Buffer): void {
    const req = this.request.req as HttpHead;
    this.client.write(responseHeadBytes(head, req.minor, false, ''));
    if (rest.length > 0) this.client.write(rest);
    if (this.slot.unconfirmed !== null) this.slot.confirm(null);
    const backend = this.slot.detachForRelay();
    this.#clearDeadline();
    const client = this.client;
    this.#detachClient();
    client.pause();
    this.state = UPGRADED;
    const request = this.request;
    const replay = request.buf.length > 0 ? request.buf : null;
    request.buf = EMPTY;
    const relay = new Relay(client, backend, this, this.core.idleTimeoutMs, null);
    this.#relay = relay;
    relay.start(replay);
  }

  /** Core's Relay calls this when an upgraded connection is over. */
  relayClosed(): void {
    this.#relay = null;
    this.slot.relayClosed();
    this.state = FINISHED;
    this.#resolveDone();
  }

  backendFailed(err: PolyproxyError): void {
    // Reset, silence or garbage before any response reached the client: the endpoint failed.
    if (this.slot.unconfirmed !== null) this.slot.confirm(this.response.responseStarted ? null : err.message);
    this.slot.release(false);
    if (!this.response.responseStarted) this.#fail(err);
    else this.#finish(false);
  }

  backendEnded(): void {
    const response = this.response;
    if (response.bState === RESP_BODY && (response.res as HttpHead).framing === 'close') {
      this.slot.release(false);
      response.closeAfter = true;
      this.#finish(true);
      return;
    }
    this.backendGone(null);
  }

  backendGone(err: Error | null): void {
    if (this.slot.backend === null) return;
    // The request went out: sent again only when core's rule allows (backend-slot.ts).
    if (this.state !== FINISHED && this.slot.retry(this.request.req as HttpHead, err, this.response.gotBackendBytes)) return;
    this.backendFailed(
      new PolyproxyError('BACKEND_UNREACHABLE', err === null ? 'the backend closed the connection before the response was complete' : `backend error: ${err.message}`, {
        source: 'backend',
        resourceId: this.resourceId,
      }),
    );
  }

  onBackendTimeout(): void {
    const err = new PolyproxyError('TIMEOUT', `the backend did not answer within ${this.settings.backendTimeoutMs} ms`, { source: 'backend', resourceId: this.resourceId });
    this.backendFailed(err);
  }

  // ---- endings -------------------------------------------------------------

  /** Answers with the error page when no response byte was sent yet, then closes. */
  #fail(err: PolyproxyError): void {
    if (this.state === FINISHED) return;
    this.core.failed(err);
    this.slot.release(false);
    if (this.response.responseStarted || this.client.destroyed) {
      this.#finish(false);
      return;
    }
    const req = this.request.req;
    const accept = req?.accept;
    this.response.responseStarted = true;
    this.client.write(errorResponse(err, err.resourceId ?? this.resourceId, accept, req?.method === 'HEAD'));
    this.#finish(true);
  }

  /** Ends the session: `graceful` flushes and ends the client, otherwise it is cut. */
  #finish(graceful: boolean): void {
    if (this.state === FINISHED) return;
    this.state = FINISHED;
    this.#clearDeadline();
    if (this.#throttleTimer !== null) {
      clearTimeout(this.#throttleTimer);
      this.#throttleTimer = null;
      const paused = this.#throttledBackend;
      this.#throttledBackend = null;
      if (paused !== null && !paused.destroyed) paused.resume();
    }
    this.slot.release(false);
    // Client gone while waiting for a slot: out of the queue; #routeAsync's catch sees FINISHED.
    this.slot.cancelWait(new PolyproxyError('INTERNAL', 'the client went away while waiting for a backend connection', { source: 'client' }));
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

  /**
   * The listener drains (see DrainTarget). An idle keep-alive connection
   * closes now (one active in the last DRAIN_IDLE_GRACE_MS gets the rest of
   * that for its next request); a request in flight is answered with `Connection: close`
   * (RFC 9112 §9.6) and the connection closes after it, so a busy client
   * opens its next connection elsewhere instead of being cut at the
   * deadline. At the deadline: 503 if nothing of a response was sent yet,
   * else cut; an upgraded connection's relay is cut.
   */
  drain(deadline: boolean): void {
    if (this.state === FINISHED) return;
    if (this.state === UPGRADED) {
      // HTTP/2 (h2c) registered for the drain itself.
      if (deadline) this.#relay?.destroy('shutdown');
      return;
    }
    this.draining = true;
    if (this.state === READ_HEAD && this.request.buf.length === 0) {
      // Idle between requests. The client deadline was set when it went idle (or connected).
      const idleMs = this.#deadlineKind === CLIENT_DEADLINE ? Date.now() - (this.#deadline - this.#deadlineMs) : DRAIN_IDLE_GRACE_MS;
      if (deadline || idleMs >= DRAIN_IDLE_GRACE_MS) this.#finish(true);
      else this.#setDeadline(CLIENT_DEADLINE, DRAIN_IDLE_GRACE_MS - idleMs); // onTimeout closes it if nothing came
      return;
    }
    if (deadline) {
      this.#fail(new PolyproxyError('SHUTTING_DOWN', 'the proxy is shutting down', { source: 'internal', resourceId: this.resourceId }));
    }
  }

  /** Cut both sides (client error or close, shutdown). */
  abort(): void {
    if (this.#h2 !== null) {
      this.#h2.abort();
      return;
    }
    if (this.#bridged !== null) {
      this.#bridged.abort();
      return;
    }
    if (this.state === FINISHED || this.state === UPGRADED) return;
    this.#finish(false);
  }

  onClientEnd(): void {
    this.clientEnded = true;
    if (this.state === READ_HEAD) {
      if (this.request.buf.length > 0) this.#fail(new PolyproxyError('PROTOCOL', 'client closed the connection in the middle of a request head', { source: 'client' }));
      else this.#finish(true);
    } else if (this.state === REQ_BODY) {
      this.#finish(false);
    }
    // ROUTING / REQ_DONE: answer this request, then close.
  }

  onClientDrain(): void {
    if (this.state === FINISHED) return;
    if (this.response.bState === RESP_BODY) {
      if (this.#throttledBackend === null) this.slot.backend?.resume();
    } else if (this.state === READ_HEAD && !this.clientEnded) this.client.resume();
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
      if (this.slot.backend !== null) this.onBackendTimeout();
      return;
    }
    if (this.state !== READ_HEAD) return;
    if (this.request.buf.length > 0) this.#fail(new PolyproxyError('HANDSHAKE_TIMEOUT', `request head not received within ${this.settings.requestTimeoutMs} ms`, { source: 'client' }));
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
  this[kSession]?.request.onClientBytes(chunk, false);
}
/** onread callback of plain client sockets: `buffer` is the shared read buffer, valid during the call. */
function clientOnRead(this: SessionSocket, nread: number, buffer: Buffer): boolean {
  const session = this[kSession];
  // No session (finished, draining the client before close): discard.
  if (session !== undefined) session.request.onClientBytes(buffer.subarray(0, nread), true);
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

function noop(): void {}

function httpOutRefilled(session: HttpSession): void {
  session.outRefilled();
}
