/**
 * HTTP/2 to clients on the http listener, on the proxy's own framing
 * layer (wire/: frames, HPACK, flow control, stream states and the
 * protocol's flood limits); routing, backends, errors, drain and the rapid
 * reset guard are here and in exchange.ts. A connection arrives here
 * already accepted and, with TLS, already decrypted: ALPN chose `h2`
 * (connection.ts), or a cleartext connection began with the HTTP/2
 * preface (h2c with prior knowledge, detected by HttpSession on the
 * HTTP/1.1 port). Core keeps accept, TLS, connection limits and the
 * connection's accounting.
 *
 * Why our own framing and not node:http2 (nghttp2): measured with
 * `npm run bench -- http2`, node:http2 alone costs ~19 µs of CPU per
 * request (a Duplex, a headers object and nghttp2's callbacks per stream,
 * one write per stream), and the proxy through it 64 µs against HAProxy's
 * 20; the own layer batches a connection's frames per turn of the event
 * loop into one write (bench/RESULTS.md has the figures).
 *
 * Defences: SETTINGS_MAX_CONCURRENT_STREAMS (streams past it are refused
 * with RST_STREAM REFUSED_STREAM), SETTINGS_MAX_HEADER_LIST_SIZE and
 * maxHeaders (a larger request is answered 431, RFC 9113 §10.5.1), the
 * rapid reset guard (CVE-2023-44487): more than `maxResets` streams reset
 * by the client within `resetWindowMs` close the connection with GOAWAY
 * ENHANCE_YOUR_CALM; wire/connection.ts cuts CONTINUATION floods, SETTINGS
 * and PING floods (ACKs owed to a client that does not read) and HPACK
 * errors (a table size update past the size we announced is a
 * COMPRESSION_ERROR) with a GOAWAY; each is counted here (floods as
 * `flood`, HPACK and other protocol errors as `protocol`).
 */
import type { Socket } from 'node:net';
import { HttpStatusError } from '../../../core/http-error-response.ts';
import type { DrainTarget, ProtocolSession } from '../../../core/protocol.ts';
import type { ResolveContext } from '../../../core/resolver.ts';
import { H2Exchange } from './exchange.ts';
import type { ForwardContext } from './headers.ts';
import { H1Backends } from './h1-backends.ts';
import type { HeadLimits } from '../head-parser.ts';
import { H2Backends } from './h2-backends.ts';
import { httpCounters } from './metrics.ts';
import type { H2Abuse, HttpVersionCounters } from './metrics.ts';
import { H2ServerConnection } from './wire/connection.ts';
import type { H2ConnectionHandler } from './wire/connection.ts';
import { ENHANCE_YOUR_CALM } from './wire/frames.ts';
import type { RequestHead } from './wire/request-fields.ts';
import type { H2Stream } from './wire/stream.ts';

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

/** One per http listener: the settings of its HTTP/2 connections, and the backend pools of their streams. */
export class H2Front {
  readonly settings: H2Settings;
  readonly h1: H1Backends;
  readonly h2: H2Backends;

  constructor(settings: H2Settings, backends: H2BackendSettings) {
    this.settings = settings;
    this.h1 = new H1Backends({ ...backends, bodyTimeoutMs: settings.backendTimeoutMs });
    this.h2 = new H2Backends({ maxSessions: Math.max(1, Math.min(16, backends.maxConnectionsPerBackend || 16)), idleTimeoutMs: backends.idleTimeoutMs });
  }

  /** Serves `socket` as an HTTP/2 connection; `leftover`: bytes already read from it (the preface, maybe more). */
  accept(socket: Socket, leftover: Buffer | null, core: ProtocolSession): H2Connection {
    const s = this.settings;
    const wire = new H2ServerConnection(socket, {
      maxConcurrentStreams: s.maxConcurrentStreams,
      initialWindowSize: s.initialWindowSize,
      connectionWindowSize: s.connectionWindowSize,
      maxHeaderListSize: s.maxHeaderListSize,
      maxHeaders: s.maxHeaders,
    });
    const conn = new H2Connection(this, core, wire);
    socket.setTimeout(s.idleTimeoutMs);
    socket.on('timeout', () => conn.onIdle());
    core.onDrain(conn);
    wire.start(conn, leftover);
    return conn;
  }

  close(): void {
    this.h1.close();
    this.h2.close();
  }
}

/** One HTTP/2 client connection: its streams, drain, resets and errors. */
export class H2Connection implements DrainTarget, H2ConnectionHandler {
  readonly front: H2Front;
  readonly core: ProtocolSession;
  readonly wire: H2ServerConnection;
  readonly counters: HttpVersionCounters;
  readonly forward: ForwardContext;
  readonly backendTimeoutMs: number;
  readonly telemetryHeaders: boolean;
  readonly done: Promise<void>;
  #resolveDone!: () => void;
  readonly #exchanges = new Set<H2Exchange>();
  #ctx: ResolveContext | null = null;
  #resets = 0;
  #resetWindowStart = 0;
  #draining = false;
  #closed = false;

  constructor(front: H2Front, core: ProtocolSession, wire: H2ServerConnection) {
    this.front = front;
    this.core = core;
    this.wire = wire;
    this.counters = httpCounters(core.listener);
    this.counters.connectionsH2++;
    this.backendTimeoutMs = front.settings.backendTimeoutMs;
    this.telemetryHeaders = front.settings.telemetryHeaders;
    this.forward = { clientAddress: core.resolveContext().clientAddress, proto: front.settings.proto };
    this.done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
  }

  resolveContext(): ResolveContext {
    let ctx = this.#ctx;
    if (ctx === null) {
      ctx = this.core.resolveContext();
      this.#ctx = ctx;
    }
    return ctx;
  }

  onStream(stream: H2Stream, head: RequestHead, fields: string[]): void {
    this.counters.streamsOpen++;
    const exchange = new H2Exchange(this, stream, head, fields);
    this.#exchanges.add(exchange);
    exchange.start();
  }

  onOversized(stream: H2Stream): void {
    this.counters.streamsOpen++;
    const exchange = new H2Exchange(this, stream, null, []);
    this.#exchanges.add(exchange);
    exchange.fail(new HttpStatusError('PROTOCOL', 431, `the request's header list is larger than ${this.front.settings.maxHeaderListSize} bytes or has more than ${this.front.settings.maxHeaders} fields`, { source: 'client' }));
  }

  streamClosed(exchange: H2Exchange): void {
    if (this.#exchanges.delete(exchange)) this.counters.streamsOpen--;
  }

  /** The client reset a stream before its end: the rapid reset guard (CVE-2023-44487). */
  streamReset(): void {
    if (this.wire.dead) return;
    const now = Date.now();
    const settings = this.front.settings;
    if (now - this.#resetWindowStart > settings.resetWindowMs) {
      this.#resetWindowStart = now;
      this.#resets = 0;
    }
    if (++this.#resets > settings.maxResets) this.cutOff('rapid_reset', ENHANCE_YOUR_CALM);
  }

  /** Closes the connection at once with GOAWAY `code`, counted under `reason`. */
  cutOff(reason: H2Abuse, code: number): void {
    if (this.wire.dead) return;
    this.counters.goaway[reason]++;
    this.wire.cutOff(code);
  }

  onConnectionError(flood: boolean): void {
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
    const wire = this.wire;
    if (wire.dead) return;
    if (!this.#draining) {
      this.#draining = true;
      this.counters.goaway.drain++;
      wire.goaway();
    }
    if (deadline) {
      for (const exchange of [...this.#exchanges]) exchange.shutdown();
      setImmediate(cutOffWire, wire);
    }
  }

  abort(): void {
    this.wire.destroy();
  }

  onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.counters.streamsOpen -= this.#exchanges.size;
    this.#exchanges.clear();
    this.#resolveDone();
  }

  /** No frame for the idle timeout: GOAWAY, and the connection closes once the streams in flight (if any) finish. */
  onIdle(): void {
    // Already closing and still silent (a client that does not read what is left): gone.
    if (this.wire.dead) this.wire.destroy();
    else this.wire.goaway();
  }
}

function cutOffWire(wire: H2ServerConnection): void {
  wire.cutOff();
}
