/**
 * The base of listeners that serve their protocol on their own node:http
 * server instead of core's pipeline (the ws-bridge, the fastcgi gateway):
 * binding, drain (stop accepting, close idle keep-alive connections, wait
 * for sessions), maxConnections refused with a 503 page, requests node:http
 * cannot parse answered 400, and failures counted into
 * `polyproxy_errors_total` like core's Listener does (ListenerBase).
 *
 * What a session is stays the subclass's: TCP connections for the gateway,
 * WebSocket clients, upgrades and API requests for the bridge.
 */
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { PolyproxyError } from './errors.ts';
import { errorResponse, sendErrorPage } from './http-error-response.ts';
import type { ErrorFormat, SendErrorOptions } from './http-error-response.ts';
import { listenServer } from './listen.ts';
import { ListenerBase } from './listener-base.ts';
import type { ProxyListener } from './listener-base.ts';
import type { Logger } from './logger.ts';

export interface ServerListenerSettings {
  readonly name: string;
  /** The config's protocol name (the metrics' `protocol` label). */
  readonly protocol: string;
  readonly host: string;
  readonly port: number;
  /** Share the port with sibling worker processes (SO_REUSEPORT). */
  readonly reusePort: boolean;
  /** Concurrent sessions, as the subclass counts them; 0 = no limit. */
  readonly maxConnections: number;
  /** How error pages look when the client's Accept does not ask for JSON. */
  readonly errorFormat: ErrorFormat;
  /** TCP keepalive on accepted client connections after this long idle; 0 or absent = off. */
  readonly tcpKeepAliveMs?: number;
  /**
   * A client must send its request head (for ws-bridge: the upgrade
   * request) within this long, unless the subclass sets its own
   * `headersTimeout`; absent = Node's default (60 s).
   */
  readonly handshakeTimeoutMs?: number;
}

/**
 * How often Node checks connections for the head deadline. Its default (30 s)
 * would let a slowloris client outlive a 2 s deadline by up to 30 s; the
 * check walks only connections whose request is still incomplete.
 */
export const HEAD_CHECK_INTERVAL_MS = 500;

/** Marks a connection accepted past maxConnections: its request gets the 503 page. */
const kOverLimit = Symbol('over maxConnections');
type MarkedSocket = Socket & { [kOverLimit]?: true };

export abstract class ServerListener extends ListenerBase implements ProxyListener {
  readonly log: Logger;
  protected readonly server: http.Server;
  readonly #bind: ServerListenerSettings;

  constructor(settings: ServerListenerSettings, serverOptions: http.ServerOptions, log: Logger) {
    super(settings.name, settings.protocol);
    this.#bind = settings;
    this.log = log.child({ listener: settings.name, protocol: settings.protocol });
    const keepAliveMs = settings.tcpKeepAliveMs ?? 0;
    const headersTimeout = serverOptions.headersTimeout ?? settings.handshakeTimeoutMs;
    const options: http.ServerOptions = {
      ...serverOptions,
      ...(headersTimeout === undefined ? {} : { headersTimeout }),
      connectionsCheckingInterval: Math.min(HEAD_CHECK_INTERVAL_MS, headersTimeout ?? HEAD_CHECK_INTERVAL_MS),
    };
    this.server = http.createServer(keepAliveMs > 0 ? { ...options, keepAlive: true, keepAliveInitialDelay: keepAliveMs } : options);
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#clientError(err, socket));
    this.server.on('error', (err) => this.log.error({ err }, 'listener error'));
  }

  listen(port = this.#bind.port): Promise<AddressInfo> {
    return listenServer(this.server, this.#bind.host, port, this.#bind.reusePort);
  }

  get address(): AddressInfo | null {
    return this.server.address() as AddressInfo | null;
  }

  /** Stops accepting; idle keep-alive connections close now, busy ones after their response. */
  stopAccepting(): Promise<void> {
    this.startDraining();
    // At once: server.close()'s callback would wait for every connection.
    if (this.server.listening) this.server.close(noop);
    this.server.closeIdleConnections();
    this.settle();
    return Promise.resolve();
  }

  abstract destroyAll(reason: string): void;

  /** True when `inUse` sessions already fill maxConnections. */
  atCapacity(inUse: number): boolean {
    const max = this.#bind.maxConnections;
    return max > 0 && inUse >= max;
  }

  /**
   * maxConnections counted in TCP connections: call on each accepted
   * connection with the number already open. Past the limit it is counted
   * as refused, and HTTP being request/response, refusedRequest() answers
   * its first request with the 503 page and closes it (node:http's
   * headersTimeout bounds a client that sends none). False: over the limit.
   */
  admit(socket: Socket, inUse: number): boolean {
    this.counters.total++;
    if (!this.atCapacity(inUse)) return true;
    this.counters.refused++;
    (socket as MarkedSocket)[kOverLimit] = true;
    return false;
  }

  /** True when the request came on a connection admit() refused: it has been answered. */
  refusedRequest(req: IncomingMessage, res: ServerResponse): boolean {
    if ((req.socket as MarkedSocket)[kOverLimit] !== true) return false;
    req.resume();
    this.sendError(req, res, this.#tooMany());
    return true;
  }

  /**
   * maxConnections counted in sessions that start on a raw socket (the
   * bridge's upgrades): counted as refused, the 503 page, close.
   */
  refuseOnSocket(socket: Duplex, req: IncomingMessage, detail?: string): void {
    this.counters.refused++;
    this.sendErrorOnSocket(socket, this.#tooMany(), req, detail);
  }

  /** Refusals count as refused, not as errors (core's Listener does the same). */
  #tooMany(): PolyproxyError {
    return new PolyproxyError('TOO_MANY', `too many connections to listener ${this.name}`);
  }

  /** The error page for a request (not counted: see countFailure). */
  sendError(req: IncomingMessage, res: ServerResponse, error: PolyproxyError, options: Omit<SendErrorOptions, 'accept' | 'headRequest' | 'format'> & { resourceId?: string | undefined } = {}): void {
    if (res.headersSent || res.destroyed) return;
    sendErrorPage(res, error, options.resourceId, { ...options, accept: req.headers.accept, headRequest: req.method === 'HEAD', format: this.#bind.errorFormat });
  }

  /** The error page on a raw socket (a refused upgrade, a request node:http could not parse), then close. */
  sendErrorOnSocket(socket: Duplex, error: PolyproxyError, req: IncomingMessage | null, detail?: string): void {
    if (socket.destroyed || !socket.writable) return;
    socket.once('finish', socket.destroy);
    socket.end(errorResponse(error, undefined, { accept: req?.headers.accept, headRequest: req?.method === 'HEAD', detail, format: this.#bind.errorFormat }));
  }

  #clientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const error = new PolyproxyError('PROTOCOL', `malformed request (${err.code ?? 'parse error'})`, { source: 'client', cause: err });
    this.log.debug({ code: err.code, err: err.message }, 'bad client request');
    this.countFailure(error);
    this.sendErrorOnSocket(socket, error, null);
  }
}

function noop(): void {}
