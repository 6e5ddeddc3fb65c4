/**
 * HTTP/1.1 clients on `protocol: h2` routes (issue 20): an h2-only backend
 * (a node:http2 or gRPC server, h2c or h2 over TLS) refuses an HTTP/1.1
 * request, so the request is translated to a stream on the route's HTTP/2
 * session pool (h2-backends.ts) and the response translated back.
 *
 * When a request on an HTTP/1.1 client connection routes to such a route,
 * HttpSession hands the connection here, as it hands a connection that
 * starts with the HTTP/2 preface to H2Front: the head is given back as
 * bytes (rebuilt from the parsed fields, so what polyproxy's parser
 * accepted is what node:http's reads), with whatever the client sent
 * after it, to a node:http server that never listens (`emit('connection')`).
 * node:http does the HTTP/1.1 framing from then on — chunked request
 * bodies decoded, the response chunked when the backend gave no length,
 * HEAD, Expect: 100-continue, keep-alive — and every later request on the
 * connection is served here: h2 routes as streams, other routes through the
 * HTTP/1.1 client and pool the HTTP/2 side uses (h1-backends.ts; the body
 * node:http decoded goes with its Content-Length, else chunked again).
 * Trailers (HTTP/2 ones, or an HTTP/1.1 backend's chunked ones) are sent
 * as chunked trailers when the client said `TE: trailers` (RFC 9110
 * §6.5.1), dropped otherwise (a Content-Length body has no place for them
 * either).
 *
 * Failures use the same status table and error page as the HTTP/1.1
 * path, each closing the connection after it, as there. Upgrade requests
 * on a bridged connection are refused with 501 (WebSockets go over HTTP/1.1
 * routes on connections that never reached an h2 route).
 */
import http from 'node:http';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import http2 from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import type { Endpoint } from '../../../core/endpoint.ts';
import { PolyproxyError, toPolyproxyError } from '../../../core/errors.ts';
import { HttpStatusError, errorResponse, sendErrorPage } from '../../../core/http-error-response.ts';
import type { TokenBucket } from '../../../core/limits/token-bucket.ts';
import { OutThrottle } from './out-throttle.ts';
import type { DrainTarget, ProtocolSession } from '../../../core/protocol.ts';
import type { ResolveContext } from '../../../core/resolver.ts';
import type { RouteDecision } from '../../../core/router.ts';
import type { HttpHead } from '../head-parser.ts';
import { normalizeHost } from '../session.ts';
import type { H2Front } from './front.ts';
import { forwardableTrailers, h1RequestHead, h2RequestHeaders, rawToHeaders } from './headers.ts';
import { BODY_CHUNKED, BODY_LENGTH, BODY_NONE, h1Error } from './h1-backends.ts';
import type { H1Call, H1Request } from './h1-backends.ts';
import type { ForwardContext } from './headers.ts';
import { httpCounters } from './metrics.ts';
import type { HttpVersionCounters } from './metrics.ts';
import { requestRefusal, responseBucket, routeFailure } from './route-request.ts';

const { NGHTTP2_CANCEL } = http2.constants;

/** What the bridge takes from the listener's HTTP/1.1 settings. */
export interface BridgeSettings {
  readonly maxHeadBytes: number;
  readonly maxHeaders: number;
  /** A later request's head must arrive within this (the listener's requestTimeoutMs): 408 past it. */
  readonly requestTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly backendTimeoutMs: number;
  readonly telemetryHeaders: boolean;
  readonly proto: string;
}

/** Response fields never relayed to an HTTP/1.1 client from an HTTP/2 or HTTP/1.1 backend's response (node:http frames the body itself). */
const DROP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'trailer']);

const kConnection = Symbol('polyproxy.h1bridge.connection');
type BridgedSocket = Socket & { [kConnection]?: BridgeConnection };

const bridges = new WeakMap<H2Front, H1Bridge>();

/** The listener's bridge (one per H2Front, made on first use). */
export function bridgeFor(front: H2Front, settings: BridgeSettings): H1Bridge {
  let bridge = bridges.get(front);
  if (bridge === undefined) {
    bridge = new H1Bridge(front, settings);
    bridges.set(front, bridge);
  }
  return bridge;
}

/** The HTTP/1.1 head as node:http is to read it again: request line and fields from the parsed head, Host from the head's host. */
export function rebuiltHead(head: HttpHead): Buffer {
  let text = `${head.method} ${head.originTarget} HTTP/1.${head.minor}\r\n`;
  let hostDone = false;
  for (const [name, value] of head.headers) {
    if (name.toLowerCase() === 'host') {
      if (hostDone) continue;
      hostDone = true;
      text += `host: ${head.host ?? value}\r\n`;
      continue;
    }
    text += `${name}: ${value}\r\n`;
  }
  if (!hostDone && head.host !== undefined) text += `host: ${head.host}\r\n`;
  return Buffer.from(`${text}\r\n`, 'latin1');
}

export class H1Bridge {
  readonly front: H2Front;
  readonly settings: BridgeSettings;
  readonly server: http.Server;
  #pending: BridgeConnection | null = null;

  constructor(front: H2Front, settings: BridgeSettings) {
    this.front = front;
    this.settings = settings;
    this.server = http.createServer({
      maxHeaderSize: settings.maxHeadBytes,
      keepAliveTimeout: settings.keepAliveTimeoutMs,
      requireHostHeader: true,
      // A later request's head within requestTimeoutMs (408 past it), as on the listener's own parser; a body is
      // bounded by the exchange's own deadlines, not node:http's requestTimeout.
      headersTimeout: settings.requestTimeoutMs,
      requestTimeout: 0,
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(settings.requestTimeoutMs / 10))),
    });
    // node:http enforces headersTimeout from a sweep over its connections that starts on 'listening'. This server
    // never listens (connections are handed to it), so without this a bridged connection had no head deadline.
    this.server.emit('listening');
    // Idle keep-alive connections close after keepAliveTimeout; a request waits for its backend under backendTimeoutMs (BridgedRequest).
    this.server.timeout = 0;
    // One more than allowed, so a request over the limit is seen (and refused in start()) rather than cut short silently.
    this.server.maxHeadersCount = settings.maxHeaders + 1;
    this.server.on('request', serverOnRequest);
    this.server.on('upgrade', serverOnUpgrade);
    this.server.on('connection', serverOnConnection.bind(null, this));
  }

  /** Serves `socket` from now on; `bytes`: the request head again and what the client sent after it. */
  accept(socket: Socket, bytes: Buffer, core: ProtocolSession): BridgeConnection {
    const conn = new BridgeConnection(this, socket, core);
    socket.pause();
    socket.unshift(bytes);
    this.#pending = conn;
    try {
      this.server.emit('connection', socket);
    } finally {
      this.#pending = null;
    }
    // node:http listens for 'data' but does not resume a socket paused explicitly.
    socket.resume();
    return conn;
  }

  /** The server's 'connection' listener runs inside accept's emit. */
  adopt(socket: BridgedSocket): void {
    const conn = this.#pending;
    if (conn === null) return;
    socket[kConnection] = conn;
  }
}

/** One bridged client connection: its requests, drain and end. */
export class BridgeConnection implements DrainTarget {
  readonly bridge: H1Bridge;
  readonly socket: Socket;
  readonly core: ProtocolSession;
  readonly counters: HttpVersionCounters;
  readonly forward: ForwardContext;
  readonly done: Promise<void>;
  draining = false;
  /** The request being served (node:http serves one at a time per connection). */
  current: BridgedRequest | null = null;
  #ctx: ResolveContext | null = null;

  constructor(bridge: H1Bridge, socket: Socket, core: ProtocolSession) {
    this.bridge = bridge;
    this.socket = socket;
    this.core = core;
    this.counters = httpCounters(core.listener);
    this.forward = { clientAddress: core.resolveContext().clientAddress, proto: bridge.settings.proto };
    this.done = new Promise((resolve) => socket.once('close', () => resolve()));
    core.onDrain(this);
  }

  resolveContext(): ResolveContext {
    let ctx = this.#ctx;
    if (ctx === null) {
      ctx = this.core.resolveContext();
      this.#ctx = ctx;
    }
    return ctx;
  }

  /** The listener drains: an idle connection closes now, a busy one after its response (`Connection: close`); at the deadline an unanswered request gets 503. */
  drain(deadline: boolean): void {
    this.draining = true;
    const current = this.current;
    if (current === null) {
      this.socket.end();
      return;
    }
    if (!deadline) {
      if (!current.res.headersSent) current.res.setHeader('connection', 'close');
      return;
    }
    current.fail(new PolyproxyError('SHUTTING_DOWN', 'the proxy is shutting down', { source: 'internal', resourceId: current.resourceId }));
    setImmediate(destroySocket, this.socket);
  }

  abort(): void {
    this.socket.destroy();
  }
}

/** One request on a bridged connection, to an HTTP/2 stream or the HTTP/1.1 pool. */
class BridgedRequest implements H1Request {
  readonly conn: BridgeConnection;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  resourceId: string | undefined = undefined;
  done = false;
  #started = 0;
  #telemetry: Record<string, string> | null = null;
  #session: ClientHttp2Session | null = null;
  #upstream: ClientHttp2Stream | null = null;
  /** HTTP/1.1 backend: the request on its way (h1-backends.ts). */
  #call: H1Call | null = null;
  /** H1Request: set before the request goes to the HTTP/1.1 client. */
  method = 'GET';
  requestHead = '';
  bodyFraming = BODY_NONE;
  body: IncomingMessage | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** The tenant's bandwidth.outBytesPerSecond bucket (null: unlimited), and the response's throttle on it. */
  #outBucket: TokenBucket | null = null;
  #throttle: OutThrottle | null = null;
  /** The client said `TE: trailers`: HTTP/2 trailers go out as chunked trailers. */
  readonly #trailersWanted: boolean;

  constructor(conn: BridgeConnection, req: IncomingMessage, res: ServerResponse) {
    this.conn = conn;
    this.req = req;
    this.res = res;
    const te = req.headers.te;
    this.#trailersWanted = te !== undefined && /(?:^|,)\s*trailers\s*(?:[;,]|$)/i.test(String(te));
  }

  start(): void {
    const conn = this.conn;
    if (conn.draining) this.res.setHeader('connection', 'close');
    // As the listener's own parser (head-parser.ts): a later request on this connection with too many fields is a 431, never forwarded without some.
    const maxHeaders = conn.bridge.settings.maxHeaders;
    if (this.req.rawHeaders.length > maxHeaders * 2) {
      this.fail(new HttpStatusError('PROTOCOL', 431, `more than ${maxHeaders} headers`, { source: 'client' }));
      return;
    }
    const host = normalizeHost(this.req.headers.host);
    this.resourceId = host;
    if (host === undefined) {
      this.fail(new PolyproxyError('PROTOCOL', 'missing or invalid Host header', { source: 'client' }));
      return;
    }
    if (conn.bridge.settings.telemetryHeaders) this.#started = performance.now();
    const decision = conn.core.router.cached(host, conn.resolveContext());
    if (decision !== undefined) this.#routed(decision);
    else void this.#routeAsync(host);
  }

  async #routeAsync(host: string): Promise<void> {
    let decision: RouteDecision;
    try {
      decision = await this.conn.core.router.route(host, this.conn.resolveContext());
    } catch (err) {
      this.fail(routeFailure(err, host));
      return;
    }
    this.#routed(decision);
  }

  #routed(decision: RouteDecision): void {
    if (this.done) return;
    const conn = this.conn;
    const refusal = requestRefusal(conn.core.router, decision);
    if (refusal !== null) {
      this.fail(refusal);
      return;
    }
    this.#outBucket = responseBucket(decision);
    conn.core.served(decision.entry.resourceId);
    conn.counters.requestsH1++;
    if (conn.bridge.settings.telemetryHeaders) this.#telemetry = { 'x-proxy-resolve-ms': (performance.now() - this.#started).toFixed(3), 'x-proxy-cache': decision.cacheHit ? 'hit' : 'miss' };
    this.#timer = setTimeout(requestOnTimeout, conn.bridge.settings.backendTimeoutMs, this);
    if (decision.entry.route.protocol === 'h2') void this.#toH2(decision);
    else this.#toH1(decision.candidates[0] as Endpoint);
  }

  /** The client's header list, names lowercased, hop-by-hop fields (Connection and what it names, Expect: node:http answered it) left out. */
  #rawHeaders(pseudo: boolean): string[] {
    const raw = this.req.rawHeaders;
    const connection = this.req.headers.connection;
    const hop = connection === undefined ? null : new Set(connection.toLowerCase().split(',').map((t) => t.trim()));
    const out: string[] = pseudo ? [':method', this.req.method ?? 'GET', ':path', this.req.url ?? '/'] : [];
    for (let i = 0; i < raw.length; i += 2) {
      const name = (raw[i] as string).toLowerCase();
      if (name === 'expect' || (hop !== null && hop.has(name))) continue;
      out.push(name, raw[i + 1] as string);
    }
    return out;
  }

  #hasBody(): boolean {
    const req = this.req;
    return req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
  }

  // ---- HTTP/2 backend --------------------------------------------------------

  async #toH2(decision: RouteDecision): Promise<void> {
    const conn = this.conn;
    const front = conn.bridge.front;
    let session: ClientHttp2Session;
    try {
      const timeoutMs = decision.entry.route.timeoutMs ?? conn.core.connectTimeoutMs;
      const leased = await front.h2.lease(decision, conn.core.router, timeoutMs, conn.core.tcpKeepAliveMs);
      session = leased.session;
      if (this.done) {
        front.h2.release(session);
        return;
      }
      if (this.#telemetry !== null) this.#telemetry['x-proxy-pool'] = leased.reused ? 'reused' : 'new';
    } catch (err) {
      const error = toPolyproxyError(err);
      this.fail(new PolyproxyError(error.kind, error.message, { source: error.source, resourceId: this.resourceId, cause: error }));
      return;
    }
    this.#session = session;
    conn.counters.backendStreamsH2++;
    const hasBody = this.#hasBody();
    const headers = h2RequestHeaders(this.#rawHeaders(true), this.req.headers.host as string, conn.forward, decision.entry.route.tls === undefined ? 'http' : 'https');
    let upstream: ClientHttp2Stream;
    try {
      // A chunked body may end with trailer fields (RFC 9112 §7.1.2): the HTTP/2 request waits for them ('wantTrailers').
      upstream = session.request(headers, !hasBody ? { endStream: true } : this.req.headers['transfer-encoding'] !== undefined ? { waitForTrailers: true } : {});
    } catch (err) {
      this.#releaseSession();
      this.fail(new PolyproxyError('BACKEND_UNREACHABLE', `backend session failed: ${(err as Error).message}`, { source: 'backend', resourceId: this.resourceId }));
      return;
    }
    this.#upstream = upstream;
    upstream.on('response', (h: IncomingHttpHeaders) => this.#onUpstreamResponse(h));
    upstream.on('trailers', (t: IncomingHttpHeaders) => this.#onUpstreamTrailers(t));
    upstream.on('wantTrailers', () => {
      const trailers = this.requestTrailers();
      upstream.sendTrailers(trailers === null ? {} : rawToHeaders(trailers));
    });
    upstream.on('error', noop);
    upstream.on('close', () => this.#onUpstreamClose());
    if (hasBody) this.req.pipe(upstream);
  }

  #onUpstreamResponse(headers: IncomingHttpHeaders): void {
    const upstream = this.#upstream as ClientHttp2Stream;
    const status = Number(headers[':status']);
    if (this.done || status < 200) return;
    this.#clearTimer();
    const res = this.res;
    res.writeHead(status, this.#responseHeaders(headers));
    if (upstream.endAfterHeaders) {
      this.#end();
      return;
    }
    if (this.#outBucket !== null) {
      const throttle = new OutThrottle(this.#outBucket, upstream, res);
      this.#throttle = throttle;
      upstream.on('data', (chunk: Buffer) => throttle.spend(chunk.length));
    }
    upstream.pipe(res, { end: false });
    upstream.once('end', () => this.#end());
  }

  #onUpstreamTrailers(trailers: IncomingHttpHeaders): void {
    if (!this.#trailersWanted || this.done) return;
    const out: OutgoingHttpHeaders = {};
    for (const name in trailers) if (name.charCodeAt(0) !== 0x3a && !DROP_RESPONSE.has(name)) out[name] = trailers[name];
    this.res.addTrailers(out as Record<string, string>);
  }

  #onUpstreamClose(): void {
    const upstream = this.#upstream as ClientHttp2Stream;
    this.#releaseSession();
    if (this.done) return;
    const code = upstream.rstCode ?? 0;
    if (!this.res.headersSent) {
      this.fail(new PolyproxyError('BACKEND_UNREACHABLE', `the backend reset the stream (HTTP/2 error ${code})`, { source: 'backend', resourceId: this.resourceId }));
      return;
    }
    if (code === 0) this.#end();
    else this.#cut();
  }

  #releaseSession(): void {
    const session = this.#session;
    if (session === null) return;
    this.#session = null;
    this.conn.bridge.front.h2.release(session);
  }

  // ---- HTTP/1.1 backend (the HTTP/2 side's client and pool) -------------------

  #toH1(endpoint: Endpoint): void {
    const conn = this.conn;
    const req = this.req;
    const framing = !this.#hasBody() ? BODY_NONE : req.headers['content-length'] !== undefined ? BODY_LENGTH : BODY_CHUNKED;
    this.method = req.method ?? 'GET';
    this.bodyFraming = framing;
    this.body = framing === BODY_NONE ? null : req;
    this.requestHead = h1RequestHead(this.method, req.url ?? '/', this.#rawHeaders(false), req.headers.host as string, conn.forward, framing === BODY_CHUNKED);
    this.#call = conn.bridge.front.h1.send(endpoint, conn.core.router.health, this);
  }

  /** H1Request, and the HTTP/2 backend's 'wantTrailers': the client's chunked trailer fields, filtered. */
  requestTrailers(): readonly string[] | null {
    return forwardableTrailers(this.req.rawTrailers);
  }

  h1Sent(call: H1Call, reused: boolean): void {
    this.#call = call;
    if (this.#telemetry !== null) this.#telemetry['x-proxy-pool'] = reused ? 'reused' : 'new';
    if (this.#outBucket !== null && this.#throttle === null) this.#throttle = new OutThrottle(this.#outBucket, call, this.res);
  }

  h1Response(status: number, headers: string[]): void {
    if (this.done) return;
    this.#clearTimer();
    const out: IncomingHttpHeaders = {};
    for (let i = 2; i < headers.length; i += 2) {
      const name = headers[i] as string;
      const value = headers[i + 1] as string;
      const prior = out[name];
      if (prior === undefined) out[name] = value;
      else if (Array.isArray(prior)) prior.push(value);
      else out[name] = [prior, value];
    }
    const res = this.res;
    res.writeHead(status, this.#responseHeaders(out));
    res.on('drain', () => {
      if (this.#throttle === null || !this.#throttle.holding) this.#call?.resume();
    });
  }

  h1Data(chunk: Buffer): void {
    if (this.done) return;
    if (!this.res.write(chunk)) this.#call?.pause();
    if (this.#throttle !== null) this.#throttle.spend(chunk.length);
  }

  h1End(trailers: string[] | null): void {
    this.#call = null;
    if (this.done) return;
    if (trailers !== null && this.#trailersWanted) {
      const out: Record<string, string> = {};
      for (let i = 0; i < trailers.length; i += 2) {
        const name = trailers[i] as string;
        if (name === 'trailer') continue;
        const prior = out[name];
        out[name] = prior === undefined ? (trailers[i + 1] as string) : `${prior}, ${trailers[i + 1] as string}`;
      }
      this.res.addTrailers(out);
    }
    this.#end();
  }

  h1Failed(err: Error): void {
    this.#call = null;
    if (this.done) return;
    if (this.res.headersSent) {
      this.#cut();
      return;
    }
    this.fail(h1Error(err, this.resourceId));
  }

  // ---- endings -----------------------------------------------------------------

  #responseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
    const out: OutgoingHttpHeaders = {};
    for (const name in headers) if (name.charCodeAt(0) !== 0x3a && !DROP_RESPONSE.has(name)) out[name] = headers[name];
    if (this.#telemetry !== null) Object.assign(out, this.#telemetry);
    if (this.conn.draining) out.connection = 'close';
    return out;
  }

  onTimeout(): void {
    this.#timer = null;
    if (this.done || this.res.headersSent) return;
    this.fail(new PolyproxyError('TIMEOUT', `the backend did not answer within ${this.conn.bridge.settings.backendTimeoutMs} ms`, { source: 'backend', resourceId: this.resourceId }));
  }

  #clearTimer(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
  }

  /** Answers the failure when nothing was sent yet (and closes the connection after it), else cuts the connection. */
  fail(err: PolyproxyError): void {
    if (this.done) return;
    this.#cancelBackend();
    this.conn.core.failed(err);
    if (this.res.headersSent) {
      this.#cut();
      return;
    }
    this.#finished();
    sendErrorPage(this.res, err, err.resourceId ?? this.resourceId, { accept: this.req.headers.accept, headRequest: this.req.method === 'HEAD' });
    // A request body still coming is not read further: the connection closes after the page.
    this.req.unpipe();
  }

  #end(): void {
    if (this.done) return;
    this.#finished();
    this.res.end();
  }

  /** Mid-response failure: the client connection is cut, as on the HTTP/1.1 path. */
  #cut(): void {
    this.#cancelBackend();
    this.#finished();
    this.conn.socket.destroy();
  }

  #finished(): void {
    this.done = true;
    this.#throttle?.stop();
    this.#clearTimer();
    if (this.conn.current === this) this.conn.current = null;
  }

  #cancelBackend(): void {
    this.#clearTimer();
    const call = this.#call;
    if (call !== null) {
      this.#call = null;
      call.cancel();
    }
    const upstream = this.#upstream;
    if (upstream !== null && !upstream.closed && !upstream.destroyed) upstream.close(NGHTTP2_CANCEL);
  }

  /** The client went away before the response ended. */
  onClientClose(): void {
    if (this.done) return;
    this.#cancelBackend();
    this.#finished();
  }
}

function serverOnConnection(bridge: H1Bridge, socket: Socket): void {
  bridge.adopt(socket as BridgedSocket);
}

function serverOnRequest(req: IncomingMessage, res: ServerResponse): void {
  const conn = (req.socket as BridgedSocket)[kConnection];
  if (conn === undefined) {
    res.destroy();
    return;
  }
  const request = new BridgedRequest(conn, req, res);
  conn.current = request;
  res.once('close', () => request.onClientClose());
  request.start();
}

function serverOnUpgrade(req: IncomingMessage, socket: Socket): void {
  const resourceId = normalizeHost(req.headers.host);
  const err = new HttpStatusError('PROTOCOL', 501, 'an upgrade on a connection that reached an HTTP/2 route is not supported', { source: 'client', ...(resourceId === undefined ? {} : { resourceId }) });
  socket.end(errorResponse(err, resourceId));
}

function requestOnTimeout(request: BridgedRequest): void {
  request.onTimeout();
}

function destroySocket(socket: Socket): void {
  if (!socket.destroyed) socket.destroy();
}

function noop(): void {}
