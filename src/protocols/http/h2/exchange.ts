/**
 * One HTTP/2 client stream: routed on its own `:authority` (lowercased,
 * port stripped, exactly as Host on HTTP/1.1), then relayed to an HTTP/1.1
 * backend (the proxy's own client, h1-backends.ts) or, for routes with `protocol: h2` and
 * every gRPC request, to an HTTP/2 backend stream (h2-backends.ts).
 * Failures are answered on this stream only — the connection's other
 * streams go on: the HTTP/1.1 status table and error page, or for gRPC a
 * trailers-only response with the matching grpc-status.
 *
 * Backpressure both ways: a false write() on the client stream (wire/
 * stream.ts) pauses the backend (the HTTP/1.1 call's socket, or the pipe
 * from the backend stream) until the stream drains (onClientDrain, or
 * 'drain' for the pipe); request bodies are read from the client stream by
 * the HTTP/1.1 client (pausing it while the backend socket is full) or
 * piped. The client stream calls the exchange directly (StreamOwner); the
 * backend stream's handlers are module-level functions that find the
 * exchange through a symbol field.
 */
import http2 from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import type { Endpoint } from '../../../core/endpoint.ts';
import { PolyproxyError, toPolyproxyError } from '../../../core/errors.ts';
import { HttpStatusError, errorPage } from '../../../core/http-error-response.ts';
import type { TokenBucket } from '../../../core/limits/token-bucket.ts';
import { OutThrottle } from './out-throttle.ts';
import { isWebSocketConnect, openWebSocketTunnel } from './ws-tunnel.ts';
import type { RouteDecision } from '../../../core/router.ts';
import { normalizeHost } from '../session.ts';
import type { H2Connection } from './front.ts';
import { GRPC_DEADLINE_EXCEEDED, grpcErrorHeaders, isGrpc, parseGrpcTimeout } from './grpc.ts';
import { forwardableTrailers, h1RequestHead, h2RequestHeaders, rawToHeaders, responseHeaders, trailerHeaders } from './headers.ts';
import { BODY_CHUNKED, BODY_LENGTH, BODY_NONE, h1Error } from './h1-backends.ts';
import type { H1Call, H1Request } from './h1-backends.ts';
import { DialError } from './dial.ts';
import { requestRefusal, responseBucket, routeFailure } from './route-request.ts';
import type { RequestHead } from './wire/request-fields.ts';
import type { H2Stream, StreamOwner } from './wire/stream.ts';

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR } = http2.constants;

const END_STREAM = Object.freeze({ endStream: true });
const WAIT_FOR_TRAILERS = Object.freeze({ waitForTrailers: true });

const kExchange = Symbol('polyproxy.h2.exchange');
type ExchangeStream = ClientHttp2Stream & { [kExchange]?: H2Exchange };

/** Deadline kinds. */
const NO_DEADLINE = 0;
/** The backend must answer (response headers) within backendTimeoutMs: 504. */
const BACKEND_DEADLINE = 1;
/** The gRPC call's grpc-timeout: DEADLINE_EXCEEDED. */
const GRPC_DEADLINE = 2;

export class H2Exchange implements H1Request, StreamOwner {
  readonly conn: H2Connection;
  readonly stream: H2Stream;
  readonly raw: readonly string[];
  readonly grpc: boolean;
  readonly method: string;
  readonly accept: string | undefined;
  readonly authority: string | undefined;
  readonly path: string;
  /** RFC 8441 `:protocol` (extended CONNECT). */
  readonly protocol: string | undefined;
  readonly grpcTimeout: string | undefined;
  resourceId: string | undefined = undefined;
  /** Response headers went to the client. */
  responded = false;
  /** The exchange is over (answered, relayed to the end, or cut). */
  done = false;
  #timer: NodeJS.Timeout | null = null;
  #deadlineKind = NO_DEADLINE;
  #upstream: ClientHttp2Stream | null = null;
  #session: ClientHttp2Session | null = null;
  /** HTTP/1.1 backend: the request on its way (waiting, dialing or on a connection). */
  #call: H1Call | null = null;
  /** The client sent content-length (the body is forwarded as it is, else chunked). */
  #contentLength = false;
  /** H1Request: built on the first attempt, kept for a failover. */
  requestHead = '';
  bodyFraming = BODY_NONE;
  body: H2Stream | null = null;
  #trailers: OutgoingHttpHeaders | null = null;
  #decision: RouteDecision | null = null;
  /** Index of the candidate the HTTP/1.1 request went to (failover on a refused connect). */
  #candidate = 0;
  #telemetry: OutgoingHttpHeaders | null = null;
  #resolveStarted = 0;
  /** HTTP/1.1 backend: the response head, sent with the first chunk or at the end (so a bodyless response is one HEADERS frame with END_STREAM). */
  #head: string[] | null = null;
  /** HTTP/1.1 backend: the latest body chunk, held back so the last one goes out with end() (one DATA frame with END_STREAM). */
  #held: Buffer | null = null;
  /** HTTP/1.1 backend: the response is chunked, so it may end with trailers; the stream waits for them ('wantTrailers'). */
  #h1Trailers = false;
  /** The tenant's bandwidth.outBytesPerSecond bucket (null: unlimited), and the response's throttle on it (out-throttle.ts). */
  #outBucket: TokenBucket | null = null;
  #throttle: OutThrottle | null = null;

  /** `head` null: a request refused before it was read (431), answered with fail(). */
  constructor(conn: H2Connection, stream: H2Stream, head: RequestHead | null, raw: readonly string[]) {
    this.conn = conn;
    this.stream = stream;
    this.raw = raw;
    this.method = head?.method ?? 'GET';
    this.grpc = isGrpc(head?.contentType);
    this.accept = head?.accept;
    this.authority = head?.authority ?? head?.host;
    this.path = head?.path ?? '/';
    this.protocol = head?.protocol;
    this.grpcTimeout = head?.grpcTimeout;
    this.#contentLength = head !== null && head.contentLength >= 0;
    stream.owner = this;
  }

  /** Routes the stream and sends it on. */
  start(): void {
    if (this.method === 'CONNECT' && !isWebSocketConnect(this.method, this.protocol)) {
      // Only RFC 8441 extended CONNECT for WebSockets (ws-tunnel.ts); a plain CONNECT tunnel is not offered.
      this.fail(new HttpStatusError('PROTOCOL', 501, 'CONNECT is not supported over HTTP/2 by this proxy', { source: 'client' }));
      return;
    }
    const host = normalizeHost(this.authority);
    this.resourceId = host;
    if (host === undefined) {
      this.fail(new PolyproxyError('PROTOCOL', 'missing or invalid :authority', { source: 'client' }));
      return;
    }
    if (this.grpc) {
      const ms = parseGrpcTimeout(this.grpcTimeout);
      if (ms !== undefined) this.#setDeadline(GRPC_DEADLINE, ms);
    }
    const conn = this.conn;
    if (conn.telemetryHeaders) this.#resolveStarted = performance.now();
    const router = conn.core.router;
    const decision = router.cached(host, conn.resolveContext());
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
    // A tenant with limits: its requestsPerSecond per stream, as per HTTP/1.1 request (429 + Retry-After; gRPC 8 RESOURCE_EXHAUSTED).
    const refusal = requestRefusal(conn.core.router, decision);
    if (refusal !== null) {
      this.fail(refusal);
      return;
    }
    this.#outBucket = responseBucket(decision);
    conn.core.served(decision.entry.resourceId);
    conn.counters.requestsH2++;
    this.#decision = decision;
    if (conn.telemetryHeaders) this.#telemetry = { 'x-proxy-resolve-ms': (performance.now() - this.#resolveStarted).toFixed(3), 'x-proxy-cache': decision.cacheHit ? 'hit' : 'miss' };
    if (this.method === 'CONNECT') void openWebSocketTunnel(this, decision);
    else if (this.grpc || decision.entry.route.protocol === 'h2') void this.#toH2(decision);
    else this.#toH1(decision.candidates[0] as Endpoint);
  }

  // ---- HTTP/1.1 backend (h1-backends.ts) ----------------------------------

  #toH1(endpoint: Endpoint): void {
    const conn = this.conn;
    const stream = this.stream;
    if (this.requestHead === '') {
      const hasBody = !stream.endAfterHeaders;
      const framing = !hasBody ? BODY_NONE : this.#contentLength ? BODY_LENGTH : BODY_CHUNKED;
      this.bodyFraming = framing;
      this.body = hasBody ? stream : null;
      this.requestHead = h1RequestHead(this.method, this.path, this.raw, this.authority as string, conn.forward, framing === BODY_CHUNKED);
    }
    this.#setDeadline(BACKEND_DEADLINE, conn.backendTimeoutMs);
    this.#call = conn.front.h1.send(endpoint, conn.core.router.health, this);
  }

  h1Sent(call: H1Call, reused: boolean): void {
    this.#call = call; // send() may not have returned yet (an idle connection carries the request at once)
    if (this.#telemetry !== null) this.#telemetry['x-proxy-pool'] = reused ? 'reused' : 'new';
    // The call (pause/resume on the backend socket) is the response's source; a retry keeps the throttle.
    if (this.#outBucket !== null && this.#throttle === null) this.#throttle = new OutThrottle(this.#outBucket, call, this.stream);
  }

  h1Response(_status: number, headers: string[], chunked: boolean): void {
    if (this.done) return;
    if (this.#deadlineKind === BACKEND_DEADLINE) this.#clearDeadline();
    this.responded = true;
    const telemetry = this.#telemetry;
    if (telemetry !== null) for (const name in telemetry) headers.push(name, String(telemetry[name]));
    this.#head = headers;
    this.#h1Trailers = chunked && !this.stream.writableEnded;
  }

  h1Data(chunk: Buffer): void {
    const stream = this.stream;
    if (this.done || stream.writableEnded || stream.destroyed) return;
    const head = this.#head;
    if (head !== null) {
      this.#head = null;
      this.#respondH1(stream, head);
    }
    const held = this.#held;
    this.#held = chunk;
    // A full client stream pauses the backend until onClientDrain.
    if (held !== null && !stream.write(held)) this.#call?.pause();
    if (this.#throttle !== null) this.#throttle.spend(chunk.length);
  }

  /** The HTTP/1.1 response head: for a chunked body, the stream's end waits for the backend's trailers (chunked trailer fields → a trailing HEADERS frame). */
  #respondH1(stream: H2Stream, head: string[]): void {
    stream.respond(head, this.#h1Trailers ? WAIT_FOR_TRAILERS : undefined);
  }

  h1End(trailers: string[] | null): void {
    this.#call = null;
    if (this.done) return;
    this.done = true;
    if (this.#h1Trailers && trailers !== null) this.#trailers = rawToHeaders(trailers);
    const stream = this.stream;
    const head = this.#head;
    const held = this.#held;
    this.#head = null;
    this.#held = null;
    if (stream.destroyed) return;
    if (head !== null) {
      if (this.#h1Trailers && this.#trailers !== null) {
        this.#respondH1(stream, head);
        stream.end();
      } else stream.respond(head, END_STREAM);
    } else if (stream.writableEnded) return;
    else if (held !== null) stream.end(held);
    else stream.end();
  }

  h1Failed(err: Error): void {
    this.#call = null;
    if (this.done) return;
    const decision = this.#decision;
    // A refused connect sent nothing: a bodyless request may go to the next candidate.
    if (err instanceof DialError && !this.responded && this.stream.endAfterHeaders && decision !== null && this.#candidate + 1 < decision.candidates.length) {
      this.#candidate++;
      this.#toH1(decision.candidates[this.#candidate] as Endpoint);
      return;
    }
    this.#backendFailed(h1Error(err, this.resourceId));
  }

  // ---- HTTP/2 backend (node:http2) -----------------------------------------

  async #toH2(decision: RouteDecision): Promise<void> {
    const conn = this.conn;
    if (!this.grpc) this.#setDeadline(BACKEND_DEADLINE, conn.backendTimeoutMs);
    let session: ClientHttp2Session;
    try {
      const timeoutMs = decision.entry.route.timeoutMs ?? conn.core.connectTimeoutMs;
      const leased = await conn.front.h2.lease(decision, conn.core.router, timeoutMs, conn.core.tcpKeepAliveMs);
      session = leased.session;
      if (this.done) {
        conn.front.h2.release(session);
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
    const stream = this.stream;
    let upstream: ClientHttp2Stream;
    try {
      // A body may end with trailers (known only at its end): the request waits for them ('wantTrailers').
      upstream = session.request(h2RequestHeaders(this.raw, this.authority as string, conn.forward, decision.entry.route.tls === undefined ? 'http' : 'https'), stream.endAfterHeaders ? END_STREAM : WAIT_FOR_TRAILERS);
    } catch (err) {
      this.#backendFailed(new PolyproxyError('BACKEND_UNREACHABLE', `backend session failed: ${(err as Error).message}`, { source: 'backend', resourceId: this.resourceId }));
      return;
    }
    this.#upstream = upstream;
    (upstream as ExchangeStream)[kExchange] = this;
    upstream.on('response', upstreamOnResponse);
    upstream.on('trailers', upstreamOnTrailers);
    if (!stream.endAfterHeaders) upstream.on('wantTrailers', upstreamOnWantTrailers);
    upstream.on('error', noop);
    upstream.on('close', upstreamOnClose);
    if (!stream.endAfterHeaders) stream.pipe(upstream);
  }

  onUpstreamResponse(headers: IncomingHttpHeaders): void {
    const upstream = this.#upstream as ClientHttp2Stream;
    const status = Number(headers[':status']);
    if (this.done || status < 200) return;
    if (this.#deadlineKind === BACKEND_DEADLINE) this.#clearDeadline();
    this.responded = true;
    const stream = this.stream;
    if (upstream.endAfterHeaders) {
      // Trailers-only (a gRPC status in the one HEADERS frame): it passes as such.
      stream.respond(responseHeaders(status, headers, this.#telemetry), END_STREAM);
      return;
    }
    stream.respond(responseHeaders(status, headers, this.#telemetry), WAIT_FOR_TRAILERS);
    if (this.#outBucket !== null) {
      this.#throttle = new OutThrottle(this.#outBucket, upstream, stream);
      upstream.on('data', upstreamOnData);
    }
    // Readable.pipe needs only write/end/'drain'/'close' of its destination, which H2Stream has.
    upstream.pipe(stream as unknown as NodeJS.WritableStream);
  }

  /** H1Request: the client's request trailers, for a chunked body to an HTTP/1.1 backend. */
  requestTrailers(): readonly string[] | null {
    return forwardableTrailers(this.stream.trailers);
  }

  /** The request body went to the HTTP/2 backend: its trailers (or an empty DATA frame with END_STREAM). */
  onUpstreamWantTrailers(): void {
    const trailers = forwardableTrailers(this.stream.trailers);
    this.#upstream?.sendTrailers(trailers === null ? {} : rawToHeaders(trailers));
  }

  onUpstreamTrailers(trailers: IncomingHttpHeaders): void {
    this.#trailers = trailerHeaders(trailers);
  }

  onWantTrailers(): void {
    // An empty list goes out as an empty DATA frame with END_STREAM.
    this.stream.sendTrailers(this.#trailers ?? {});
  }

  onUpstreamClose(): void {
    const upstream = this.#upstream as ClientHttp2Stream;
    this.#releaseSession();
    if (this.done) return;
    const code = upstream.rstCode ?? NGHTTP2_NO_ERROR;
    if (code === NGHTTP2_NO_ERROR && this.responded) {
      this.done = true; // the pipe ends the client stream; 'wantTrailers' sends the trailers
      this.#clearDeadline();
      return;
    }
    if (!this.responded) {
      this.#backendFailed(new PolyproxyError('BACKEND_UNREACHABLE', `the backend reset the stream (HTTP/2 error ${code})`, { source: 'backend', resourceId: this.resourceId }));
      return;
    }
    // Mid-response: the client stream is reset with the backend's code.
    this.#cut(code === NGHTTP2_NO_ERROR ? NGHTTP2_INTERNAL_ERROR : code);
  }

  #releaseSession(): void {
    const session = this.#session;
    if (session === null) return;
    this.#session = null;
    this.conn.front.h2.release(session);
  }

  // ---- deadlines -----------------------------------------------------------

  #setDeadline(kind: number, ms: number): void {
    if (this.#timer !== null) {
      // A gRPC deadline stays: the backend deadline does not replace it.
      if (this.#deadlineKind === GRPC_DEADLINE) return;
      clearTimeout(this.#timer);
    }
    this.#deadlineKind = kind;
    this.#timer = setTimeout(exchangeOnTimeout, ms, this);
  }

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
    this.#deadlineKind = NO_DEADLINE;
    if (this.done || kind === NO_DEADLINE) return;
    const err =
      kind === GRPC_DEADLINE
        ? new PolyproxyError('TIMEOUT', 'the call did not complete within its grpc-timeout', { source: 'client', resourceId: this.resourceId })
        : new PolyproxyError('TIMEOUT', `the backend did not answer within ${this.conn.backendTimeoutMs} ms`, { source: 'backend', resourceId: this.resourceId });
    this.#cancelBackend();
    if (!this.responded) this.fail(err, kind === GRPC_DEADLINE ? GRPC_DEADLINE_EXCEEDED : undefined);
    else this.#cut(NGHTTP2_CANCEL);
  }

  // ---- endings -------------------------------------------------------------

  #backendFailed(err: PolyproxyError): void {
    if (!this.responded) this.fail(err);
    else this.#cut(NGHTTP2_INTERNAL_ERROR);
  }

  /** Answers the failure on this stream (error page, or trailers-only for gRPC) when nothing was sent yet. */
  fail(err: PolyproxyError, grpcStatus?: number): void {
    if (this.done) return;
    this.done = true;
    this.#clearDeadline();
    this.#cancelBackend();
    const conn = this.conn;
    conn.core.failed(err);
    const stream = this.stream;
    if (this.responded || stream.destroyed || stream.closed) {
      if (!stream.destroyed) stream.close(NGHTTP2_INTERNAL_ERROR);
      return;
    }
    this.responded = true;
    const resourceId = err.resourceId ?? this.resourceId;
    if (this.grpc) {
      const page = errorPage(err, resourceId, { format: 'text' });
      stream.respond(grpcErrorHeaders(err, grpcStatus, page.body), { endStream: true });
    } else {
      const page = errorPage(err, resourceId, { accept: this.accept, headRequest: this.method === 'HEAD' });
      const headers: OutgoingHttpHeaders = { ':status': page.status, 'cache-control': 'no-store' };
      for (let i = 0; i < page.headers.length; i += 2) headers[page.headers[i] as string] = page.headers[i + 1];
      // No body (a HEAD request's page): the HEADERS frame ends the stream.
      if (page.body.length === 0) stream.respond(headers, END_STREAM);
      else {
        stream.respond(headers);
        stream.end(Buffer.from(page.body, 'utf8'));
      }
    }
    // A request body still coming is not wanted: RST_STREAM NO_ERROR after the response (RFC 9113 §8.1).
    if (!stream.closed) {
      if (stream.writableFinished) stream.close(NGHTTP2_NO_ERROR);
      else stream.once('finish', closeNoError);
    }
  }

  /** The drain deadline passed: answer 503 / UNAVAILABLE if nothing was sent, else reset. */
  shutdown(): void {
    if (this.done) return;
    this.fail(new PolyproxyError('SHUTTING_DOWN', 'the proxy is shutting down', { source: 'internal', resourceId: this.resourceId }));
  }

  #cut(code: number): void {
    this.done = true;
    this.#clearDeadline();
    this.#cancelBackend();
    if (!this.stream.destroyed) this.stream.close(code);
  }

  #cancelBackend(): void {
    const call = this.#call;
    if (call !== null) {
      this.#call = null;
      call.cancel();
    }
    const upstream = this.#upstream;
    if (upstream !== null && !upstream.closed && !upstream.destroyed) upstream.close(NGHTTP2_CANCEL);
  }

  /** The client reset the stream (or the connection went). */
  onClientAborted(): void {
    this.conn.streamReset();
    if (this.done) return;
    this.done = true;
    this.#clearDeadline();
    this.#cancelBackend();
  }

  /** HTTP/2 backend, a tenant with a bandwidth limit: the chunk the pipe is relaying spends the bucket. */
  onUpstreamData(chunk: Buffer): void {
    this.#throttle?.spend(chunk.length);
  }

  onClientClose(): void {
    this.#throttle?.stop();
    this.conn.streamClosed(this);
    if (!this.done) {
      this.done = true;
      this.#clearDeadline();
      this.#cancelBackend();
    }
  }

  onClientDrain(): void {
    if (this.#throttle === null || !this.#throttle.holding) this.#call?.resume();
  }
}

function exchangeOnTimeout(exchange: H2Exchange): void {
  exchange.onTimeout();
}
function upstreamOnResponse(this: ExchangeStream, headers: IncomingHttpHeaders): void {
  this[kExchange]?.onUpstreamResponse(headers);
}
function upstreamOnData(this: ExchangeStream, chunk: Buffer): void {
  this[kExchange]?.onUpstreamData(chunk);
}
function upstreamOnWantTrailers(this: ExchangeStream): void {
  this[kExchange]?.onUpstreamWantTrailers();
}
function upstreamOnTrailers(this: ExchangeStream, trailers: IncomingHttpHeaders): void {
  this[kExchange]?.onUpstreamTrailers(trailers);
}
function upstreamOnClose(this: ExchangeStream): void {
  this[kExchange]?.onUpstreamClose();
}
function closeNoError(this: H2Stream): void {
  if (!this.closed) this.close(NGHTTP2_NO_ERROR);
}
function noop(): void {}
