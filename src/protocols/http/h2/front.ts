/**
 * HTTP/2 to clients on the http listener, with node:http2 (nghttp2):
 * framing, HPACK, flow control, SETTINGS and the protocol's built-in flood
 * limits are nghttp2's; routing, backends, errors, drain and the rapid
 * reset guard are ours. A connection arrives here already accepted and,
 * with TLS, already decrypted: ALPN chose `h2` (connection.ts), or a
 * cleartext connection began with the HTTP/2 preface (h2c with prior
 * knowledge, detected by HttpSession on the HTTP/1.1 port). It is handed
 * to a node:http2 server that never listens (`emit('connection')`), so
 * core keeps accept, TLS, connection limits and the connection's
 * accounting.
 *
 * Defences: SETTINGS_MAX_CONCURRENT_STREAMS (streams past it are refused
 * by nghttp2 with RST_STREAM REFUSED_STREAM), SETTINGS_MAX_HEADER_LIST_SIZE
 * (a larger header list resets its stream, RFC 9113 §10.5.1), and the
 * rapid reset guard (CVE-2023-44487): more than `maxResets` streams reset
 * by the client within `resetWindowMs` close the connection with GOAWAY
 * ENHANCE_YOUR_CALM. nghttp2 itself cuts CONTINUATION floods, SETTINGS and
 * PING floods (its outbound ACK queue) and HPACK errors (a dynamic table
 * update past the size we announced is a COMPRESSION_ERROR) with a GOAWAY;
 * each is counted here by the error the session reports (floods as
 * `flood`, HPACK and other protocol errors as `protocol`).
 */
import http2 from 'node:http2';
import type { Http2Server, IncomingHttpHeaders, ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { PolyproxyError } from '../../../core/errors.ts';
import type { DrainTarget, ProtocolSession } from '../../../core/protocol.ts';
import type { ResolveContext } from '../../../core/resolver.ts';
import { H2Exchange } from './exchange.ts';
import type { ForwardContext } from './headers.ts';
import { H1Backends } from './h1-backends.ts';
import type { HeadLimits } from '../head-parser.ts';
import { H2Backends } from './h2-backends.ts';
import { httpCounters } from './metrics.ts';
import type { H2Abuse, HttpVersionCounters } from './metrics.ts';

const { NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_NO_ERROR } = http2.constants;

/** The listener's HTTP/2 settings (config.ts `http2`, with the listener's own limits). */
export interface H2Settings {
  readonly maxConcurrentStreams: number;
  readonly maxHeaderListSize: number;
  /** Header fields per request (the listener's maxHeaders). */
  readonly maxHeaders: number;
  readonly initialWindowSize: number;
  readonly connectionWindowSize: number;
  readonly maxResets: number;
  readonly resetWindowMs: number;
  /** An idle client connection (no frames) closes after this long (the listener's keepAliveTimeoutMs). */
  readonly idleTimeoutMs: number;
  readonly backendTimeoutMs: number;
  readonly telemetryHeaders: boolean;
  /** `http` or `https`. */
  readonly proto: string;
}

export interface H2BackendSettings {
  readonly maxConnectionsPerBackend: number;
  readonly queueTimeoutMs: number;
  readonly maxQueue: number;
  /** Largest HTTP/1.1 response head, and most fields in one. */
  readonly limits: HeadLimits;
  readonly idleTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly keepAliveMs: number;
}

const kConnection = Symbol('polyproxy.h2.connection');
type Session = ServerHttp2Session & { [kConnection]?: H2Connection };

/** nghttp2 error codes that mean a flood or an oversized header block (nghttp2.h). */
const FLOOD_ERRNOS = new Set([
  -904, // NGHTTP2_ERR_FLOODED: the peer's SETTINGS/PING (or other) frames outran our ACKs
  -905, // NGHTTP2_ERR_TOO_MANY_CONTINUATIONS
  -537, // NGHTTP2_ERR_TOO_MANY_SETTINGS
]);
// An HPACK failure (e.g. a table size update past our SETTINGS_HEADER_TABLE_SIZE) reaches us as
// NGHTTP2_ERR_PROTO (-505), like any other protocol error: nghttp2 has sent GOAWAY
// COMPRESSION_ERROR, and it is counted under 'protocol'.

/** One per http listener: the node:http2 server its HTTP/2 connections are handed to, and the backend pools of their streams. */
export class H2Front {
  readonly settings: H2Settings;
  readonly server: Http2Server;
  readonly h1: H1Backends;
  readonly h2: H2Backends;
  /** The connection being handed to the server (its 'session' event runs inside emit('connection')). */
  #pending: H2Connection | null = null;

  constructor(settings: H2Settings, backends: H2BackendSettings) {
    this.settings = settings;
    this.h1 = new H1Backends({ ...backends, bodyTimeoutMs: settings.backendTimeoutMs });
    this.h2 = new H2Backends({ maxSessions: Math.max(1, Math.min(16, backends.maxConnectionsPerBackend || 16)), idleTimeoutMs: backends.idleTimeoutMs });
    this.server = http2.createServer({
      settings: {
        maxConcurrentStreams: settings.maxConcurrentStreams,
        initialWindowSize: settings.initialWindowSize,
        maxHeaderListSize: settings.maxHeaderListSize,
        // RFC 8441: WebSockets over HTTP/2 (extended CONNECT, ws-tunnel.ts).
        enableConnectProtocol: true,
      },
      // Pseudo-headers count too.
      maxHeaderListPairs: settings.maxHeaders + 8,
      // Our HPACK encoder's table: what the client may make us keep per connection.
      maxDeflateDynamicTableSize: 4096,
    });
    this.server.on('session', serverOnSession.bind(null, this));
    this.server.on('stream', serverOnStream);
  }

  /** Serves `socket` as an HTTP/2 connection; `leftover`: bytes already read from it (the preface, maybe more). */
  accept(socket: Socket, leftover: Buffer | null, core: ProtocolSession): H2Connection {
    const conn = new H2Connection(this, core);
    // A server-side TLSSocket made by hand (ClientConnection.upgradeToTls) keeps secureConnecting
    // true after its handshake (only tls.Server's own path clears it), and node:http2 would wait
    // for a 'secureConnect' that never comes. The handshake is done here.
    const secure = socket as Socket & { secureConnecting?: boolean };
    if (secure.secureConnecting === true) secure.secureConnecting = false;
    // Paused first: unshift on a flowing socket would emit the bytes as 'data' instead of buffering them for node:http2.
    socket.pause();
    if (leftover !== null && leftover.length > 0) socket.unshift(leftover);
    this.#pending = conn;
    try {
      this.server.emit('connection', socket);
    } finally {
      this.#pending = null;
    }
    if (conn.session === null) conn.closed(); // node:http2 refused the socket
    return conn;
  }

  /** Called by the server's 'session' listener. */
  adopt(session: Session): void {
    const conn = this.#pending;
    if (conn === null) {
      session.destroy();
      return;
    }
    session[kConnection] = conn;
    conn.attach(session);
  }

  close(): void {
    this.h1.close();
    this.h2.close();
  }
}

/** One HTTP/2 client connection: its streams, drain, resets and errors. */
export class H2Connection implements DrainTarget {
  readonly front: H2Front;
  readonly core: ProtocolSession;
  readonly counters: HttpVersionCounters;
  readonly forward: ForwardContext;
  readonly backendTimeoutMs: number;
  readonly telemetryHeaders: boolean;
  readonly done: Promise<void>;
  session: ServerHttp2Session | null = null;
  #resolveDone!: () => void;
  readonly #exchanges = new Set<H2Exchange>();
  #ctx: ResolveContext | null = null;
  #lastStreamId = 0;
  #resets = 0;
  #resetWindowStart = 0;
  #cutOff = false;
  #draining = false;

  constructor(front: H2Front, core: ProtocolSession) {
    this.front = front;
    this.core = core;
    this.counters = httpCounters(core.listener);
    this.counters.connectionsH2++;
    this.backendTimeoutMs = front.settings.backendTimeoutMs;
    this.telemetryHeaders = front.settings.telemetryHeaders;
    this.forward = { clientAddress: core.resolveContext().clientAddress, proto: front.settings.proto };
    this.done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
  }

  attach(session: ServerHttp2Session): void {
    this.session = session;
    const settings = this.front.settings;
    session.on('error', sessionOnError);
    session.on('close', sessionOnClose);
    session.on('timeout', sessionOnTimeout);
    session.setTimeout(settings.idleTimeoutMs);
    session.once('connect', sessionOnConnect);
    this.core.onDrain(this);
  }

  resolveContext(): ResolveContext {
    let ctx = this.#ctx;
    if (ctx === null) {
      ctx = this.core.resolveContext();
      this.#ctx = ctx;
    }
    return ctx;
  }

  onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, raw: string[]): void {
    this.#lastStreamId = stream.id ?? this.#lastStreamId;
    this.counters.streamsOpen++;
    const exchange = new H2Exchange(this, stream, headers, raw);
    this.#exchanges.add(exchange);
    exchange.start(headers);
  }

  streamClosed(exchange: H2Exchange): void {
    if (this.#exchanges.delete(exchange)) this.counters.streamsOpen--;
  }

  /** The client reset a stream before its end: the rapid reset guard (CVE-2023-44487). */
  streamReset(): void {
    const now = Date.now();
    const settings = this.front.settings;
    if (now - this.#resetWindowStart > settings.resetWindowMs) {
      this.#resetWindowStart = now;
      this.#resets = 0;
    }
    if (++this.#resets > settings.maxResets) this.cutOff('rapid_reset', NGHTTP2_ENHANCE_YOUR_CALM);
  }

  /** Closes the connection at once with GOAWAY `code`, counted under `reason`. */
  cutOff(reason: H2Abuse, code: number): void {
    const session = this.session;
    if (this.#cutOff || session === null || session.destroyed) return;
    this.#cutOff = true;
    this.counters.goaway[reason]++;
    // destroy(error, code) sends GOAWAY with `code` and closes; its 'error' event is ignored (#cutOff).
    // (destroy(undefined, code) would send NO_ERROR: the error parameter defaults to code 0.)
    session.destroy(new PolyproxyError('PROTOCOL', `HTTP/2 connection cut off: ${reason}`, { source: 'client' }), code);
  }

  onSessionError(err: Error): void {
    if (this.#cutOff) return;
    this.#cutOff = true;
    const errno = (err as { errno?: number }).errno;
    const code = (err as { code?: string }).code;
    const flood = (errno !== undefined && FLOOD_ERRNOS.has(errno)) || code === 'ERR_HTTP2_TOO_MANY_INVALID_FRAMES' || code === 'ERR_HTTP2_SESSION_ERROR';
    this.counters.goaway[flood ? 'flood' : 'protocol']++;
  }

  /**
   * The listener drains (DrainTarget). First: GOAWAY NO_ERROR naming the
   * last stream we saw (RFC 9113 §6.8), so the client opens new streams
   * elsewhere, while streams in flight finish; the connection closes
   * after the last. At the deadline: streams not yet answered get 503
   * (gRPC: UNAVAILABLE), the others are reset, and the connection closes.
   */
  drain(deadline: boolean): void {
    const session = this.session;
    if (session === null || session.destroyed) return;
    if (!this.#draining) {
      this.#draining = true;
      this.counters.goaway.drain++;
      session.goaway(NGHTTP2_NO_ERROR, this.#lastStreamId);
      session.close();
    }
    if (deadline) {
      for (const exchange of [...this.#exchanges]) exchange.shutdown();
      setImmediate(destroySession, session);
    }
  }

  abort(): void {
    this.session?.destroy();
  }

  closed(): void {
    this.#resolveDone();
  }

  onSessionClose(): void {
    this.counters.streamsOpen -= this.#exchanges.size;
    this.#exchanges.clear();
    this.#resolveDone();
  }

  onSessionTimeout(): void {
    // No frame for the idle timeout: close gracefully (streams in flight, if any, finish).
    this.session?.close();
  }

  onSessionConnect(session: ServerHttp2Session): void {
    const size = this.front.settings.connectionWindowSize;
    if (size > 65535) session.setLocalWindowSize(size);
  }
}

function serverOnSession(front: H2Front, session: ServerHttp2Session): void {
  front.adopt(session);
}
function serverOnStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, raw: string[]): void {
  const conn = (stream.session as Session | undefined)?.[kConnection];
  if (conn === undefined) {
    stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    return;
  }
  conn.onStream(stream, headers, raw);
}
function sessionOnError(this: Session, err: Error): void {
  this[kConnection]?.onSessionError(err);
}
function sessionOnClose(this: Session): void {
  this[kConnection]?.onSessionClose();
}
function sessionOnTimeout(this: Session): void {
  this[kConnection]?.onSessionTimeout();
}
function sessionOnConnect(this: Session, session: ServerHttp2Session): void {
  this[kConnection]?.onSessionConnect(session);
}
function destroySession(session: ServerHttp2Session): void {
  if (!session.destroyed) session.destroy();
}
