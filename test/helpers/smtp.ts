/**
 * SMTP test helpers: an smtp-server backend that records each message's
 * raw bytes, and a raw-socket SMTP client that reads whole replies.
 */
import net from 'node:net';
import { SMTPServer } from 'smtp-server';
import type { SMTPServerOptions } from 'smtp-server';
import { replyParser } from '../../src/protocols/smtp/parse.ts';
import type { Reply } from '../../src/protocols/smtp/parse.ts';

export interface Received {
  readonly raw: Buffer;
  readonly from: string;
  readonly to: string[];
  readonly clientHostname: string;
  readonly xclientAddr: string | undefined;
}

export interface SmtpBackend {
  readonly port: number;
  readonly messages: Received[];
  /** Transactions whose client vanished before the final dot. */
  aborted: number;
  /** Resolves with the next delivered message. */
  next(): Promise<Received>;
  close(): Promise<void>;
}

export async function startSmtpBackend(options: Partial<SMTPServerOptions> = {}): Promise<SmtpBackend> {
  const messages: Received[] = [];
  const waiters: Array<(m: Received) => void> = [];
  const backend = {
    port: 0,
    messages,
    aborted: 0,
    next: (): Promise<Received> => new Promise((resolve) => waiters.push(resolve)),
    close: (): Promise<void> => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  const server = new SMTPServer({
    authOptional: true,
    secure: false,
    logger: false,
    size: 10 * 1024 * 1024,
    ...options,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', () => {
        backend.aborted++;
      });
      stream.on('end', () => {
        const xclient = (session as unknown as { xClient?: Map<string, string> }).xClient;
        const m: Received = {
          raw: Buffer.concat(chunks),
          from: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address,
          to: session.envelope.rcptTo.map((a) => a.address),
          clientHostname: session.hostNameAppearsAs,
          xclientAddr: xclient?.get('ADDR'),
        };
        messages.push(m);
        waiters.shift()?.(m);
        callback();
      });
    },
  });
  server.on('error', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  backend.port = (server.server.address() as net.AddressInfo).port;
  return backend;
}

const readReply = replyParser();

/** A raw SMTP client: send lines, read whole replies. */
export class RawSmtp {
  readonly socket: net.Socket;
  #buffered = Buffer.alloc(0);
  #waiters: Array<() => void> = [];
  closed = false;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (chunk: Buffer) => {
      this.#buffered = Buffer.concat([this.#buffered, chunk]);
      this.#wake();
    });
    this.socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
    this.socket.on('error', () => {});
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  send(text: string | Buffer): void {
    this.socket.write(text);
  }

  /** The next reply, or null when the connection closed first. */
  async reply(timeoutMs = 5000): Promise<Reply | null> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const done = this.#buffered.length > 0 ? readReply(this.#buffered) : undefined;
      if (done !== undefined) {
        this.#buffered = this.#buffered.subarray(done.consumed);
        return { ...done.value, raw: Buffer.from(done.value.raw) };
      }
      if (this.closed) return null;
      if (Date.now() > deadline) throw new Error(`no reply within ${timeoutMs} ms; have ${JSON.stringify(this.#buffered.toString())}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Sends a line and returns the reply's first line as `code text`. */
  async command(line: string): Promise<string> {
    this.send(`${line}\r\n`);
    return text(await this.reply());
  }

  /** Resolves once the proxy closed the connection. */
  async closedByPeer(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('connection still open');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** `250 text` of a reply's first line ('closed' for none). */
export function text(reply: Reply | null): string {
  if (reply === null) return 'closed';
  return `${reply.code} ${reply.lines[0] ?? ''}`;
}
