/**
 * A ClientIO for client-auth tests: the proxy's writes are parsed into
 * messages, and the test answers with bytes. No sockets.
 */
import type { OpeningParser } from '../../../../../src/core/client-connection.ts';
import { PolyproxyError } from '../../../../../src/core/errors.ts';
import type { ClientIO } from '../../../../../src/protocols/postgres/auth/client-auth.ts';
import type { TlsInfo } from '../../../../../src/core/resolver.ts';

export interface SentMessage {
  readonly type: string;
  /** Authentication requests: the code. */
  readonly code?: number;
  readonly body: Buffer;
}

export class ScriptedClient implements ClientIO {
  readonly sent: SentMessage[] = [];
  tls: TlsInfo | undefined = undefined;
  #buffered = Buffer.alloc(0);
  #waiter: { parse: OpeningParser<unknown>; resolve: (v: unknown) => void; reject: (e: Error) => void } | null = null;
  #closed = false;
  #onWrite: ((msg: SentMessage, client: ScriptedClient) => void) | null;

  /** `onWrite` answers each message the proxy writes (call client.send). */
  constructor(onWrite: ((msg: SentMessage, client: ScriptedClient) => void) | null = null) {
    this.#onWrite = onWrite;
  }

  write(bytes: Buffer): void {
    let at = 0;
    while (at < bytes.length) {
      const type = String.fromCharCode(bytes[at] as number);
      const length = bytes.readUInt32BE(at + 1);
      const body = bytes.subarray(at + 5, at + 1 + length);
      const msg: SentMessage = type === 'R' ? { type, code: body.readUInt32BE(0), body: body.subarray(4) } : { type, body };
      this.sent.push(msg);
      at += 1 + length;
      this.#onWrite?.(msg, this);
    }
  }

  /** Bytes from the client. */
  send(bytes: Buffer): void {
    this.#buffered = Buffer.concat([this.#buffered, bytes]);
    this.#settle();
  }

  /** The client hangs up. */
  hangUp(): void {
    this.#closed = true;
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.reject(new PolyproxyError('PROTOCOL', 'client closed the connection during its opening', { source: 'client' }));
  }

  read<T>(parse: OpeningParser<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#waiter = { parse, resolve: resolve as (v: unknown) => void, reject };
      this.#settle();
      if (this.#closed && this.#waiter !== null) this.hangUp();
    });
  }

  #settle(): void {
    const waiter = this.#waiter;
    if (waiter === null || this.#buffered.length === 0) return;
    let done;
    try {
      done = waiter.parse(this.#buffered);
    } catch (err) {
      this.#waiter = null;
      waiter.reject(err as Error);
      return;
    }
    if (done === undefined) return;
    this.#waiter = null;
    this.#buffered = this.#buffered.subarray(done.consumed);
    waiter.resolve(done.value);
  }
}

/** A frontend 'p' message. */
export function p(body: Buffer | string): Buffer {
  const data = typeof body === 'string' ? Buffer.from(body) : body;
  const out = Buffer.alloc(5 + data.length);
  out[0] = 0x70;
  out.writeUInt32BE(4 + data.length, 1);
  data.copy(out, 5);
  return out;
}
