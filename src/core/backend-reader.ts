/**
 * Reads a freshly connected backend's bytes before the relay owns the socket
 * — a protocol's replay phase (MySQL's greeting and auth exchange, MongoDB's
 * hello) — with the same pure parsers the client side uses. The connect
 * loop's onread callback emits these bytes as 'data' events until then.
 */
import type { Socket } from 'node:net';
import type { OpeningParser } from './client-connection.ts';
import { PolyproxyError } from './errors.ts';

const EMPTY = Buffer.alloc(0);

export class BackendReader {
  readonly #socket: Socket;
  readonly #during: string;
  #buffered: Buffer = EMPTY;
  #error: PolyproxyError | null = null;
  #waiter: { parse: OpeningParser<unknown>; resolve: (value: unknown) => void; reject: (err: Error) => void } | null = null;
  readonly #onData = (chunk: Buffer): void => {
    this.#buffered = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk]);
    this.#settle();
  };
  readonly #onEnd = (): void => this.#fail(new PolyproxyError('BACKEND_UNREACHABLE', `the backend closed the connection during ${this.#during}`, { source: 'backend' }));
  readonly #onError = (err: Error): void =>
    this.#fail(new PolyproxyError('BACKEND_UNREACHABLE', `backend socket error during ${this.#during}: ${err.message}`, { source: 'backend', cause: err }));

  /** `during` names the phase in errors: "the handshake", "the proxy's hello". */
  constructor(socket: Socket, during: string) {
    this.#socket = socket;
    this.#during = during;
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onEnd);
    socket.on('error', this.#onError);
  }

  /** Waits until `parse` recognises a complete message in the buffered bytes. */
  read<T>(parse: OpeningParser<T>): Promise<T> {
    if (this.#waiter !== null) return Promise.reject(new PolyproxyError('INTERNAL', 'concurrent backend reads'));
    return new Promise<T>((resolve, reject) => {
      this.#waiter = { parse, resolve: resolve as (value: unknown) => void, reject };
      this.#settle();
    });
  }

  /** Bytes received after the last message read (null when none). */
  leftover(): Buffer | null {
    const rest = this.#buffered;
    this.#buffered = EMPTY;
    return rest.length > 0 ? rest : null;
  }

  /** Stops listening; the relay takes the socket over. */
  dispose(): void {
    this.#socket.removeListener('data', this.#onData);
    this.#socket.removeListener('end', this.#onEnd);
    this.#socket.removeListener('close', this.#onEnd);
    this.#socket.removeListener('error', this.#onError);
  }

  #fail(err: PolyproxyError): void {
    if (this.#error === null) this.#error = err;
    this.#settle();
  }

  #settle(): void {
    const waiter = this.#waiter;
    if (waiter === null) return;
    let done: { value: unknown; consumed: number } | undefined;
    try {
      done = this.#buffered.length === 0 ? undefined : waiter.parse(this.#buffered);
    } catch (err) {
      this.#waiter = null;
      waiter.reject(err as Error);
      return;
    }
    if (done !== undefined) {
      this.#waiter = null;
      this.#buffered = this.#buffered.subarray(done.consumed);
      waiter.resolve(done.value);
    } else if (this.#error !== null) {
      this.#waiter = null;
      waiter.reject(this.#error);
    }
  }
}
