/**
 * The FastCGI gateway listener (`protocol: fastcgi`): HTTP in, FastCGI out,
 * like nginx `fastcgi_pass`. It runs its own node:http server (php-fpm, not
 * HTTP parsing, is the bottleneck) and implements ProxyListener so the
 * supervisor drains it like any listener.
 *
 * Per request: path → script and params (params.ts) → a backend chosen by
 * core's picker (src/core/balance.ts) among those up (core's breaker) → a
 * pooled FCGI_KEEP_CONN connection (core's pool through the FastCGI
 * library's ConnectionPool; new ones dialled by core's connectFirst, the
 * candidates behind the first as fallbacks) → BEGIN_REQUEST + PARAMS (+ the body or its stream) → the CGI
 * head of STDOUT becomes the HTTP status and headers, the rest is streamed
 * to the client with backpressure; STDERR goes to the log.
 */
import type { ListenerUpdate } from '../../core/listener-base.ts';
import type { TenantLimits } from '../../core/limits/tenant-limits.ts';
import { normalizeHost } from '../http/session.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Endpoint } from '../../core/endpoint.ts';
import { roundRobin, shuffled } from '../../core/balance.ts';
import { connectFirst } from '../../core/connect.ts';
import type { Connected } from '../../core/connect.ts';
import type { Rotation } from '../../core/balance.ts';
import { PolyproxyError } from '../../core/errors.ts';
import { EndpointHealth } from '../../core/health.ts';
import { mayRetry } from '../../core/retry.ts';
import type { Logger } from '../../core/logger.ts';
import { ServerListener } from '../../core/server-listener.ts';
import { packageVersion } from '../../core/version.ts';
import { CgiHeadParser } from '../../fastcgi/cgi-head.ts';
import type { CgiHead } from '../../fastcgi/cgi-head.ts';
import { FastCgiConnection } from '../../fastcgi/connection.ts';
import type { ExchangeHandler } from '../../fastcgi/connection.ts';
import type { FastCgiError } from '../../fastcgi/errors.ts';
import { encodeNameValuePairs } from '../../fastcgi/name-value.ts';
import { ConnectionPool } from '../../fastcgi/pool.ts';
import { bodyTooLarge, toGatewayError } from './errors.ts';
import { BadRequestPath, buildParams, resolveScript } from './params.ts';
import type { ParamsSettings } from './params.ts';

export interface GatewaySettings {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly reusePort: boolean;
  readonly backends: readonly Endpoint[];
  readonly balance: 'round-robin' | 'random';
  readonly documentRoot: string;
  readonly index: string;
  readonly params: Readonly<Record<string, string>>;
  readonly connectTimeoutMs: number;
  readonly backendTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly healthCheckIntervalMs: number;
  readonly maxConnectionsPerBackend: number;
  readonly backendIdleTimeoutMs: number;
  readonly maxBufferedBodyBytes: number;
  /** Concurrent client connections (0 = no limit). */
  readonly maxConnections: number;
  /** TCP keepalive on client connections (core/server-listener.ts) and on the FastCGI connections; 0 = off. */
  readonly tcpKeepAliveMs?: number;
}

/** Body bytes held back with the head before streaming starts anyway. */
const HOLD_LIMIT = 64 * 1024;
/** Most stderr bytes kept per request for the log line. */
const MAX_STDERR_LOG = 8192;
/** Response headers that describe the FastCGI hop, not the HTTP one. */
const HOP_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te', 'trailer']);

export class FastCgiGateway extends ServerListener {
  readonly settings: GatewaySettings;
  /** Core's circuit breaker, set the gateway's way: down at the first failed connect, up when a probe connects. */
  readonly health: EndpointHealth;
  readonly pools: readonly ConnectionPool[];
  readonly #poolOf = new Map<Endpoint, ConnectionPool>();
  readonly #rotation: Rotation = { next: 0 };
  readonly paramsSettings: ParamsSettings;
  readonly #sockets = new Set<Socket>();
  /** The config's tenant limits (requestsPerSecond per Host); a reload swaps them. */
  #limits: TenantLimits | undefined;

  constructor(settings: GatewaySettings, log: Logger, limits?: TenantLimits) {
    super(
      { ...settings, protocol: 'fastcgi', errorFormat: 'html' },
      {
        keepAliveTimeout: settings.keepAliveTimeoutMs,
        headersTimeout: settings.requestTimeoutMs,
        // Bodies may be large uploads: only the head has a deadline; the backend timeout covers the rest.
        requestTimeout: 0,
        noDelay: true,
      },
      log,
    );
    this.settings = settings;
    this.health = new EndpointHealth(
      {
        intervalMs: settings.healthCheckIntervalMs,
        timeoutMs: Math.min(settings.connectTimeoutMs, settings.healthCheckIntervalMs),
        failureThreshold: 1,
        fall: 1,
        rise: 1,
        // No trial requests: a down backend comes back only when a probe connects.
        openMs: Number.MAX_SAFE_INTEGER,
        forgetAfterMs: Number.POSITIVE_INFINITY,
      },
      this.log,
    );
    this.health.watch(settings.backends, 'tcp', true);
    this.pools = settings.backends.map(
      (endpoint) =>
        new ConnectionPool(endpoint, {
          connectTimeoutMs: settings.connectTimeoutMs,
          maxConnections: settings.maxConnectionsPerBackend,
          maxIdle: settings.maxConnectionsPerBackend,
          // An idle kept connection pins a php-fpm worker; free it when traffic stops.
          idleTimeoutMs: settings.backendIdleTimeoutMs,
          queueTimeoutMs: settings.backendTimeoutMs,
        }),
    );
    for (const pool of this.pools) this.#poolOf.set(pool.endpoint, pool);
    this.paramsSettings = { documentRoot: settings.documentRoot.replace(/\/+$/, ''), index: settings.index, serverSoftware: `polyproxy/${packageVersion()}`, extra: settings.params };
    this.server.on('connection', (socket: Socket) => this.#accept(socket));
    this.#limits = limits;
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      if (!this.refusedRequest(req, res) && !this.#limited(req, res)) new Exchange(this, req, res).run();
    });
  }

  /** A reload: only the tenant limits apply to a running gateway (its backends need a restart). */
  reconfigure(update: ListenerUpdate): void {
    this.#limits = update.router.limits;
  }

  /**
   * Tenant limits for FastCGI requests: the tenant is the request's Host
   * (lower case, without port); over its requestsPerSecond the answer is
   * 429 with Retry-After and the connection closes, as for http.
   */
  #limited(req: IncomingMessage, res: ServerResponse): boolean {
    const limits = this.#limits;
    if (limits === undefined) return false;
    const host = normalizeHost(req.headers.host);
    if (host === undefined) return false;
    const refusal = limits.request(host, limits.resolve(host, undefined));
    if (refusal === null) return false;
    this.countFailure(refusal);
    req.resume();
    this.sendError(req, res, refusal, { resourceId: host });
    return true;
  }

  /** The backends to try for one request, in order (round-robin or shuffled), minus those whose breaker is open. */
  candidates(): readonly ConnectionPool[] {
    const backends = this.settings.backends;
    const ordered = this.settings.balance === 'random' ? shuffled(backends) : roundRobin(backends, this.#rotation);
    return this.health.usable(ordered).map((endpoint) => this.#poolOf.get(endpoint) as ConnectionPool);
  }

  /** The pool of one of the backends. */
  poolOf(endpoint: Endpoint): ConnectionPool {
    return this.#poolOf.get(endpoint) as ConnectionPool;
  }

  get sessions(): number {
    return this.#sockets.size;
  }

  override async listen(port = this.settings.port): Promise<AddressInfo> {
    const address = await super.listen(port);
    this.health.start();
    return address;
  }

  destroyAll(reason: string): void {
    this.log.debug({ reason, sessions: this.#sockets.size }, 'closing remaining connections');
    for (const socket of this.#sockets) socket.destroy();
    this.#closeBackends();
  }

  #accept(socket: Socket): void {
    if (!this.admit(socket, this.#sockets.size)) return;
    this.counters.open++;
    this.#sockets.add(socket);
    socket.once('close', () => {
      this.#sockets.delete(socket);
      this.counters.open--;
      this.settle();
    });
  }

  /** Draining and no client left: free the backends' kept connections and stop probing. */
  protected override drained(): void {
    this.#closeBackends();
  }

  #closeBackends(): void {
    this.health.stop();
    for (const pool of this.pools) pool.close();
  }
}

function endpointOf(pool: ConnectionPool): Endpoint {
  return pool.endpoint;
}

/**
 * One run of core's connect loop over every candidate's endpoint, in order,
 * under the slot reserved on the first; every result feeds the gateway's
 * breakers. Failover to another candidate: the slot follows the connection,
 * as in core's HTTP pool (src/protocols/http/backend-slot.ts), even past that
 * pool's limit for this one request. Rejects with BACKEND_UNREACHABLE (502)
 * naming each endpoint tried; the slot is given back.
 */
async function dialUnderSlot(gw: FastCgiGateway, candidates: readonly ConnectionPool[]): Promise<FastCgiConnection> {
  const first = candidates[0] as ConnectionPool;
  let connected: Connected;
  try {
    connected = await connectFirst(candidates.map(endpointOf), gw.settings.connectTimeoutMs, gw.health, { keepAliveMs: gw.settings.tcpKeepAliveMs ?? 0 });
  } catch (err) {
    first.unreserve();
    throw err;
  }
  if (connected.endpoint !== first.endpoint) {
    first.unreserve();
    gw.poolOf(connected.endpoint).adopt();
  }
  return new FastCgiConnection(connected.endpoint, connected.socket);
}

const BODY_NONE = 0;
const BODY_STREAM = 1;
const BODY_BUFFERED = 2;

/** One HTTP request carried over FastCGI. Fields set once; handlers are methods (no closures per chunk). */
class Exchange implements ExchangeHandler {
  readonly gw: FastCgiGateway;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  conn: FastCgiConnection | null = null;
  pool: ConnectionPool | null = null;
  bodyMode = BODY_NONE;
  buffered: Buffer | null = null;
  params: Buffer | null = null;
  headParser: CgiHeadParser | null = new CgiHeadParser();
  /** The parsed head while the first body bytes are held back (see onStdout). */
  head: CgiHead | null = null;
  /** Body bytes held back with the head: a response that ends in the same read goes out in one write with Content-Length. */
  held: Buffer[] | null = null;
  heldBytes = 0;
  flushQueued = false;
  stderr: Buffer[] | null = null;
  stderrBytes = 0;
  /** Times the request was sent again (core/retry.ts decides). */
  retries = 0;
  done = false;
  readonly onRequestData = (chunk: Buffer): void => {
    this.gw.counters.bytesIn += chunk.length;
    if (this.conn !== null && !this.conn.writeStdin(chunk)) this.req.pause();
  };
  readonly onRequestEnd = (): void => {
    this.conn?.endStdin();
  };
  readonly onResponseDrain = (): void => {
    this.conn?.resume();
  };
  readonly onResponseClose = (): void => {
    if (this.done) return;
    // The client left before the response ended: abandon the FastCGI request (php-fpm sees the close).
    this.done = true;
    if (this.conn !== null && this.pool !== null) this.pool.discard(this.conn);
    this.conn = null;
  };

  constructor(gw: FastCgiGateway, req: IncomingMessage, res: ServerResponse) {
    this.gw = gw;
    this.req = req;
    this.res = res;
  }

  /** Never throws: a bug or a surprise becomes a 5xx for this request, not a crashed process. */
  run(): void {
    try {
      this.start();
    } catch (err) {
      this.fail(toGatewayError(err));
    }
  }

  readonly onUnexpected = (err: unknown): void => {
    if (this.conn !== null && this.pool !== null) this.pool.discard(this.conn);
    this.conn = null;
    this.fail(toGatewayError(err));
  };

  start(): void {
    this.res.once('close', this.onResponseClose);
    const req = this.req;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    let target;
    try {
      target = resolveScript(q < 0 ? url : url.slice(0, q), this.gw.paramsSettings.index);
    } catch (err) {
      if (err instanceof BadRequestPath) return this.fail(new PolyproxyError('PROTOCOL', `bad request path: ${err.message}`, { source: 'client' }));
      throw err;
    }
    const lengthHeader = req.headers['content-length'];
    let contentLength = '';
    if (lengthHeader !== undefined) {
      contentLength = lengthHeader;
      this.bodyMode = lengthHeader === '0' ? BODY_NONE : BODY_STREAM;
    } else if (req.headers['transfer-encoding'] !== undefined) {
      this.bodyMode = BODY_BUFFERED;
    }
    const socket = req.socket;
    const facts = {
      method: req.method ?? 'GET',
      url,
      httpVersion: req.httpVersion,
      rawHeaders: req.rawHeaders,
      remoteAddress: socket.remoteAddress ?? '',
      remotePort: socket.remotePort ?? 0,
      localAddress: socket.localAddress ?? '',
      localPort: socket.localPort ?? 0,
      contentLength,
    };
    if (this.bodyMode === BODY_BUFFERED) {
      this.bufferBody()
        .then((body) => {
          if (body === null) return;
          this.buffered = body;
          this.params = encodeNameValuePairs(buildParams({ ...facts, contentLength: String(body.length) }, target, this.gw.paramsSettings));
          return this.connect();
        })
        .catch(this.onUnexpected);
      return;
    }
    this.params = encodeNameValuePairs(buildParams(facts, target, this.gw.paramsSettings));
    this.connect().catch(this.onUnexpected);
  }

  /** A chunked body, whole (PHP needs CONTENT_LENGTH); null when it was refused or the client left. */
  bufferBody(): Promise<Buffer | null> {
    const limit = this.gw.settings.maxBufferedBodyBytes;
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const req = this.req;
      const onData = (chunk: Buffer): void => {
        size += chunk.length;
        if (size > limit) {
          req.removeListener('data', onData);
          req.removeListener('end', onEnd);
          this.fail(bodyTooLarge(limit));
          resolve(null);
          return;
        }
        chunks.push(chunk);
      };
      const onEnd = (): void => {
        this.gw.counters.bytesIn += size;
        resolve(this.done ? null : Buffer.concat(chunks, size));
      };
      req.on('data', onData);
      req.once('end', onEnd);
      req.once('error', () => resolve(null));
    });
  }

  /**
   * A connection to a backend that is up, before any byte reaches one. The
   * balancer's first candidate decides, as its pool would alone: its newest
   * kept connection, else a new one when it has a free slot, else the next one
   * freed (its FIFO queue). A new connection is dialled by core's connect loop
   * with the other candidates behind the first (failover). No loop here.
   */
  async connect(): Promise<void> {
    const gw = this.gw;
    const candidates = gw.candidates();
    const first = candidates[0];
    if (first === undefined) return this.fail(new PolyproxyError('UNAVAILABLE', 'every fastcgi backend is down', { source: 'backend' }));
    let conn: FastCgiConnection | null;
    try {
      conn = first.takeIdle();
      // Full: wait for a connection another request gives back, or for a slot (null).
      if (conn === null && !first.reserve()) conn = await first.wait();
      if (conn === null) conn = await dialUnderSlot(gw, candidates);
    } catch (err) {
      return this.fail(toGatewayError(err));
    }
    const pool = gw.poolOf(conn.endpoint);
    if (this.done) {
      pool.release(conn);
      return;
    }
    this.conn = conn;
    this.pool = pool;
    this.begin();
  }

  begin(): void {
    const conn = this.conn as FastCgiConnection;
    const stream = this.bodyMode === BODY_STREAM;
    conn.begin(this.params as Buffer, this, { keepConn: true, timeoutMs: this.gw.settings.backendTimeoutMs, stdin: this.buffered, endStdin: !stream });
    if (stream) {
      this.req.on('data', this.onRequestData);
      this.req.once('end', this.onRequestEnd);
    }
  }

  /**
   * The head and the first body bytes are held until the end of the current
   * read (a microtask): a small response whose FCGI_END_REQUEST arrives in
   * the same read is sent with Content-Length in one write instead of a
   * chunked head, body and terminator. Anything longer streams.
   */
  onStdout(chunk: Buffer): void {
    if (this.done) return;
    const parser = this.headParser;
    if (parser !== null) {
      const parsed = parser.push(chunk);
      if (parsed === undefined) return;
      this.headParser = null;
      this.head = parsed.head;
      this.held = [];
      if (parsed.rest.length > 0) this.hold(parsed.rest);
      if (!this.flushQueued) {
        this.flushQueued = true;
        queueMicrotask(this.flushHeld);
      }
      return;
    }
    if (this.held !== null) {
      this.hold(chunk);
      return;
    }
    this.write(chunk);
  }

  hold(chunk: Buffer): void {
    (this.held as Buffer[]).push(chunk);
    this.heldBytes += chunk.length;
    if (this.heldBytes >= HOLD_LIMIT) this.flushHeld();
  }

  /** Starts streaming: head (chunked or the application's own Content-Length), then what was held. */
  readonly flushHeld = (): void => {
    const held = this.held;
    if (held === null || this.done) return;
    this.held = null;
    if (!this.writeHead(this.head as CgiHead, -1)) return;
    this.head = null;
    this.heldBytes = 0;
    for (const chunk of held) this.write(chunk);
  };

  write(chunk: Buffer): void {
    this.gw.counters.bytesOut += chunk.length;
    if (!this.res.write(chunk)) {
      this.conn?.pause();
      this.res.once('drain', this.onResponseDrain);
    }
  }

  /**
   * `contentLength` ≥ 0: the whole body is known (added unless the
   * application sent one or the status has no body). False when node:http
   * refused a header from the application (invalid characters): the request
   * then failed with 502 and the connection was dropped.
   */
  writeHead(head: CgiHead, contentLength: number): boolean {
    const flat: string[] = [];
    let hasLength = false;
    for (const [name, value] of head.headers) {
      const lower = name.toLowerCase();
      if (HOP_HEADERS.has(lower)) continue;
      if (lower === 'content-length') hasLength = true;
      flat.push(name, value);
    }
    if (contentLength >= 0 && !hasLength && this.req.method !== 'HEAD' && head.status >= 200 && head.status !== 204 && head.status !== 304) flat.push('Content-Length', String(contentLength));
    if (this.gw.draining) flat.push('connection', 'close');
    try {
      this.res.writeHead(head.status, head.statusText === '' ? undefined : head.statusText, flat);
      return true;
    } catch (err) {
      this.done = false;
      this.held = null;
      if (this.conn !== null && this.pool !== null) this.pool.discard(this.conn);
      this.conn = null;
      this.fail(new PolyproxyError('BACKEND_UNREACHABLE', `invalid response head from the backend: ${(err as Error).message}`, { source: 'backend', cause: err }));
      return false;
    }
  }

  onStderr(chunk: Buffer): void {
    if (this.stderrBytes >= MAX_STDERR_LOG) return;
    (this.stderr ??= []).push(Buffer.from(chunk.subarray(0, MAX_STDERR_LOG - this.stderrBytes)));
    this.stderrBytes += Math.min(chunk.length, MAX_STDERR_LOG - this.stderrBytes);
  }

  onEnd(): void {
    const conn = this.conn as FastCgiConnection;
    const pool = this.pool as ConnectionPool;
    this.conn = null;
    this.req.removeListener('data', this.onRequestData);
    this.res.removeListener('drain', this.onResponseDrain);
    pool.release(conn);
    this.logStderr();
    if (this.done) return;
    if (this.headParser !== null) {
      // The output ended without the blank line after the head (nginx: "upstream prematurely closed").
      this.fail(new PolyproxyError('BACKEND_UNREACHABLE', `${pool.endpoint.label} ended its output without a complete CGI head`, { source: 'backend' }));
      return;
    }
    this.done = true;
    const held = this.held;
    if (held !== null) {
      // The whole response arrived in one read: one write, with Content-Length.
      this.held = null;
      const body = held.length === 1 ? (held[0] as Buffer) : Buffer.concat(held, this.heldBytes);
      if (!this.writeHead(this.head as CgiHead, body.length)) return;
      this.head = null;
      this.gw.counters.bytesOut += body.length;
      this.res.end(body);
      return;
    }
    this.res.end();
  }

  onError(err: FastCgiError): void {
    const pool = this.pool as ConnectionPool;
    const conn = this.conn;
    this.conn = null;
    if (conn !== null) pool.discard(conn);
    this.req.removeListener('data', this.onRequestData);
    this.req.removeListener('end', this.onRequestEnd);
    this.logStderr();
    if (this.done) return;
    // A kept-alive connection php-fpm had closed (a worker recycled by pm.max_requests) as the request went out:
    // sent again on another connection only under core's rule (idempotent method, nothing came back, body held).
    if (
      conn !== null &&
      err.code === 'FCGI_ERR_CONNECTION_CLOSED' &&
      mayRetry({
        method: this.req.method ?? 'GET',
        requestSent: true,
        reusedConnection: conn.requests > 0,
        connectionClosed: true,
        responseStarted: conn.responded,
        replayable: this.bodyMode !== BODY_STREAM,
        retries: this.retries,
      })
    ) {
      this.retries++;
      this.connect().catch(this.onUnexpected);
      return;
    }
    this.held = null;
    if (!this.res.headersSent) {
      this.fail(toGatewayError(err));
      return;
    }
    this.gw.log.warn({ backend: pool.endpoint.label, uri: this.req.url, code: err.code }, err.message);
    this.done = true;
    this.res.destroy();
  }

  onDrain(): void {
    this.req.resume();
  }

  logStderr(): void {
    if (this.stderr === null) return;
    const text = Buffer.concat(this.stderr).toString('utf8');
    this.stderr = null;
    this.gw.log.warn({ backend: this.pool?.endpoint.label, method: this.req.method, uri: this.req.url, stderr: text }, 'fastcgi stderr');
  }

  fail(error: PolyproxyError): void {
    if (this.done) return;
    this.done = true;
    const gw = this.gw;
    gw.countFailure(error);
    if (error.source === 'client') gw.log.debug({ code: error.code, uri: this.req.url }, error.message);
    else gw.log.warn({ code: error.code, uri: this.req.url, backend: this.pool?.endpoint.label }, error.message);
    if (this.res.headersSent) {
      this.res.destroy();
      return;
    }
    gw.sendError(this.req, this.res, error, { resourceId: this.req.headers.host });
  }
}
