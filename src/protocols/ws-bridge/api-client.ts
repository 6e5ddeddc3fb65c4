/**
 * The bridge's HTTP client to the API (ws2api: GET/POST/DELETE
 * `<api><ClientId>`): a bounded pool of keep-alive undici Clients per
 * listener and worker, one request per connection at a time, like the Go
 * original's http.Transport: at most `maxConnections` (requests past it
 * wait, first come first served), at most `maxIdle` kept between requests
 * (LIFO, so the pool shrinks back after a burst), and an idle one closes
 * its socket after `idleTimeoutMs`. The Clients live in core's
 * EndpointPool (src/core/pool.ts, one key: the API origin): undici's own
 * Pool caps connections but cannot cap idle ones (`maxIdle`), and the
 * proxy has one pool implementation. Requests wait for a connection
 * without a deadline of their own (their `timeoutMs` starts once sent).
 * Never throws: every outcome is an `ApiAnswer` the bridge maps to its
 * side (upgrade status, message back, counters).
 */
import { isUtf8 } from 'node:buffer';
import { Client } from 'undici';
import type { Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import { EndpointPool } from '../../core/pool.ts';
import type { PoolKind, PoolWaiter } from '../../core/pool.ts';
import type { BridgeStats } from './metrics.ts';

export interface ApiClientSettings {
  /** The API base URL; requests go to `<api><ClientId>`. */
  readonly api: string;
  readonly maxConnections: number;
  readonly maxIdle: number;
  readonly idleTimeoutMs: number;
  /** Headers and body must arrive within this. */
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  /** TCP keepalive on the API connections after this long idle; 0 = off (the listener's tcpKeepAliveMs). */
  readonly tcpKeepAliveMs: number;
  /** Larger response bodies fail the request. */
  readonly maxResponseBytes: number;
}

/**
 * `ok`: the API answered with a status below 500 (`status` says which).
 * `timeout`: no answer within `timeoutMs`. `unreachable`: connect failed,
 * reset, 5xx, or a body over the limit.
 */
export type ApiOutcome = 'ok' | 'timeout' | 'unreachable';

export interface ApiAnswer {
  readonly outcome: ApiOutcome;
  readonly status: number;
  readonly body: Buffer;
  /** The body should go to a WebSocket as a binary message (octet-stream, or not UTF-8). */
  readonly binary: boolean;
  /** Why it failed, for logs. */
  readonly error: string;
}

const EMPTY = Buffer.alloc(0);
const TEXT = 'text/plain; charset=utf-8';
const OCTETS = 'application/octet-stream';
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

/** undici Clients (one connection each, pipelining 1), as core's pool sees them. */
const CLIENT_KIND: PoolKind<Client> = {
  reusable: (client) => !client.destroyed && !client.closed,
  close: (client) => {
    client.close().catch(noop);
  },
  // An idle Client closes its own socket after keepAliveTimeout and reconnects when used again.
  park: noop,
  unpark: noop,
  handOver: noop,
};

/**
 * One API request, from waiting for a connection to its answer: the pool's
 * waiter and undici's dispatch handler in one object, so a message costs
 * this object, its promise and undici's own request, and no response
 * stream, async iterator or promise chain per exchange.
 */
class Exchange implements PoolWaiter<Client>, Dispatcher.DispatchHandler {
  readonly api: ApiClient;
  readonly options: Dispatcher.DispatchOptions;
  readonly resolve: (answer: ApiAnswer) => void;
  client: Client | null = null;
  /** Answered: later handler calls change nothing. */
  done = false;
  status = 0;
  octets = false;
  size = 0;
  chunks: Buffer[] | null = null;
  /** Why the answer was refused while it arrived (a body over the limit). */
  refused: string | null = null;

  constructor(api: ApiClient, options: Dispatcher.DispatchOptions, resolve: (answer: ApiAnswer) => void) {
    this.api = api;
    this.options = options;
    this.resolve = resolve;
  }

  poolGranted(client: Client | null): void {
    this.api.dispatch(this, client ?? this.api.newClient());
  }

  poolFailed(): void {
    // Only on shutdown: the request goes out on a connection of its own, closed after it.
    this.api.dispatch(this, this.api.newClient());
  }

  /** Marks this as a handler of undici's current API (undici wraps it; without this it expects the old one). */
  onRequestStart(): void {}

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // 1xx: the final answer follows.
    if (statusCode < 200) return;
    this.status = statusCode;
    const max = this.api.maxResponseBytes;
    const declared = Number(headers['content-length']);
    if (declared > max) return this.refuse(controller, `response body of ${declared} bytes is over maxMessageBytes`);
    const type = headers['content-type'];
    this.octets = typeof type === 'string' && type.toLowerCase().startsWith(OCTETS);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.size += chunk.length;
    if (this.size > this.api.maxResponseBytes) return this.refuse(controller, 'response body is over maxMessageBytes');
    (this.chunks ??= []).push(chunk);
  }

  onResponseEnd(): void {
    const chunks = this.chunks;
    const data = chunks === null ? EMPTY : chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, this.size);
    const status = this.status;
    if (status >= 500) return this.api.answered(this, failed(status, `the API answered ${status}`, data));
    this.api.answered(this, { outcome: 'ok', status, body: data, binary: this.octets || !isUtf8(data), error: '' });
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    if (this.refused !== null) return this.api.answered(this, failed(this.status, this.refused));
    const code = (err as { code?: unknown }).code;
    this.api.answered(this, { outcome: typeof code === 'string' && TIMEOUT_CODES.has(code) ? 'timeout' : 'unreachable', status: 0, body: EMPTY, binary: false, error: err.message });
  }

  /** Drops the answer unread: undici aborts the request and closes its connection. */
  refuse(controller: Dispatcher.DispatchController, why: string): void {
    this.refused = why;
    this.chunks = null;
    controller.abort(new Error(why));
  }
}

export class ApiClient {
  readonly #origin: string;
  readonly #clientOptions: Client.Options;
  readonly #pool: EndpointPool<Client>;
  readonly #basePath: string;
  readonly #stats: BridgeStats;
  /** Larger response bodies fail the request. */
  readonly maxResponseBytes: number;

  constructor(settings: ApiClientSettings, stats: BridgeStats) {
    const url = new URL(settings.api);
    this.#basePath = url.pathname;
    this.maxResponseBytes = settings.maxResponseBytes;
    this.#stats = stats;
    this.#origin = url.origin;
    this.#pool = new EndpointPool(CLIENT_KIND, {
      maxConnectionsPerEndpoint: settings.maxConnections,
      maxIdlePerEndpoint: settings.maxIdle,
      idleTimeoutMs: settings.idleTimeoutMs,
      queueTimeoutMs: 0,
      maxQueue: Infinity,
    });
    this.#clientOptions = {
      pipelining: 1,
      keepAliveTimeout: settings.idleTimeoutMs,
      keepAliveMaxTimeout: settings.idleTimeoutMs,
      headersTimeout: settings.timeoutMs,
      bodyTimeout: settings.timeoutMs,
      // undici's connector turns keepalive on at 60 s unless told otherwise: the listener's setting decides.
      connect: { timeout: settings.connectTimeoutMs, keepAlive: settings.tcpKeepAliveMs > 0, keepAliveInitialDelay: settings.tcpKeepAliveMs },
    };
  }

  /** Connections the pool holds (busy + idle); idle ones may have closed their socket already. */
  get connections(): number {
    return this.#pool.openCount(this.#origin);
  }

  get idleConnections(): number {
    return this.#pool.idleCount(this.#origin);
  }

  /** The path a ClientId's requests go to. */
  path(clientId: string): string {
    return this.#basePath + clientId;
  }

  /**
   * GET on upgrade: the connection is accepted only when the answer is
   * exactly `ok`. It waits for a connection ahead of queued messages: a
   * client whose handshake waited behind every other client's message
   * would time out, and a ramp of new clients stall, whenever the API
   * connections are all busy.
   */
  open(clientId: string, forwardedFor: string | undefined): Promise<ApiAnswer> {
    return this.#send('GET', clientId, null, false, forwardedFor, true);
  }

  /** POST of one WebSocket message. */
  message(clientId: string, body: Buffer, binary: boolean): Promise<ApiAnswer> {
    return this.#send('POST', clientId, body, binary, undefined, false);
  }

  /** DELETE with the close reason as body. */
  close(clientId: string, reason: string): Promise<ApiAnswer> {
    return this.#send('DELETE', clientId, Buffer.from(reason, 'utf8'), false, undefined, false);
  }

  /** Closes the idle connections; requests in flight finish, and their connections close after them. */
  shutdown(): Promise<void> {
    this.#pool.close();
    return Promise.resolve();
  }

  /** @internal A new connection (under a slot, or one of its own after shutdown). */
  newClient(): Client {
    return new Client(this.#origin, this.#clientOptions);
  }

  #send(method: 'GET' | 'POST' | 'DELETE', clientId: string, body: Buffer | null, binary: boolean, forwardedFor: string | undefined, urgent: boolean): Promise<ApiAnswer> {
    const stats = this.#stats;
    stats.requestsStarted++;
    stats.requestsInFlight++;
    const headers: string[] = [];
    if (body !== null) headers.push('content-type', binary ? OCTETS : TEXT);
    if (forwardedFor !== undefined) headers.push('x-forwarded-for', forwardedFor);
    const options: Dispatcher.DispatchOptions = { origin: this.#origin, path: this.path(clientId), method, headers, body };
    return new Promise((resolve) => {
      const exchange = new Exchange(this, options, resolve);
      const pool = this.#pool;
      const idle = pool.take(this.#origin);
      if (idle !== null) return this.dispatch(exchange, idle);
      if (pool.closed || pool.tryReserve(this.#origin)) return this.dispatch(exchange, this.newClient());
      if (pool.enqueue(this.#origin, exchange, urgent) === null) this.dispatch(exchange, this.newClient());
    });
  }

  /** @internal Sends `exchange` on `client`, which it holds until answered. */
  dispatch(exchange: Exchange, client: Client): void {
    exchange.client = client;
    try {
      client.dispatch(exchange.options, exchange);
    } catch (err) {
      exchange.onResponseError(undefined, err as Error);
    }
  }

  /** @internal The exchange's outcome: its connection goes back to the pool (or closes), the caller hears the answer. */
  answered(exchange: Exchange, answer: ApiAnswer): void {
    if (exchange.done) return;
    exchange.done = true;
    const client = exchange.client;
    exchange.client = null;
    // A closed pool closes what is given back; a Client that closed itself frees its slot for a waiter.
    if (client !== null) this.#pool.put(this.#origin, client);
    const stats = this.#stats;
    stats.requestsInFlight--;
    if (answer.outcome === 'ok') stats.requestsSucceeded++;
    else stats.requestsFailed++;
    exchange.resolve(answer);
  }
}

function noop(): void {}

function failed(status: number, error: string, body: Buffer = EMPTY): ApiAnswer {
  return { outcome: 'unreachable', status, body, binary: false, error };
}
