/**
 * Malformed and hostile PostgreSQL openings against an in-process proxy in
 * front of the embedded demo backend: each gets a FATAL ErrorResponse with
 * the right SQLSTATE (or the right negotiation answer) and a clean close,
 * and none of them stops the proxy from serving the next client.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { parseConfig } from '../../src/config/load.ts';
import { startPgDemoServer } from '../../src/demo/pg-demo-server.ts';
import type { PgDemoServer } from '../../src/demo/pg-demo-server.ts';
import { startProxy } from '../../src/supervisor/proxy.ts';
import type { RunningProxy } from '../../src/supervisor/proxy.ts';

const HANDSHAKE_TIMEOUT_MS = 300;
/** Anything the proxy should do promptly must happen well within this. */
const PROMPT_MS = 5000;

let demo: PgDemoServer;
let proxy: RunningProxy;
let port: number;
/** Every raw client, so a failed test cannot leave a socket holding the process open. */
const rawClients = new Set<net.Socket>();

before(async () => {
  demo = await startPgDemoServer({ name: 'demo' });
  proxy = await startProxy(
    parseConfig(
      {
        workers: 1,
        logLevel: 'silent',
        security: { allowBackends: ['127.0.0.0/8'] },
        routes: { demo: `127.0.0.1:${demo.port}` },
        listeners: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0, handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS }],
      },
      process.cwd(),
    ),
  );
  port = (proxy.bound[0] as { port: number }).port;
});

after(async () => {
  for (const socket of rawClients) socket.destroy();
  await proxy.drain(1000);
  await demo.close();
});

// --- wire helpers --------------------------------------------------------------

function startupMessage(params: Record<string, string>, version = 196608): Buffer {
  const body = Buffer.concat([...Object.entries(params).map(([k, v]) => Buffer.from(`${k}\0${v}\0`)), Buffer.from([0])]);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(8 + body.length, 0);
  head.writeUInt32BE(version, 4);
  return Buffer.concat([head, body]);
}

const SSL_REQUEST = Buffer.from('0000000804d2162f', 'hex');
const GSSENC_REQUEST = Buffer.from('0000000804d21630', 'hex');

interface BackendMessage {
  readonly type: string;
  readonly body: Buffer;
}

/** Splits complete backend messages; a trailing partial message fails the test. */
function backendMessages(bytes: Buffer): BackendMessage[] {
  const messages: BackendMessage[] = [];
  let at = 0;
  while (at < bytes.length) {
    assert.ok(at + 5 <= bytes.length, `truncated message header at ${at}`);
    const length = bytes.readUInt32BE(at + 1);
    assert.ok(length >= 4 && at + 1 + length <= bytes.length, `truncated message at ${at}`);
    messages.push({ type: String.fromCharCode(bytes[at] as number), body: bytes.subarray(at + 5, at + 1 + length) });
    at += 1 + length;
  }
  return messages;
}

/** An ErrorResponse body's fields by code (S, V, C, M, H...). */
function errorFields(body: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  let at = 0;
  while (body[at] !== 0) {
    const end = body.indexOf(0, at + 1);
    assert.ok(end > at, 'unterminated ErrorResponse field');
    fields.set(String.fromCharCode(body[at] as number), body.toString('utf8', at + 1, end));
    at = end + 1;
  }
  assert.equal(at, body.length - 1, 'the terminator ends the ErrorResponse');
  return fields;
}

/** Asserts `bytes` is exactly one FATAL ErrorResponse and returns its fields. */
function onlyError(bytes: Buffer): Map<string, string> {
  const messages = backendMessages(bytes);
  assert.deepStrictEqual(
    messages.map((m) => m.type),
    ['E'],
    `expected one ErrorResponse, got ${bytes.toString('hex')}`,
  );
  const fields = errorFields((messages[0] as BackendMessage).body);
  assert.equal(fields.get('S'), 'FATAL');
  return fields;
}

// --- a raw client that records everything -------------------------------------------

interface Closed {
  readonly received: Buffer;
  /** The proxy sent FIN ('end' seen) rather than resetting. */
  readonly sawEnd: boolean;
  readonly error: Error | null;
  readonly elapsedMs: number;
}

class RawClient {
  readonly socket: net.Socket;
  readonly closed: Promise<Closed>;
  #chunks: Buffer[] = [];
  #sawEnd = false;
  #error: Error | null = null;
  #onData: Array<() => void> = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    rawClients.add(socket);
    const started = performance.now();
    socket.on('data', (chunk: Buffer) => {
      this.#chunks.push(chunk);
      for (const wake of this.#onData) wake();
    });
    socket.on('end', () => {
      this.#sawEnd = true;
    });
    socket.on('error', (err) => {
      this.#error = err;
    });
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        rawClients.delete(socket);
        for (const wake of this.#onData) wake();
        resolve({ received: this.received, sawEnd: this.#sawEnd, error: this.#error, elapsedMs: performance.now() - started });
      });
    });
  }

  static connect(): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => {
        socket.removeListener('error', reject);
        resolve(new RawClient(socket));
      });
      socket.once('error', reject);
    });
  }

  get received(): Buffer {
    return Buffer.concat(this.#chunks);
  }

  /** Resolves once `done(received)` holds; rejects if the socket closes first or after PROMPT_MS. */
  waitFor(what: string, done: (received: Buffer) => boolean): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        finish(new Error(`timed out waiting for ${what}; got ${this.received.toString('hex')}`));
        this.socket.destroy();
      }, PROMPT_MS);
      const check = (): void => {
        const received = this.received;
        if (done(received)) finish(null, received);
        else if (this.socket.destroyed) finish(new Error(`closed while waiting for ${what}; got ${received.toString('hex')}`));
      };
      const finish = (err: Error | null, received?: Buffer): void => {
        clearTimeout(timer);
        this.#onData = this.#onData.filter((wake) => wake !== check);
        if (err === null) resolve(received as Buffer);
        else reject(err);
      };
      this.#onData.push(check);
      check();
    });
  }

  /** Waits for the close, failing after PROMPT_MS. */
  async closedPromptly(): Promise<Closed> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`not closed within ${PROMPT_MS} ms; got ${this.received.toString('hex')}`));
        this.socket.destroy();
      }, PROMPT_MS);
    });
    try {
      return await Promise.race([this.closed, late]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** ReadyForQuery ('Z') has arrived. */
function hasReady(received: Buffer): boolean {
  try {
    return backendMessages(received).some((m) => m.type === 'Z');
  } catch {
    return false; // a message is still partial
  }
}

async function queryThroughProxy(): Promise<string> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'alice', database: 'demo', ssl: false });
  await client.connect();
  try {
    const result = await client.query<{ current_database: string }>('select current_database()');
    return (result.rows[0] as { current_database: string }).current_database;
  } finally {
    await client.end();
  }
}

async function waitForNoSessions(): Promise<void> {
  const listener = proxy.listeners[0];
  assert.ok(listener !== undefined);
  const deadline = Date.now() + PROMPT_MS;
  while (listener.sessions > 0) {
    assert.ok(Date.now() < deadline, `${listener.sessions} session(s) still open`);
    await sleep(10);
  }
}

// --- the cases ---------------------------------------------------------------

describe('postgres listener: malformed openings', () => {
  it('closes a client that sends nothing once the handshake timeout passes', async () => {
    const client = await RawClient.connect();
    const { received, elapsedMs } = await client.closedPromptly();
    assert.ok(elapsedMs >= HANDSHAKE_TIMEOUT_MS - 50, `closed after ${elapsedMs} ms, before the ${HANDSHAKE_TIMEOUT_MS} ms timeout`);
    assert.ok(elapsedMs < PROMPT_MS, `closed after ${elapsedMs} ms`);
    if (received.length > 0) assert.equal(onlyError(received).get('C'), '08P01');
  });

  it('answers a length of 0xFFFFFFFF with 08P01, then FIN', async () => {
    const client = await RawClient.connect();
    client.socket.write(Buffer.from('ffffffff', 'hex'));
    const { received, sawEnd, error, elapsedMs } = await client.closedPromptly();
    const fields = onlyError(received);
    assert.equal(fields.get('C'), '08P01');
    assert.match(fields.get('M') ?? '', /length/);
    assert.equal(sawEnd, true, 'FIN, not RST');
    assert.equal(error, null);
    assert.ok(elapsedMs < HANDSHAKE_TIMEOUT_MS, `refused after ${elapsedMs} ms: should not wait for the handshake timeout`);
  });

  it('answers a protocol 2.0 startup packet with 08P01', async () => {
    const client = await RawClient.connect();
    // 2.0 packets are a fixed 296 bytes: length, version 0x00020000, then fixed-width fields.
    const v2 = Buffer.alloc(296);
    v2.writeUInt32BE(296, 0);
    v2.writeUInt32BE(0x00020000, 4);
    v2.write('demo', 8);
    v2.write('alice', 72);
    client.socket.write(v2);
    const { received, sawEnd, elapsedMs } = await client.closedPromptly();
    assert.ok(elapsedMs < HANDSHAKE_TIMEOUT_MS, `refused after ${elapsedMs} ms`);
    const fields = onlyError(received);
    assert.equal(fields.get('C'), '08P01');
    assert.match(fields.get('M') ?? '', /2\.0/);
    assert.equal(sawEnd, true);
  });

  it('refuses an SSLRequest with N when no TLS is configured, then serves the StartupMessage', async () => {
    const client = await RawClient.connect();
    client.socket.write(SSL_REQUEST);
    const answer = await client.waitFor('the SSL answer', (received) => received.length >= 1);
    assert.equal(answer.toString('latin1'), 'N');
    client.socket.write(startupMessage({ user: 'alice', database: 'demo' }));
    const received = await client.waitFor('ReadyForQuery', (bytes) => bytes.length > 1 && hasReady(bytes.subarray(1)));
    const messages = backendMessages(received.subarray(1));
    const auth = messages[0];
    assert.ok(auth !== undefined);
    assert.equal(auth.type, 'R', 'the backend answered the replayed StartupMessage');
    assert.equal(auth.body.readUInt32BE(0), 0, 'AuthenticationOk');
    assert.ok(
      messages.some((m) => m.type === 'K'),
      'BackendKeyData reached the client',
    );
    client.socket.end(Buffer.from('5800000004', 'hex')); // Terminate
    await client.closedPromptly();
  });

  it('refuses a GSSENCRequest with N and keeps waiting for the StartupMessage', async () => {
    const client = await RawClient.connect();
    client.socket.write(GSSENC_REQUEST);
    const answer = await client.waitFor('the GSS answer', (received) => received.length >= 1);
    assert.equal(answer.toString('latin1'), 'N');
    client.socket.write(startupMessage({ user: 'alice', database: 'demo' }));
    const received = await client.waitFor('ReadyForQuery', (bytes) => bytes.length > 1 && hasReady(bytes.subarray(1)));
    assert.equal(backendMessages(received.subarray(1))[0]?.type, 'R');
    client.socket.end(Buffer.from('5800000004', 'hex')); // Terminate
    await client.closedPromptly();
  });

  it('answers a startup for an unrouted database with 3D000 naming it', async () => {
    const client = await RawClient.connect();
    client.socket.write(startupMessage({ user: 'alice', database: 'nope' }));
    const { received, sawEnd } = await client.closedPromptly();
    const fields = onlyError(received);
    assert.equal(fields.get('C'), '3D000');
    assert.match(fields.get('M') ?? '', /nope/);
    assert.equal(sawEnd, true);
  });

  it('closes a client sending 200 KB of garbage with 08P01 and keeps serving', async () => {
    const client = await RawClient.connect();
    client.socket.write(Buffer.alloc(200 * 1024, 'garbage!'));
    const { received, sawEnd, elapsedMs } = await client.closedPromptly();
    assert.equal(onlyError(received).get('C'), '08P01');
    assert.ok(elapsedMs < HANDSHAKE_TIMEOUT_MS, `refused after ${elapsedMs} ms: the first 4 bytes are already an impossible length`);
    assert.equal(sawEnd, true);
    assert.equal(await queryThroughProxy(), 'demo');
  });

  it('survives a client reset in the middle of its startup packet', async () => {
    const client = await RawClient.connect();
    client.socket.write(Buffer.from('000000', 'hex'));
    await sleep(50); // let the 3 bytes reach the proxy first
    client.socket.resetAndDestroy();
    await client.closed;
    await waitForNoSessions();
    assert.equal(await queryThroughProxy(), 'demo');
  });
});
