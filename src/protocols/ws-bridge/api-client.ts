/**
 * The bridge's HTTP client to the API (ws2api: GET/POST/DELETE
 * `<api><ClientId>`): a bounded pool of keep-alive HTTP/1.1 connections per
 * listener and worker, one request per connection at a time, like the Go
 * original's http.Transport: at most `maxConnections` (requests past it
 * wait, first come first served, an upgrade's GET ahead of messages), at
 * most `maxIdle` kept between requests (LIFO, so the pool shrinks back
 * after a burst), and an idle one closes after `idleTimeoutMs`.
 *
 * The client is the proxy's own HTTP/1.1 client (http/h2/h1-backends.ts,
 * on core's EndpointPool): a message is one write (head and body built
 * once) and its answer is parsed by the listener's strict head parser and
 * chunked framer. It replaced undici (a Client per connection), whose
 * per-request Request object, header validation, llhttp-in-wasm callbacks
 * and timers cost more than the rest of the bridge's work on a message
 * (bench: ws-scale). An https API is spoken to over TLS (ALPN http/1.1,
 * the system's CAs, SNI from the URL's host).
 *
 * Deadlines without a timer per request: requests in flight sit in a set
 * that one sweep per client walks every tenth of `timeoutMs` (at most 1 s),
 * so an answer that takes longer than `timeoutMs` after the request went
 * out fails within about a tenth more. Never throws: every outcome is an
 * `ApiAnswer` the bridge maps to its side (upgrade status, message back,
 * counters).
 */
import { isUtf8 } from 'node:buffer';
import type { Socket } from 'node:net';
import type { Endpoint } from '../../core/endpoint.ts';
import { PolyproxyError } from '../../core/errors.ts';
import { upgradeToTls } from '../http/h2/backend-tls.ts';
import { DialError, dialOne } from '../http/h2/dial.ts';
import { BODY_LENGTH, BODY_NONE, H1Backends } from '../http/h2/h1-backends.ts';
import type { H1Call, H1Request } from '../http/h2/h1-backends.ts';
import { DEFAULT_LIMITS } from '../http/head-parser.ts';
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

/** One API request, from waiting for a connection to its answer (the HTTP/1.1 client's H1Request). */
class ApiRequest implements H1Request {
  readonly api: ApiClient;
  readonly method: string;
  readonly requestHead: string;
  readonly bodyFraming: number;
  readonly body = null;
  readonly bodyBytes: Buffer | null;
  readonly urgent: boolean;
  readonly resolve: (answer: ApiAnswer) => void;
  call: H1Call | null = null;
  /** When the request went out (performance.now()): its deadline runs from here. */
  sentAt = 0;
  /** Answered: later calls change nothing. */
  done = false;
  status = 0;
  octets = false;
  size = 0;
  chunks: Buffer[] | null = null;

  constructor(api: ApiClient, method: string, requestHead: string, body: Buffer | null, urgent: boolean, resolve: (answer: ApiAnswer) => void) {
    this.api = api;
    this.method = method;
    this.requestHead = requestHead;
    this.bodyFraming = body === null ? BODY_NONE : BODY_LENGTH;
    this.bodyBytes = body;
    this.urgent = urgent;
    this.resolve = resolve;
  }

  h1Sent(call: H1Call): void {
    this.call = call;
    this.sentAt = performance.now();
    this.api.sent(this);
  }

  h1Response(status: number, headers: string[]): void {
    this.status = status;
    // headers: ':status', value, then name, value pairs, names lowercased.
    for (let i = 2; i < headers.length; i += 2) {
      const name = headers[i];
      const value = headers[i + 1] as string;
      if (name === 'content-length') {
        if (Number(value) > this.api.maxResponseBytes) return this.refuse(`response body of ${value} bytes is over maxMessageBytes`);
      } else if (name === 'content-type') this.octets = value.toLowerCase().startsWith(OCTETS);
    }
  }

  h1Data(chunk: Buffer): void {
    if (this.done) return;
    this.size += chunk.length;
    if (this.size > this.api.maxResponseBytes) return this.refuse('response body is over maxMessageBytes');
    (this.chunks ??= []).push(chunk);
  }

  h1End(): void {
    this.call = null;
    if (this.done) return;
    const chunks = this.chunks;
    const data = chunks === null ? EMPTY : chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, this.size);
    const status = this.status;
    if (status >= 500) return this.api.answered(this, failed(status, `the API answered ${status}`, data));
    this.api.answered(this, { outcome: 'ok', status, body: data, binary: this.octets || !isUtf8(data), error: '' });
  }

  h1Failed(err: Error): void {
    this.call = null;
    if (this.done) return;
    this.api.answered(this, { outcome: isTimeout(err) ? 'timeout' : 'unreachable', status: 0, body: EMPTY, binary: false, error: err.message });
  }

  /** Drops the answer unread: the connection closes. */
  refuse(why: string): void {
    this.#cancel();
    this.api.answered(this, failed(this.status, why));
  }

  /** No (complete) answer within timeoutMs of sending. */
  timedOut(timeoutMs: number): void {
    this.#cancel();
    this.api.answered(this, { outcome: 'timeout', status: 0, body: EMPTY, binary: false, error: `no answer within ${timeoutMs} ms` });
  }

  #cancel(): void {
    const call = this.call;
    this.call = null;
    this.chunks = null;
    call?.cancel();
  }
}

export class ApiClient {
  readonly #endpoint: Endpoint;
  readonly #backends: H1Backends;
  readonly #basePath: string;
  readonly #host: string;
  readonly #stats: BridgeStats;
  readonly #timeoutMs: number;
  /** Requests sent and not answered yet, for the deadline sweep. */
  readonly #inFlight = new Set<ApiRequest>();
  readonly #sweepMs: number;
  #sweep: NodeJS.Timeout | null = null;
  /** Larger response bodies fail the request. */
  readonly maxResponseBytes: number;

  constructor(settings: ApiClientSettings, stats: BridgeStats) {
    const url = new URL(settings.api);
    const secure = url.protocol === 'https:';
    // URL keeps IPv6 hosts bracketed; a socket wants them bare.
    const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    this.#endpoint = { type: 'tcp', host: hostname, port: url.port === '' ? (secure ? 443 : 80) : Number(url.port), label: url.origin };
    this.#basePath = url.pathname;
    this.#host = url.host;
    this.#stats = stats;
    this.#timeoutMs = settings.timeoutMs;
    this.#sweepMs = Math.max(10, Math.min(1000, Math.floor(settings.timeoutMs / 10)));
    this.maxResponseBytes = settings.maxResponseBytes;
    const connectTimeoutMs = settings.connectTimeoutMs;
    this.#backends = new H1Backends({
      maxConnectionsPerBackend: settings.maxConnections,
      maxIdlePerBackend: settings.maxIdle,
      idleTimeoutMs: settings.idleTimeoutMs,
      connectTimeoutMs,
      keepAliveMs: settings.tcpKeepAliveMs,
      // Requests wait for a connection without a deadline of their own (theirs starts once sent).
      queueTimeoutMs: 0,
      maxQueue: Infinity,
      limits: DEFAULT_LIMITS,
      bodyTimeoutMs: settings.timeoutMs,
      ...(secure ? { dial: (endpoint: Endpoint, timeoutMs: number, keepAliveMs: number) => dialTls(endpoint, timeoutMs, keepAliveMs, connectTimeoutMs) } : {}),
    });
  }

  /** Connections the pool holds (busy + idle). */
  get connections(): number {
    return this.#backends.pool.openCount(this.#endpoint.label);
  }

  get idleConnections(): number {
    return this.#backends.pool.idleCount(this.#endpoint.label);
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

  /** Closes the idle connections; requests in flight finish (their deadlines still run), and their connections close after them. */
  shutdown(): Promise<void> {
    this.#backends.close();
    return Promise.resolve();
  }

  #send(method: 'GET' | 'POST' | 'DELETE', clientId: string, body: Buffer | null, binary: boolean, forwardedFor: string | undefined, urgent: boolean): Promise<ApiAnswer> {
    const stats = this.#stats;
    stats.requestsStarted++;
    stats.requestsInFlight++;
    // ClientIds are RFC 3986 pchars (client-id.ts): safe in the request line as they are.
    let head = `${method} ${this.#basePath}${clientId} HTTP/1.1\r\nhost: ${this.#host}\r\n`;
    if (body !== null) head += `content-type: ${binary ? OCTETS : TEXT}\r\ncontent-length: ${body.length}\r\n`;
    if (forwardedFor !== undefined) head += `x-forwarded-for: ${forwardedFor}\r\n`;
    head += '\r\n';
    return new Promise((resolve) => {
      this.#backends.send(this.#endpoint, undefined, new ApiRequest(this, method, head, body, urgent, resolve));
    });
  }

  /** @internal The request went out: its deadline starts. */
  sent(request: ApiRequest): void {
    this.#inFlight.add(request);
    this.#sweep ??= setInterval(sweepInFlight, this.#sweepMs, this).unref();
  }

  /** @internal Fails the requests in flight past their deadline; stops when none is left. */
  sweepNow(): void {
    const inFlight = this.#inFlight;
    if (inFlight.size === 0) {
      if (this.#sweep !== null) clearInterval(this.#sweep);
      this.#sweep = null;
      return;
    }
    const due = performance.now() - this.#timeoutMs;
    for (const request of inFlight) if (request.sentAt <= due) request.timedOut(this.#timeoutMs);
  }

  /** @internal The request's outcome: the caller hears the answer (its connection went back to the pool or closed already). */
  answered(request: ApiRequest, answer: ApiAnswer): void {
    if (request.done) return;
    request.done = true;
    this.#inFlight.delete(request);
    const stats = this.#stats;
    stats.requestsInFlight--;
    if (answer.outcome === 'ok') stats.requestsSucceeded++;
    else stats.requestsFailed++;
    request.resolve(answer);
  }
}

function sweepInFlight(client: ApiClient): void {
  client.sweepNow();
}

/** TCP, then TLS for an https API (ALPN http/1.1, the system's CAs); the handshake shares the connect timeout. */
async function dialTls(endpoint: Endpoint, timeoutMs: number, keepAliveMs: number, handshakeMs: number): Promise<Socket> {
  const socket = await dialOne(endpoint, timeoutMs, keepAliveMs);
  try {
    return await upgradeToTls(socket, endpoint, true, handshakeMs, 'http/1.1');
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/** A connect or body that timed out (the answer's deadline is the sweep's). */
function isTimeout(err: Error): boolean {
  if (err instanceof DialError) return err.code === 'ETIMEDOUT';
  return err instanceof PolyproxyError && err.kind === 'TIMEOUT';
}

function failed(status: number, error: string, body: Buffer = EMPTY): ApiAnswer {
  return { outcome: 'unreachable', status, body, binary: false, error };
}
