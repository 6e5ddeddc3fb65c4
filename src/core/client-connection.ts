/**
 * The client side of a session while its opening is read: buffered reads
 * driven by pure parsers, TLS upgrade in place, and the native error on
 * failure. Once the opening is done, detach() hands the socket to the relay
 * with any bytes the client pipelined after its opening.
 */
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { PolyproxyError } from './errors.ts';
import { tlsVerifyError } from './io/tls-verify.ts';
import type { TlsInfo } from './resolver.ts';
import type { SniCallback } from './sni.ts';

/** Returns the parsed value and how many bytes it used, or undefined to wait for more. Throws PolyproxyError('PROTOCOL') on bad input. */
export type OpeningParser<T> = (buffered: Buffer) => { value: T; consumed: number } | undefined;

export interface TlsServerSettings {
  readonly secureContext: tls.SecureContext;
  readonly requestCert: boolean;
  readonly requireClientCert: boolean;
  readonly alpnProtocols?: readonly string[];
  /** Chooses the certificate by the client's SNI server name (built once per listener: core/sni.ts sniCallback). */
  readonly sniCallback?: SniCallback;
}

const EMPTY = Buffer.alloc(0);

interface Waiter {
  parse: OpeningParser<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

export class ClientConnection {
  socket: Socket;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly #maxBuffered: number;
  readonly #tlsSettings: TlsServerSettings | null;
  #pending: Buffer = EMPTY;
  /** Backing memory #pending is a view into, once chunks had to be joined. */
  #store: Buffer | null = null;
  #waiter: Waiter | null = null;
  #error: Error | null = null;
  #tls: TlsInfo | undefined = undefined;
  #certError: string | null = null;
  /** abort() ended the connection while the proxy was not reading (the socket may still flush an error). */
  #cut = false;
  #onData = (chunk: Buffer): void => this.#receive(chunk);
  /** The client half-closed or failed before the relay took the socket. */
  #left = false;
  #onGone: (() => void) | null = null;
  #onEnd = (): void => this.#leave(new PolyproxyError('PROTOCOL', 'client closed the connection during its opening', { source: 'client' }));
  #onError = (err: Error): void => this.#leave(new PolyproxyError('PROTOCOL', `client socket error: ${err.message}`, { source: 'client', cause: err }));

  constructor(socket: Socket, options: { maxOpeningBytes: number; tls: TlsServerSettings | null }) {
    this.socket = socket;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.remotePort = socket.remotePort ?? 0;
    this.#maxBuffered = options.maxOpeningBytes;
    this.#tlsSettings = options.tls;
    this.#listen(socket);
  }

  /** TLS details once the connection is encrypted. */
  get tls(): TlsInfo | undefined {
    return this.#tls;
  }

  get tlsAvailable(): boolean {
    return this.#tlsSettings !== null;
  }

  /** The client left, or abort() ended the connection. */
  get closed(): boolean {
    return this.socket.destroyed || this.#cut;
  }

  /**
   * `fn` runs once when the client half-closes or fails (at once if it
   * already has), whether a read is pending or not; null forgets it. The
   * listener uses it to end a session that waits on its backend for a
   * client that cannot finish anyway (ProtocolModule.finEndsOpening).
   */
  whenGone(fn: (() => void) | null): void {
    this.#onGone = fn;
    if (fn !== null && this.#left) this.#gone();
  }

  /** A read() is waiting for the client's bytes. */
  get reading(): boolean {
    return this.#waiter !== null;
  }

  /** Waits until `parse` recognises a complete message in the buffered bytes. */
  read<T>(parse: OpeningParser<T>): Promise<T> {
    if (this.#error !== null) return Promise.reject(this.#error);
    if (this.#waiter !== null) return Promise.reject(new PolyproxyError('INTERNAL', 'concurrent opening reads'));
    const done = this.#tryParse(parse);
    if (done !== undefined) return Promise.resolve(done.value);
    return new Promise<T>((resolve, reject) => {
      this.#waiter = { parse, resolve: resolve as (value: unknown) => void, reject };
    });
  }

  /** True when the client has sent bytes that were not consumed yet. */
  get hasBuffered(): boolean {
    return this.#pending.length > 0;
  }

  write(bytes: Buffer | string): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  /**
   * Turns the connection into a server-side TLS session in place. Refuses
   * plaintext the client pipelined before the handshake (it could have been
   * injected by a man in the middle).
   *
   * With `bufferedIsTls`, bytes already buffered are handed to TLS instead:
   * MySQL clients start their TLS handshake right after the SSLRequest,
   * without waiting for an answer, so the ClientHello may arrive in the
   * same read. TLS rejects anything in them that is not a TLS record, so
   * nothing injected can be read as plaintext.
   */
  async upgradeToTls(options: { bufferedIsTls?: boolean } = {}): Promise<void> {
    const settings = this.#tlsSettings;
    if (settings === null) throw new PolyproxyError('INTERNAL', 'TLS is not configured on this listener');
    if (this.#pending.length > 0 && options.bufferedIsTls !== true) {
      throw new PolyproxyError('PROTOCOL', 'received unencrypted data after the TLS request', { source: 'client' });
    }
    const plain = this.socket;
    this.#unlisten(plain);
    if (this.#pending.length > 0) {
      // TLSSocket feeds what the wrapped socket has buffered to the TLS engine first.
      plain.pause();
      plain.unshift(this.#pending);
      this.#pending = EMPTY;
    }
    const secure = new tls.TLSSocket(plain, {
      isServer: true,
      secureContext: settings.secureContext,
      requestCert: settings.requestCert,
      rejectUnauthorized: false, // checked below, so the refusal can be the protocol's own error
      ...(settings.alpnProtocols === undefined ? {} : { ALPNProtocols: [...settings.alpnProtocols] }),
      ...(settings.sniCallback === undefined ? {} : { SNICallback: settings.sniCallback }),
    });
    this.socket = secure;
    await new Promise<void>((resolve, reject) => {
      const onSecure = (): void => {
        secure.removeListener('error', onError);
        secure.removeListener('close', onClose);
        resolve();
      };
      const onError = (err: Error): void => {
        secure.removeListener('secure', onSecure);
        secure.removeListener('close', onClose);
        secure.destroy();
        reject(new PolyproxyError('PROTOCOL', `TLS handshake failed: ${err.message}`, { source: 'client', cause: err }));
      };
      const onClose = (): void => {
        secure.removeListener('secure', onSecure);
        secure.removeListener('error', onError);
        reject(this.#error ?? new PolyproxyError('PROTOCOL', 'client closed the connection during the TLS handshake', { source: 'client' }));
      };
      secure.once('secure', onSecure);
      secure.once('error', onError);
      secure.once('close', onClose);
    });
    const peer = secure.getPeerCertificate();
    const cn = peer !== null && typeof peer === 'object' && peer.subject !== undefined ? peer.subject.CN : undefined;
    this.#certError = settings.requestCert ? tlsVerifyError(secure) : 'no certificate requested';
    this.#tls = {
      servername: typeof (secure as { servername?: unknown }).servername === 'string' ? (secure as unknown as { servername: string }).servername : undefined,
      authorized: this.#certError === null,
      clientCertCN: Array.isArray(cn) ? cn[0] : cn,
    };
    this.#listen(secure);
    // requireClientCert is enforced by the protocol once it can name the
    // resource in its own error (see clientCertProblem).
  }

  /** Why the client's certificate does not satisfy requireClientCert, or null when it does (or is not required). */
  clientCertProblem(): string | null {
    if (this.#tlsSettings === null || !this.#tlsSettings.requireClientCert) return null;
    if (this.#tls === undefined) return 'SSL with a client certificate is required';
    if (this.#certError === null) return null;
    return `a valid client certificate is required (${this.#certError})`;
  }

  /** Stops reading and returns the socket plus bytes received after the opening. */
  detach(): { socket: Socket; leftover: Buffer | null } {
    const socket = this.socket;
    socket.pause();
    this.#unlisten(socket);
    // Bytes the stream buffered while paused belong to the backend too.
    let chunk: Buffer | null;
    while ((chunk = socket.read() as Buffer | null) !== null) this.#append(chunk);
    const leftover = this.#pending.length > 0 ? this.#pending : null;
    this.#pending = EMPTY;
    return { socket, leftover };
  }

  /**
   * Fails a pending read (handshake timeout, shutdown). Not waiting for
   * bytes (mid TLS handshake, routing, connecting, waiting on the backend):
   * ends the connection now, after `bytes` (the protocol's error) if given.
   */
  abort(err: Error, bytes: Buffer | null = null): void {
    const reading = this.#waiter !== null;
    this.#abortWith(err);
    if (reading) return;
    this.#cut = true;
    if (bytes === null) this.socket.destroy();
    else this.close(bytes);
  }

  /** Writes the native error (if any) and closes; a client that will not read is cut off after a grace period. */
  close(bytes: Buffer | null): void {
    const socket = this.socket;
    this.#unlisten(socket);
    socket.on('error', noop);
    if (socket.destroyed) return;
    socket.resume(); // drain whatever the client still sends, so end() can complete
    if (bytes === null) socket.end();
    else socket.end(bytes);
    setTimeout(destroyIfOpen, 2000, socket).unref();
  }

  #listen(socket: Socket): void {
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('error', this.#onError);
  }

  #unlisten(socket: Socket): void {
    socket.removeListener('data', this.#onData);
    socket.removeListener('end', this.#onEnd);
    socket.removeListener('error', this.#onError);
  }

  #receive(chunk: Buffer): void {
    this.#append(chunk);
    const waiter = this.#waiter;
    if (waiter === null) {
      if (this.#pending.length > this.#maxBuffered) {
        this.#abortWith(new PolyproxyError('PROTOCOL', `opening larger than ${this.#maxBuffered} bytes`, { source: 'client' }));
        this.socket.pause();
      }
      return;
    }
    let done: { value: unknown; consumed: number } | undefined;
    try {
      done = this.#tryParse(waiter.parse);
    } catch (err) {
      this.#waiter = null;
      waiter.reject(err as Error);
      return;
    }
    if (done !== undefined) {
      this.#waiter = null;
      waiter.resolve(done.value);
    } else if (this.#pending.length > this.#maxBuffered) {
      this.#abortWith(new PolyproxyError('PROTOCOL', `opening larger than ${this.#maxBuffered} bytes`, { source: 'client' }));
    }
  }

  /**
   * Adds a chunk to the unparsed bytes. The bytes live in a store that grows
   * by doubling, so a large opening arriving in many chunks costs linear, not
   * quadratic, copying. Only bytes past the current end are ever written, so
   * views a parser returned (earlier bytes) stay intact.
   */
  #append(chunk: Buffer): void {
    const pending = this.#pending;
    if (pending.length === 0) {
      this.#pending = chunk;
      this.#store = null;
      return;
    }
    const need = pending.length + chunk.length;
    const store = this.#store;
    if (store !== null && pending.buffer === store.buffer) {
      const offset = pending.byteOffset - store.byteOffset;
      if (offset + need <= store.length) {
        chunk.copy(store, offset + pending.length);
        this.#pending = store.subarray(offset, offset + need);
        return;
      }
    }
    const next = Buffer.allocUnsafeSlow(Math.max(need * 2, 4096));
    pending.copy(next, 0);
    chunk.copy(next, pending.length);
    this.#store = next;
    this.#pending = next.subarray(0, need);
  }

  #tryParse<T>(parse: OpeningParser<T>): { value: T; consumed: number } | undefined {
    if (this.#pending.length === 0) return undefined;
    const done = parse(this.#pending);
    if (done === undefined) return undefined;
    this.#pending = done.consumed >= this.#pending.length ? EMPTY : this.#pending.subarray(done.consumed);
    return done;
  }

  #leave(err: Error): void {
    this.#left = true;
    this.#abortWith(err);
    this.#gone();
  }

  #gone(): void {
    const fn = this.#onGone;
    this.#onGone = null;
    if (fn !== null) fn();
  }

  #abortWith(err: Error): void {
    if (this.#error === null) this.#error = err;
    const waiter = this.#waiter;
    if (waiter !== null) {
      this.#waiter = null;
      waiter.reject(err);
    }
  }
}

function destroyIfOpen(socket: Socket): void {
  if (!socket.destroyed) socket.destroy();
}

function noop(): void {}
