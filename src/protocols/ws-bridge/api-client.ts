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

/** A request waiting for a connection. */
class Acquire implements PoolWaiter<Client> {
  readonly api: ApiClient;
  readonly resolve: (client: Client) => void;

  constructor(api: ApiClient, resolve: (client: Client) => void) {
    this.api = api;
    this.resolve = resolve;
  }

  poolGranted(client: Client | null): void {
    this.resolve(client ?? this.api.newClient());
  }

  poolFailed(): void {
    // Only on shutdown: the request goes out on a connection of its own, closed after it.
    this.resolve(this.api.newClient());
  }
}

export class ApiClient {
  readonly #origin: string;
  readonly #clientOptions: Client.Options;
  readonly #pool: EndpointPool<Client>;
  readonly #basePath: string;
  readonly #maxResponseBytes: number;
  readonly #stats: BridgeStats;

  constructor(settings: ApiClientSettings, stats: BridgeStats) {
    const url = new URL(settings.api);
    this.#basePath = url.pathname;
    this.#maxResponseBytes = settings.maxResponseBytes;
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

  /** GET on upgrade: the connection is accepted only when the answer is exactly `ok`. */
  open(clientId: string, forwardedFor: string | undefined): Promise<ApiAnswer> {
    return this.#send('GET', clientId, null, false, forwardedFor);
  }

  /** POST of one WebSocket message. */
  message(clientId: string, body: Buffer, binary: boolean): Promise<ApiAnswer> {
    return this.#send('POST', clientId, body, binary, undefined);
  }

  /** DELETE with the close reason as body. */
  close(clientId: string, reason: string): Promise<ApiAnswer> {
    return this.#send('DELETE', clientId, Buffer.from(reason, 'utf8'), false, undefined);
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

  #acquire(): Client | Promise<Client> {
    const pool = this.#pool;
    const idle = pool.take(this.#origin);
    if (idle !== null) return idle;
    if (pool.closed || pool.tryReserve(this.#origin)) return this.newClient();
    return new Promise((resolve) => {
      if (pool.enqueue(this.#origin, new Acquire(this, resolve)) === null) resolve(this.newClient());
    });
  }

  #release(client: Client): void {
    // A closed pool closes what is given back; a Client that closed itself frees its slot for a waiter.
    this.#pool.put(this.#origin, client);
  }

  async #send(method: 'GET' | 'POST' | 'DELETE', clientId: string, body: Buffer | null, binary: boolean, forwardedFor: string | undefined): Promise<ApiAnswer> {
    const stats = this.#stats;
    stats.requestsStarted++;
    stats.requestsInFlight++;
    let answer: ApiAnswer;
    try {
      answer = await this.#exchange(method, clientId, body, binary, forwardedFor);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      answer = { outcome: typeof code === 'string' && TIMEOUT_CODES.has(code) ? 'timeout' : 'unreachable', status: 0, body: EMPTY, binary: false, error: (err as Error).message };
    }
    stats.requestsInFlight--;
    if (answer.outcome === 'ok') stats.requestsSucceeded++;
    else stats.requestsFailed++;
    return answer;
  }

  async #exchange(method: string, clientId: string, body: Buffer | null, binary: boolean, forwardedFor: string | undefined): Promise<ApiAnswer> {
    const headers: Record<string, string> = {};
    if (body !== null) headers['content-type'] = binary ? OCTETS : TEXT;
    if (forwardedFor !== undefined) headers['x-forwarded-for'] = forwardedFor;
    const client = await this.#acquire();
    try {
      return await this.#exchangeOn(client, method, clientId, body, headers);
    } finally {
      this.#release(client);
    }
  }

  async #exchangeOn(client: Client, method: string, clientId: string, body: Buffer | null, headers: Record<string, string>): Promise<ApiAnswer> {
    const res = await client.request({ path: this.path(clientId), method: method as 'GET', headers, body });
    const declared = Number(res.headers['content-length']);
    if (declared > this.#maxResponseBytes) {
      discard(res.body);
      return failed(res.statusCode, `response body of ${declared} bytes is over maxMessageBytes`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > this.#maxResponseBytes) {
        discard(res.body);
        return failed(res.statusCode, 'response body is over maxMessageBytes');
      }
      chunks.push(chunk);
    }
    const data = chunks.length === 0 ? EMPTY : chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
    if (res.statusCode >= 500) return failed(res.statusCode, `the API answered ${res.statusCode}`, data);
    const type = res.headers['content-type'];
    const octets = typeof type === 'string' && type.toLowerCase().startsWith(OCTETS);
    return { outcome: 'ok', status: res.statusCode, body: data, binary: octets || !isUtf8(data), error: '' };
  }
}

function noop(): void {}

/** Drops a response body unread: the connection is closed (undici aborts it), quietly. */
function discard(body: NodeJS.ReadableStream & { destroy(): void }): void {
  body.on('error', noop);
  body.destroy();
}

function failed(status: number, error: string, body: Buffer = EMPTY): ApiAnswer {
  return { outcome: 'unreachable', status, body, binary: false, error };
}
