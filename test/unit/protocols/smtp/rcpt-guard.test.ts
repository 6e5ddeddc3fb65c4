/**
 * The relay's client filter for `routeBy: rcpt` (rcpt-guard.ts), between a
 * scripted client and a small SMTP backend that answers like smtp-server:
 * what reaches the backend, what the client is told and in which order, for
 * pipelined command streams split at every offset, and a fuzz over
 * arbitrary chunks.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Endpoint } from '../../../../src/core/endpoint.ts';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import type { Relay } from '../../../../src/core/relay.ts';
import { parsePath } from '../../../../src/protocols/smtp/parse.ts';
import { RcptGuard } from '../../../../src/protocols/smtp/rcpt-guard.ts';

const HERE: Endpoint = { type: 'tcp', host: '127.0.0.1', port: 2525, label: '127.0.0.1:2525' };
const THERE: Endpoint = { type: 'tcp', host: '127.0.0.1', port: 2526, label: '127.0.0.1:2526' };

/** alpha.test is the session's first domain; alpha2.test shares its backend; beta.test lives elsewhere. */
const SAME_BACKEND = new Set(['alpha.test', 'alpha2.test']);

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
class Session {
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
async function run(chunks: Array<Buffer | string>, options: { connected?: boolean; routeBy?: 'rcpt' | 'ehlo' } = {}): Promise<Session> {
  const s = new Session(options);
  s.send(...chunks);
  await s.settle();
  return s;
}

/** The stream whole, byte by byte, and cut in two at every offset. */
function splits(text: string): Buffer[][] {
  const stream = Buffer.from(text);
  const out: Buffer[][] = [[stream], [...stream].map((b) => Buffer.from([b]))];
  for (let cut = 1; cut < stream.length; cut++) out.push([stream.subarray(0, cut), stream.subarray(cut)]);
  return out;
}

describe('RcptGuard', () => {
  it('passes RCPTs of the first domain, other commands and a message through unchanged, with no lookup', async () => {
    const stream = 'RCPT TO:<b@alpha.test>\r\nRCPT TO:<c@Alpha.Test.>\r\nNOOP\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n';
    for (const chunks of splits(stream)) {
      const s = await run(chunks);
      assert.equal(s.backend.bytes.toString(), stream);
      assert.deepEqual(s.client.codes, [250, 250, 250, 354, 250, 221]);
      assert.deepEqual(s.lookups, []);
      assert.deepEqual(s.backend.messages, ['Subject: x\r\n\r\nhi\r\n']);
      assert.equal(s.client.paused, false);
    }
  });

  it('answers a pipelined RCPT routed to another backend 451 4.3.0 in its place; the rest goes through in order', async () => {
    const stream = 'RCPT TO:<b@beta.test>\r\nRCPT TO:<c@alpha2.test>\r\nRCPT TO:<d@beta.test>\r\nDATA\r\nbody\r\n.\r\n';
    for (const chunks of splits(stream)) {
      const s = await run(chunks);
      assert.deepEqual(s.client.codes, [451, 250, 451, 354, 250], s.client.replies.join(' | '));
      assert.match(s.client.replies[0] as string, /^451 4\.3\.0 <beta\.test> is served by another server/);
      assert.deepEqual(s.backend.rcpts, ['RCPT TO:<c@alpha2.test>']);
      assert.equal(s.backend.bytes.toString(), 'RCPT TO:<c@alpha2.test>\r\nDATA\r\nbody\r\n.\r\n');
      assert.deepEqual(s.backend.messages, ['body\r\n']);
    }
  });

  it('looks a domain up once: a domain found on this backend passes later without a lookup', async () => {
    const s = await run(['RCPT TO:<a@alpha2.test>\r\nRCPT TO:<b@alpha2.test>\r\nRCPT TO:<c@beta.test>\r\nRCPT TO:<d@beta.test>\r\n']);
    assert.deepEqual(s.client.codes, [250, 250, 451, 451]);
    // A refused domain is asked again (its route may change); an accepted one is remembered.
    assert.deepEqual(s.lookups, ['alpha2.test', 'beta.test', 'beta.test']);
  });

  it('passes a domain whose balanced route includes this backend', async () => {
    const s = await run(['RCPT TO:<a@pool.test>\r\n']);
    assert.deepEqual(s.client.codes, [250]);
    assert.deepEqual(s.backend.rcpts, ['RCPT TO:<a@pool.test>']);
  });

  it('maps lookup failures: not routed 550 5.1.2, forbidden 550 5.7.1, unavailable 451 4.3.0', async () => {
    const s = await run(['RCPT TO:<a@nowhere.test>\r\nRCPT TO:<b@forbidden.test>\r\nRCPT TO:<c@sleepy.test>\r\nNOOP\r\n']);
    assert.deepEqual(
      s.client.replies.map((r) => r.slice(0, 9)),
      ['550 5.1.2', '550 5.7.1', '451 4.3.0', '250 2.0.0'],
    );
    assert.equal(s.backend.bytes.toString(), 'NOOP\r\n');
  });

  it('answers 451 when the session has no backend to compare with yet', async () => {
    const s = await run(['RCPT TO:<a@alpha2.test>\r\n'], { connected: false });
    assert.deepEqual(s.client.codes, [451]);
    assert.equal(s.backend.bytes.length, 0);
  });

  it('forwards a RCPT without a domain; refuses RCPTs it cannot parse instead of forwarding them (issue 15)', async () => {
    const s = await run(['RCPT TO:<postmaster>\r\nRCPT <x@beta.test>\r\nRCPT TO:<unterminated@beta.test\r\nRCPT TO:<"x"@>\r\n']);
    assert.deepEqual(s.backend.rcpts, ['RCPT TO:<postmaster>']);
    assert.deepEqual(s.client.codes, [250, 501, 501, 501]);
    assert.deepEqual(s.lookups, []);
  });

  it('reads RCPT as a lenient backend would: leading blanks, a tab after the verb, a quoted ">" (issue 15)', async () => {
    for (const line of [' RCPT TO:<x@beta.test>', 'RCPT\tTO:<x@beta.test>', 'rcpt to: <x@BETA.test.>', 'RCPT TO:<"a>b"@beta.test>', 'RCPT TO:<@alpha.test:x@beta.test>']) {
      const s = await run([`${line}\r\n`]);
      assert.deepEqual(s.backend.rcpts, [], line);
      assert.deepEqual(s.lookups, ['beta.test'], line);
      assert.deepEqual(s.client.codes, [451], line);
    }
  });

  it('routeBy ehlo: a later EHLO/HELO is checked like a recipient, RCPTs pass (issue 15)', async () => {
    for (const chunks of splits('EHLO alpha2.test\r\nHELO beta.test\r\n ehlo forbidden.test\r\nEHLO bad..name\r\nRCPT TO:<x@beta.test>\r\n')) {
      const s = await run(chunks, { routeBy: 'ehlo' });
      assert.deepEqual(s.client.codes, [250, 550, 550, 501, 250], s.client.replies.join(' | '));
      assert.deepEqual(s.lookups, ['alpha2.test', 'beta.test', 'forbidden.test']);
      assert.ok(!s.backend.bytes.toString().includes('beta.test\r\nEHLO') && !s.backend.bytes.toString().includes('HELO beta'));
      assert.ok(!s.backend.bytes.toString().includes('forbidden'));
    }
  });

  it('holds what follows DATA until the backend answers: content is never read as commands', async () => {
    // Lines in the content that look like commands must reach the backend as content, untouched.
    const content = 'RCPT TO:<x@beta.test>\r\n..\r\nSTARTTLS\r\n.not the end\r\n';
    const stream = `DATA\r\n${content}.\r\nRCPT TO:<y@beta.test>\r\n`;
    for (const chunks of splits(stream)) {
      const s = await run(chunks);
      assert.deepEqual(s.backend.messages, [content]);
      assert.deepEqual(s.client.codes, [354, 250, 451], s.client.replies.join(' | '));
      assert.deepEqual(s.lookups, ['beta.test']);
    }
  });

  it('an empty message: the "." right after DATA ends it', async () => {
    for (const chunks of splits('DATA\r\n.\r\nNOOP\r\n')) {
      const s = await run(chunks);
      assert.deepEqual(s.backend.messages, ['']);
      assert.deepEqual(s.client.codes, [354, 250, 250]);
    }
  });

  it('a refused DATA (no valid recipients) leaves the guard in command mode: what follows are commands again', async () => {
    const s = new Session();
    s.send('RSET\r\nDATA\r\nRCPT TO:<x@beta.test>\r\n');
    await s.settle();
    assert.deepEqual(s.client.codes, [250, 554, 451]);
    assert.deepEqual(s.backend.rcpts, []);
  });

  it('RSET between transactions: each transaction is checked the same way', async () => {
    const stream =
      'RCPT TO:<x@beta.test>\r\nRSET\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<y@alpha.test>\r\nRCPT TO:<z@beta.test>\r\nDATA\r\none\r\n.\r\n' +
      'MAIL FROM:<s@example.org>\r\nRCPT TO:<w@alpha2.test>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n';
    for (const chunks of [[stream], ...splits(stream).slice(1, 3)]) {
      const s = await run(chunks);
      assert.deepEqual(s.client.codes, [451, 250, 250, 250, 451, 354, 250, 250, 250, 354, 250, 221], s.client.replies.join(' | '));
      assert.deepEqual(s.backend.messages, ['one\r\n', 'two\r\n']);
      assert.deepEqual(s.backend.rcpts, ['RCPT TO:<y@alpha.test>', 'RCPT TO:<w@alpha2.test>']);
    }
  });

  it('counts multi-line backend replies once (EHLO mid-session)', async () => {
    const s = await run(['EHLO again.example\r\nRCPT TO:<x@beta.test>\r\n']);
    assert.deepEqual(s.client.codes, [250, 451]);
    assert.ok(s.client.replies[1]?.startsWith('451'), 'the local reply follows the whole multi-line reply');
  });

  it('refuses STARTTLS (454) and BDAT (502) itself: commands must stay readable and content only comes as DATA', async () => {
    const s = await run(['STARTTLS\r\nBDAT 5 LAST\r\nNOOP\r\n']);
    assert.deepEqual(s.client.replies.map((r) => r.slice(0, 9)), ['454 4.7.0', '502 5.5.1', '250 2.0.0']);
    assert.equal(s.backend.bytes.toString(), 'NOOP\r\n');
  });

  it('ends the session on a command line longer than 64 KiB', async () => {
    const s = await run([`NOOP ${'x'.repeat(40_000)}`, 'x'.repeat(40_000)]);
    assert.ok(s.backend.destroyed);
    assert.ok(s.client.ended);
    assert.deepEqual(s.client.replies, ['500 5.5.2 Line too long']);
    assert.equal(s.relay.reason, 'refused-command');
  });

  it('reports backpressure: push returns false when the backend does not take the bytes', () => {
    const s = new Session();
    s.backend.accepting = false;
    assert.equal(s.guard.push(s.relay, Buffer.from('NOOP\r\n')), false);
    s.backend.accepting = true;
    assert.equal(s.guard.push(s.relay, Buffer.from('NOOP\r\n')), true, 'a command still awaiting its reply is no reason to pause');
  });

  it('fuzz: well-formed pipelined sessions, split anywhere: no foreign RCPT reaches the backend, every command is answered in order', async () => {
    const rcpt = fc.constantFrom('alpha.test', 'alpha2.test', 'beta.test', 'nowhere.test', 'forbidden.test', 'sleepy.test').map((d) => `RCPT TO:<u@${d}>\r\n`);
    const content = fc
      .array(fc.constantFrom('line\r\n', '..dot\r\n', 'RCPT TO:<x@beta.test>\r\n', '.\r\n'.replace('.', '..'), 'QUIT\r\n', '\r\n'), { maxLength: 5 })
      .map((lines) => `${lines.join('')}.\r\n`);
    const command = fc.oneof(
      rcpt,
      fc.constant('MAIL FROM:<s@example.org>\r\n'),
      fc.constant('RSET\r\n'),
      fc.constant('NOOP\r\n'),
      fc.constant('EHLO x.example\r\n'),
      fc.constant('HELP\r\n'),
      content.map((c) => ({ data: c })),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 6 }), async (commands, cuts) => {
        // DATA is sent with its content pipelined; the content only counts as such if the backend says 354.
        let text = '';
        for (const c of commands) text += typeof c === 'string' ? c : `DATA\r\n${c.data}`;
        text += 'NOOP\r\n';
        const stream = Buffer.from(text);
        const points = [...new Set(cuts.map((c) => c % stream.length))].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let at = 0;
        for (const p of points) {
          chunks.push(stream.subarray(at, p));
          at = p;
        }
        chunks.push(stream.subarray(at));
        const s = await run(chunks);
        for (const line of s.backend.rcpts) {
          const domain = parsePath(line.slice(5), 'TO').domain;
          assert.ok(SAME_BACKEND.has(domain), `forwarded ${line}`);
        }
        assert.equal(s.unsent, 0, 'every chunk was taken');
        assert.equal(s.client.paused, false);
        assert.equal(s.client.replies.at(-1), '250 2.0.0 OK', `the final NOOP is answered last: ${s.client.replies.join(' | ')}`);
      }),
      { numRuns: 200 },
    );
  });

  it('fuzz: arbitrary bytes split at random points never throw and never forward a foreign RCPT', async () => {
    const piece = fc.oneof(
      fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
      fc.constantFrom('RCPT TO:<a@beta.test>\r\n', 'rcpt to: <b@BETA.test.>\r\n', 'RCPT TO:<c@alpha2.test>\n', 'DATA\r\n', '\r\n.\r\n', '.\r\n', 'RCPT TO:<d@nowhere.test>\r\n', 'BDAT 1\r\n', 'STARTTLS\r\n', '\r', '\n').map((t) => Buffer.from(t)),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(piece, { maxLength: 25 }), fc.array(fc.nat(), { maxLength: 8 }), async (pieces, cuts) => {
        const stream = Buffer.concat(pieces);
        const points = [...new Set(cuts.map((c) => (stream.length === 0 ? 0 : c % stream.length)))].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let at = 0;
        for (const p of points) {
          chunks.push(stream.subarray(at, p));
          at = p;
        }
        chunks.push(stream.subarray(at));
        const s = await run(chunks);
        for (const line of s.backend.rcpts) {
          let domain: string;
          try {
            domain = parsePath(line.slice(5).trim(), 'TO').domain;
          } catch {
            continue; // unparseable: the backend refuses it too
          }
          assert.ok(domain === '' || SAME_BACKEND.has(domain), `forwarded ${JSON.stringify(line)}`);
        }
      }),
      { numRuns: 300 },
    );
  });
});
