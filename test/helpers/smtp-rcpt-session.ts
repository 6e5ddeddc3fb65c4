/**
 * A session through the SMTP RCPT guard (src/protocols/smtp/rcpt-guard.ts)
 * without sockets: a scripted client, the guard as the relay runs it, and a
 * small backend that answers like smtp-server. Used by the guard's unit
 * tests and its properties in test/fuzz/smtp.
 */
import type { Endpoint } from '../../src/core/endpoint.ts';
import { PolyproxyError } from '../../src/core/errors.ts';
import type { Relay } from '../../src/core/relay.ts';
import { RcptGuard } from '../../src/protocols/smtp/rcpt-guard.ts';

const HERE: Endpoint = { type: 'tcp', host: '127.0.0.1', port: 2525, label: '127.0.0.1:2525' };
const THERE: Endpoint = { type: 'tcp', host: '127.0.0.1', port: 2526, label: '127.0.0.1:2526' };

/** alpha.test is the session's first domain; alpha2.test shares its backend; beta.test lives elsewhere. */
export const SAME_BACKEND = new Set(['alpha.test', 'alpha2.test']);

function makeLookup(calls: string[]): (id: string) => Promise<readonly Endpoint[]> {
  return (id) => {
    calls.push(id);
    if (SAME_BACKEND.has(id)) return Promise.resolve([HERE]);
    if (id === 'beta.test') return Promise.resolve([THERE]);
    if (id === 'pool.test') return Promise.resolve([THERE, HERE]);
    if (id === 'forbidden.test') return Promise.reject(new PolyproxyError('FORBIDDEN', 'suspended'));
    if (id === 'sleepy.test') return Promise.reject(new PolyproxyError('UNAVAILABLE', 'asleep'));
    return Promise.reject(new PolyproxyError('NOT_FOUND', `no route for ${id}`));
  };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * A backend that answers like smtp-server, one reply per command line, a
 * little later (as over a socket). Each reply goes through the guard's tap
 * and then to the client, as the relay does.
 */
class FakeBackend {
  readonly received: Buffer[] = [];
  /** RCPT lines (without line ending) the backend got in command mode. */
  readonly rcpts: string[] = [];
  /** Message contents (dot-stuffed, as on the wire, without the final "."). */
  readonly messages: string[] = [];
  destroyed = false;
  /** What write() returns (false: backpressure). */
  accepting = true;
  pendingReplies = 0;
  #line = '';
  #content: string | null = null;
  /** The replay already gave it MAIL FROM and the first RCPT TO. */
  #recipients = 1;
  readonly #session: Session;

  constructor(session: Session) {
    this.#session = session;
  }

  write(chunk: Buffer): boolean {
    if (this.destroyed) throw new Error('write after destroy');
    this.received.push(Buffer.from(chunk));
    for (const b of chunk.toString('latin1')) this.#byte(b);
    return this.accepting;
  }

  destroy(): void {
    this.destroyed = true;
  }

  get bytes(): Buffer {
    return Buffer.concat(this.received);
  }

  #byte(b: string): void {
    if (this.#content !== null) {
      this.#content += b;
      // The DATA line's CRLF counts: the content starts as if after a CRLF (RFC 5321 4.1.1.4).
      if (`\r\n${this.#content}`.endsWith('\r\n.\r\n')) {
        this.messages.push(this.#content.slice(0, -3));
        this.#content = null;
        this.#recipients = 0;
        this.#reply('250 2.0.0 queued\r\n');
      }
      return;
    }
    this.#line += b;
    if (b === '\n') {
      const line = this.#line.replace(/\r?\n$/, '');
      this.#line = '';
      this.#command(line);
    }
  }

  #command(line: string): void {
    const verb = (line.split(' ', 1)[0] ?? '').toUpperCase();
    switch (verb) {
      case 'EHLO':
        return this.#reply('250-backend.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n');
      case 'MAIL':
        this.#recipients = 0;
        return this.#reply('250 2.1.0 OK\r\n');
      case 'RCPT':
        this.rcpts.push(line);
        this.#recipients++;
        return this.#reply('250 2.1.5 OK\r\n');
      case 'DATA':
        if (this.#recipients === 0) return this.#reply('554 5.5.1 No valid recipients\r\n');
        this.#content = '';
        return this.#reply('354 End data with <CR><LF>.<CR><LF>\r\n');
      case 'RSET':
        this.#recipients = 0;
        return this.#reply('250 2.0.0 Flushed\r\n');
      case 'NOOP':
        return this.#reply('250 2.0.0 OK\r\n');
      case 'QUIT':
        return this.#reply('221 2.0.0 Bye\r\n');
      default:
        return this.#reply('500 5.5.2 Error: command not recognized\r\n');
    }
  }

  #reply(text: string): void {
    this.pendingReplies++;
    setImmediate(() => {
      this.pendingReplies--;
      this.#session.fromBackend(Buffer.from(text));
    });
  }
}

/** The client side: what it was sent, and whether the relay paused it. */
class FakeClient {
  readonly received: Buffer[] = [];
  paused = false;
  ended = false;
  readonly #session: Session;

  constructor(session: Session) {
    this.#session = session;
  }

  write(chunk: Buffer | string): boolean {
    this.received.push(Buffer.from(chunk));
    return true;
  }

  end(chunk?: Buffer | string): void {
    if (chunk !== undefined) this.write(chunk);
    this.ended = true;
  }

  resume(): void {
    this.paused = false;
    setImmediate(() => this.#session.pump());
  }

  /** The final line of every reply, in order (`250 2.1.5 OK`). */
  get replies(): string[] {
    return Buffer.concat(this.received)
      .toString('latin1')
      .split('\r\n')
      .filter((l) => l.length >= 3 && l[3] !== '-');
  }

  get codes(): number[] {
    return this.replies.map((l) => Number(l.slice(0, 3)));
  }
}

/** One relayed session: the guard between a FakeClient and a FakeBackend, after the replayed MAIL + first RCPT. */
export class Session {
  readonly guard: RcptGuard;
  readonly client = new FakeClient(this);
  readonly backend = new FakeBackend(this);
  readonly lookups: string[] = [];
  readonly relay: Relay;
  readonly #queue: Buffer[] = [];

  constructor(options: { connected?: boolean; routeBy?: 'rcpt' | 'ehlo' } = {}) {
    this.guard = new RcptGuard('alpha.test', options.routeBy);
    this.relay = { client: this.client, backend: this.backend, done: false, reason: null, bytesOut: 0, writeToBackend: (chunk: Buffer) => this.backend.write(chunk) } as unknown as Relay;
    if (options.connected !== false) this.guard.connected(HERE, makeLookup(this.lookups));
    this.guard.afterFirstRcpt();
  }

  /** The client sends these chunks, one read each, honouring pauses as the relay does. */
  send(...chunks: Array<Buffer | string>): void {
    for (const c of chunks) this.#queue.push(Buffer.from(c));
    this.pump();
  }

  pump(): void {
    while (!this.client.paused && this.#queue.length > 0 && !this.backend.destroyed) {
      const chunk = this.#queue.shift() as Buffer;
      if (!this.guard.push(this.relay, chunk)) this.client.paused = true;
    }
  }

  fromBackend(chunk: Buffer): void {
    if (this.backend.destroyed) return;
    this.relay.bytesOut += chunk.length;
    this.guard.inspect(chunk);
    this.client.write(chunk);
  }

  /** Lets replies, lookups and resumes run until nothing moves. */
  async settle(): Promise<void> {
    let quiet = 0;
    for (let i = 0; i < 10_000 && quiet < 3; i++) {
      const busy = this.backend.pendingReplies > 0 || (this.#queue.length > 0 && !this.client.paused);
      await tick();
      quiet = busy ? 0 : quiet + 1;
    }
  }

  get unsent(): number {
    return this.#queue.length;
  }
}

/** Runs a client stream through a fresh session, delivered as `chunks`. */
export async function run(chunks: Array<Buffer | string>, options: { connected?: boolean; routeBy?: 'rcpt' | 'ehlo' } = {}): Promise<Session> {
  const s = new Session(options);
  s.send(...chunks);
  await s.settle();
  return s;
}
