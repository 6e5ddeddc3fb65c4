/**
 * The FastCGI client: sends requests to servers over pooled connections and
 * tracks asynchronous ones by id, like hollodotme/fast-cgi-client —
 * `sendRequest` (await the response), `sendAsyncRequest` (an id now; then
 * `readResponse`, `waitForResponse(s)` with the request's callbacks, or
 * `responses()` yielding responses as they finish).
 */
import { mayRetry } from '../core/retry.ts';
import type { FastCgiConnection } from './connection.ts';
import type { ExchangeHandler } from './connection.ts';
import { FastCgiError } from './errors.ts';
import { encodeNameValuePairs } from './name-value.ts';
import { ConnectionPool } from './pool.ts';
import type { FastCgiRequest } from './request.ts';
import { FastCgiResponse } from './response.ts';
import { FastCgiServer } from './server.ts';
import type { ServerLike } from './server.ts';

export interface ClientOptions {
  /** Default 5000. */
  readonly connectTimeoutMs?: number;
  /** The application silent this long fails the request with FCGI_ERR_READ_TIMEOUT; 0 = no limit. Default 30000. */
  readonly readWriteTimeoutMs?: number;
  /** FCGI_KEEP_CONN: reuse connections (default true). */
  readonly keepAlive?: boolean;
  /** Connections per server, active + idle; 0 = unlimited (default). Keep it ≤ php-fpm's pm.max_children. */
  readonly maxConnectionsPerServer?: number;
  /** Idle connections kept per server (default 4); each pins a php-fpm worker while idle. */
  readonly maxIdlePerServer?: number;
  /** Idle connections close after this long (default 5000). */
  readonly idleTimeoutMs?: number;
}

interface Pending {
  readonly id: number;
  readonly request: FastCgiRequest;
  readonly promise: Promise<FastCgiResponse>;
  /** Resolves with the id once the request settled (never rejects): for racing. */
  readonly settled: Promise<number>;
  done: boolean;
  response: FastCgiResponse | null;
  error: Error | null;
}

export class FastCgiClient {
  readonly options: Required<ClientOptions>;
  readonly #pools = new Map<string, ConnectionPool>();
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;

  constructor(options: ClientOptions = {}) {
    this.options = {
      connectTimeoutMs: options.connectTimeoutMs ?? 5000,
      readWriteTimeoutMs: options.readWriteTimeoutMs ?? 30000,
      keepAlive: options.keepAlive ?? true,
      maxConnectionsPerServer: options.maxConnectionsPerServer ?? 0,
      maxIdlePerServer: options.maxIdlePerServer ?? 4,
      idleTimeoutMs: options.idleTimeoutMs ?? 5000,
    };
  }

  /** Sends a request and resolves with its response (callbacks are not called; pass-through callbacks are). */
  sendRequest(server: ServerLike, request: FastCgiRequest): Promise<FastCgiResponse> {
    return this.#execute(FastCgiServer.from(server), request, this.#nextId++);
  }

  /** Sends a request and returns its id at once; read it with readResponse, waitForResponse(s) or responses(). */
  sendAsyncRequest(server: ServerLike, request: FastCgiRequest): number {
    const id = this.#nextId++;
    const promise = this.#execute(FastCgiServer.from(server), request, id);
    const pending: Pending = {
      id,
      request,
      promise,
      settled: promise.then(
        (response) => {
          pending.done = true;
          pending.response = response;
          return id;
        },
        (error: Error) => {
          pending.done = true;
          pending.error = error;
          return id;
        },
      ),
      done: false,
      response: null,
      error: null,
    };
    this.#pending.set(id, pending);
    return id;
  }

  /** True when the request with this id has finished (successfully or not) and was not read yet. */
  hasResponse(id: number): boolean {
    return this.#pending.get(id)?.done === true;
  }

  /** True while some asynchronous request was not read or handled. */
  hasUnhandledResponses(): boolean {
    return this.#pending.size > 0;
  }

  /** Ids of finished requests not read yet. */
  getRequestIdsHavingResponse(): number[] {
    return [...this.#pending.values()].filter((p) => p.done).map((p) => p.id);
  }

  /** Waits for one asynchronous request's response (rejects with its error); no callbacks. */
  async readResponse(id: number, timeoutMs = 0): Promise<FastCgiResponse> {
    const pending = this.#take(id);
    if (timeoutMs <= 0) return pending.promise;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.#pending.set(id, pending); // still running: it can be read again later
        reject(new FastCgiError('FCGI_ERR_READ_TIMEOUT', `no response for request ${id} within ${timeoutMs} ms`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([pending.promise, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits for a request and calls its response or failure callbacks. */
  async waitForResponse(id: number): Promise<void> {
    const pending = this.#take(id);
    await pending.settled;
    callCallbacks(pending);
  }

  /** Waits for every outstanding asynchronous request, calling callbacks as each finishes. */
  async waitForResponses(): Promise<void> {
    for await (const pending of this.#settledInOrder([...this.#pending.keys()])) callCallbacks(pending);
  }

  /** Calls the callbacks of requests that already finished; returns how many. */
  handleReadyResponses(): number {
    const ready = [...this.#pending.values()].filter((p) => p.done);
    for (const p of ready) {
      this.#pending.delete(p.id);
      callCallbacks(p);
    }
    return ready.length;
  }

  /**
   * Yields responses of outstanding asynchronous requests (or of `ids`) as
   * they finish. A failed request throws its error from the iterator; the
   * rest stay pending and can be read by iterating again.
   */
  async *responses(ids?: readonly number[]): AsyncGenerator<FastCgiResponse, void, undefined> {
    for await (const pending of this.#settledInOrder(ids ?? [...this.#pending.keys()])) {
      if (pending.error !== null) throw pending.error;
      yield pending.response as FastCgiResponse;
    }
  }

  /** Closes idle connections; requests in flight finish. */
  close(): void {
    for (const pool of this.#pools.values()) pool.close();
    this.#pools.clear();
  }

  #take(id: number): Pending {
    const pending = this.#pending.get(id);
    if (pending === undefined) throw new FastCgiError('FCGI_ERR_UNKNOWN_REQUEST', `no outstanding request with id ${id}`);
    this.#pending.delete(id);
    return pending;
  }

  async *#settledInOrder(ids: readonly number[]): AsyncGenerator<Pending, void, undefined> {
    const waiting = new Map<number, Pending>();
    for (const id of ids) {
      const p = this.#pending.get(id);
      if (p === undefined) throw new FastCgiError('FCGI_ERR_UNKNOWN_REQUEST', `no outstanding request with id ${id}`);
      waiting.set(id, p);
    }
    while (waiting.size > 0) {
      const id = await Promise.race([...waiting.values()].map((p) => p.settled));
      const p = waiting.get(id) as Pending;
      waiting.delete(id);
      this.#pending.delete(id);
      yield p;
    }
  }

  #pool(server: FastCgiServer): ConnectionPool {
    let pool = this.#pools.get(server.label);
    if (pool === undefined) {
      const connectTimeoutMs = server.options.connectTimeoutMs ?? this.options.connectTimeoutMs;
      pool = new ConnectionPool(server.endpoint, {
        connectTimeoutMs,
        maxConnections: this.options.maxConnectionsPerServer,
        maxIdle: this.options.keepAlive ? this.options.maxIdlePerServer : 0,
        idleTimeoutMs: this.options.idleTimeoutMs,
        queueTimeoutMs: Math.max(connectTimeoutMs, this.options.readWriteTimeoutMs),
      });
      this.#pools.set(server.label, pool);
    }
    return pool;
  }

  async #execute(server: FastCgiServer, request: FastCgiRequest, id: number): Promise<FastCgiResponse> {
    const pool = this.#pool(server);
    const params = encodeNameValuePairs(request.params);
    const body = request.content?.body() ?? null;
    const replayable = body === null || body instanceof Uint8Array;
    for (let retries = 0; ; retries++) {
      const conn = await pool.acquire();
      const reused = conn.requests > 0;
      try {
        return await this.#exchange(server, pool, conn, request, id, params, body);
      } catch (err) {
        // Sent again only under core's rule: an idempotent method on a kept-alive connection the server
        // closed before any output (php-fpm recycling a worker), with a body that can be sent again.
        const closed = err instanceof FastCgiError && err.code === 'FCGI_ERR_CONNECTION_CLOSED';
        if (closed && mayRetry({ method: request.method, requestSent: true, reusedConnection: reused, connectionClosed: true, responseStarted: conn.responded, replayable, retries })) continue;
        throw err;
      }
    }
  }

  #exchange(
    server: FastCgiServer,
    pool: ConnectionPool,
    conn: FastCgiConnection,
    request: FastCgiRequest,
    id: number,
    params: Buffer,
    body: Uint8Array | AsyncIterable<Uint8Array> | null,
  ): Promise<FastCgiResponse> {
    const started = performance.now();
    const timeoutMs = server.options.readWriteTimeoutMs ?? this.options.readWriteTimeoutMs;
    const passThrough = request.passThroughCallbacks;
    return new Promise<FastCgiResponse>((resolve, reject) => {
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      let drained: (() => void) | null = null;
      let failed: FastCgiError | null = null;
      const handler: ExchangeHandler = {
        onStdout(chunk) {
          const copy = Buffer.from(chunk);
          stdout.push(copy);
          for (const cb of passThrough) cb(copy, 'stdout');
        },
        onStderr(chunk) {
          const copy = Buffer.from(chunk);
          stderr.push(copy);
          for (const cb of passThrough) cb(copy, 'stderr');
        },
        onEnd(appStatus) {
          pool.release(conn);
          resolve(
            new FastCgiResponse({ requestId: id, server: server.label, output: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString('utf8'), appStatus, durationMs: performance.now() - started }),
          );
        },
        onError(err) {
          failed = err;
          pool.discard(conn);
          drained?.();
          reject(err);
        },
        onDrain() {
          drained?.();
        },
      };
      const keepConn = this.options.keepAlive;
      if (body === null || body instanceof Uint8Array) {
        conn.begin(params, handler, { keepConn, timeoutMs, stdin: body === null ? null : Buffer.from(body.buffer, body.byteOffset, body.byteLength), endStdin: true });
        return;
      }
      conn.begin(params, handler, { keepConn, timeoutMs });
      const expected = request.content?.length ?? 0;
      void (async () => {
        let sent = 0;
        try {
          for await (const chunk of body) {
            if (failed !== null) return;
            sent += chunk.length;
            if (sent > expected) throw new FastCgiError('FCGI_ERR_INVALID_ARGUMENT', `the stream yielded more than its declared length ${expected}`);
            if (!conn.writeStdin(chunk)) await new Promise<void>((r) => (drained = r));
            drained = null;
          }
          if (failed !== null) return;
          if (sent !== expected) throw new FastCgiError('FCGI_ERR_INVALID_ARGUMENT', `the stream yielded ${sent} bytes, not its declared length ${expected}`);
          conn.endStdin();
        } catch (err) {
          if (failed !== null) return;
          failed = err instanceof FastCgiError ? err : new FastCgiError('FCGI_ERR_ABORTED', `request body failed: ${(err as Error).message}`, { cause: err });
          pool.discard(conn);
          reject(failed);
        }
      })();
    });
  }
}

function callCallbacks(pending: Pending): void {
  if (pending.error !== null) for (const cb of pending.request.failureCallbacks) cb(pending.error);
  else if (pending.response !== null) for (const cb of pending.request.responseCallbacks) cb(pending.response);
}
