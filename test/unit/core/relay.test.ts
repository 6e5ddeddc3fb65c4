import { after, afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import tls from 'node:tls';
import { backendOnRead, READ_EVENTS, READ_HANDLE, READ_SHARED, Relay, WRITE_DIRECT, WRITE_SOCKET } from '../../../src/core/relay.ts';
import { onreadOption } from '../../../src/core/io/shared-read-buffer.ts';
import { ioSupport } from '../../../src/core/io/support.ts';
import type { RelayOwner, StreamTap } from '../../../src/core/relay.ts';
import { makeTestPki } from '../../helpers/certs.ts';
import type { TestPki } from '../../helpers/certs.ts';

// ---------------------------------------------------------------------------
// Harness: test client ⇄ [proxyClient | Relay | proxyBackend] ⇄ backendPeer

const servers: net.Server[] = [];
const sockets: net.Socket[] = [];
const timers: NodeJS.Timeout[] = [];

afterEach(async () => {
  for (const t of timers) clearInterval(t);
  timers.length = 0;
  for (const s of sockets) s.destroy();
  sockets.length = 0;
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  servers.length = 0;
});

async function listen(server: net.Server): Promise<number> {
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

interface Harness {
  readonly relay: Relay;
  /** The test's client (an ordinary socket, like a database driver). */
  readonly client: net.Socket;
  /** The backend server's side of the proxy → backend connection. */
  readonly backendPeer: net.Socket;
  /** Proxy side: the accepted client socket. */
  readonly proxyClient: net.Socket;
  /** Proxy side: the connection to the backend. */
  readonly proxyBackend: net.Socket;
  /** Every relayClosed() call, in order. */
  readonly closedCalls: Relay[];
  /** Resolves on the first relayClosed(). */
  readonly closed: Promise<Relay>;
  /** Errors seen on the test-side sockets (they must never crash the process). */
  readonly peerErrors: Error[];
  /** Everything the client received (null with `manualPeers`). */
  readonly atClient: Reader;
  /** Everything the backend received (null with `manualPeers`). */
  readonly atBackend: Reader;
}

interface PairOptions {
  idleTimeoutMs?: number;
  /** Relay.firstResponseMs, set before start. */
  firstResponseMs?: number;
  /** The owner's first-response hooks. */
  hooks?: Pick<RelayOwner, 'backendAnswered' | 'backendSilent'>;
  tap?: StreamTap | null;
  /** Call relay.start(replay) before returning (default true). */
  start?: boolean;
  replay?: Buffer | null;
  /**
   * The backend peer answers EOF with end(), like a real server (default true).
   * False lets a test keep writing after the client half-closed.
   */
  backendEndsOnEof?: boolean;
  /** Do not read the test-side sockets at all (the test reads them itself). */
  manualPeers?: boolean;
  /**
   * Connect to the backend with a plain socket ('data' events) instead of
   * the shared read buffer core/connect.ts uses (default false).
   */
  plainBackend?: boolean;
}

async function makePair(options: PairOptions = {}): Promise<Harness> {
  // Like the real listener: half-open allowed, paused until the relay starts.
  const proxyServer = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  const backendServer = net.createServer({ allowHalfOpen: true });
  const [proxyPort, backendPort] = await Promise.all([listen(proxyServer), listen(backendServer)]);
  const peerErrors: Error[] = [];

  const accepted = once(proxyServer, 'connection') as Promise<[net.Socket]>;
  const client = net.connect({ host: '127.0.0.1', port: proxyPort });
  sockets.push(client);
  client.on('error', (err) => peerErrors.push(err));
  const [proxyClient] = await accepted;
  sockets.push(proxyClient);

  const backendAccepted = once(backendServer, 'connection') as Promise<[net.Socket]>;
  // Like core/connect.ts unless the test asks for a plain socket.
  const proxyBackend =
    options.plainBackend === true
      ? net.connect({ host: '127.0.0.1', port: backendPort, allowHalfOpen: true })
      : net.connect({ host: '127.0.0.1', port: backendPort, allowHalfOpen: true, onread: onreadOption(backendOnRead) });
  sockets.push(proxyBackend);
  await once(proxyBackend, 'connect');
  const [backendPeer] = await backendAccepted;
  sockets.push(backendPeer);
  backendPeer.on('error', (err) => peerErrors.push(err));

  const closedCalls: Relay[] = [];
  let onClosed!: (relay: Relay) => void;
  const closed = new Promise<Relay>((resolve) => (onClosed = resolve));
  const owner: RelayOwner = {
    relayClosed(relay) {
      closedCalls.push(relay);
      onClosed(relay);
    },
    ...options.hooks,
  };
  // Readers make the test-side sockets flowing, so they see EOF and close like real peers.
  const manual = options.manualPeers === true;
  const atClient = manual ? (null as unknown as Reader) : new Reader(client);
  const atBackend = manual ? (null as unknown as Reader) : new Reader(backendPeer);
  if (!manual && options.backendEndsOnEof !== false) backendPeer.on('end', () => backendPeer.end());

  const relay = new Relay(proxyClient, proxyBackend, owner, options.idleTimeoutMs ?? 0, options.tap ?? null);
  relay.firstResponseMs = options.firstResponseMs ?? 0;
  if (options.start !== false) relay.start(options.replay ?? null);
  return { relay, client, backendPeer, proxyClient, proxyBackend, closedCalls, closed, peerErrors, atClient, atBackend };
}

/** Collects everything a socket receives; lets a test await a byte count or the end. */
class Reader {
  readonly #chunks: Buffer[] = [];
  #length = 0;
  #ended = false;
  #waiters: Array<() => void> = [];

  constructor(socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#length += chunk.length;
      this.#wake();
    });
    socket.on('end', () => {
      this.#ended = true;
      this.#wake();
    });
    socket.on('close', () => {
      this.#ended = true;
      this.#wake();
    });
  }

  get bytes(): Buffer {
    return Buffer.concat(this.#chunks);
  }

  get text(): string {
    return this.bytes.toString();
  }

  /** Resolves with everything received once at least `n` bytes arrived; rejects if the stream ends first. */
  async until(n: number): Promise<string> {
    while (this.#length < n) {
      if (this.#ended) throw new Error(`stream ended after ${this.#length} of ${n} bytes: ${JSON.stringify(this.text)}`);
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    return this.text;
  }

  /** Resolves with everything received once the peer ended. */
  async end(): Promise<string> {
    await this.ended();
    return this.text;
  }

  async ended(): Promise<void> {
    while (!this.#ended) await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}

/** Resolves when the socket has emitted 'close' (now or later). */
function closedSocket(socket: net.Socket): Promise<void> {
  return socket.closed ? Promise.resolve() : (once(socket, 'close').then(() => undefined) as Promise<void>);
}

/** Races a promise against a deadline (a bound on waiting, not a sleep). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** After everything closed, give late events a few turns and check relayClosed ran exactly once. */
async function assertClosedOnce(h: Harness): Promise<Relay> {
  const relay = await within(h.closed, 5000, 'relayClosed');
  await within(closedSocket(h.client), 5000, 'client close');
  await within(closedSocket(h.backendPeer), 5000, 'backend close');
  await within(closedSocket(h.proxyClient), 5000, 'proxy client socket close');
  await within(closedSocket(h.proxyBackend), 5000, 'proxy backend socket close');
  for (let i = 0; i < 5; i++) await tick();
  assert.equal(h.closedCalls.length, 1, 'relayClosed must be called exactly once');
  assert.equal(h.closedCalls[0], h.relay);
  assert.equal(relay, h.relay);
  assert.equal(relay.done, true);
  assert.equal(h.proxyClient.destroyed, true);
  assert.equal(h.proxyBackend.destroyed, true);
  return relay;
}

// ---------------------------------------------------------------------------

describe('Relay: data both ways', { timeout: 30_000 }, () => {
  it('forwards bytes both ways, replay first, with exact counters', async () => {
    const h = await makePair({ start: false, backendEndsOnEof: false });
    const atBackend = h.atBackend;
    const atClient = h.atClient;
    // Sent before start(): it waits in the kernel and must arrive after the replay.
    h.client.write('hello, backend');
    h.relay.start(Buffer.from('REPLAY:'));
    assert.equal(await atBackend.until(21), 'REPLAY:hello, backend');
    h.backendPeer.write('hi client');
    assert.equal(await atClient.until(9), 'hi client');
    h.client.write(Buffer.alloc(1000, 0x61));
    assert.equal((await atBackend.until(1021)).length, 1021);
    assert.equal(h.relay.bytesIn, 1021);
    assert.equal(h.relay.bytesOut, 9);

    h.client.end();
    await atBackend.end();
    h.backendPeer.end('bye');
    assert.equal(await atClient.end(), 'hi clientbye');
    const relay = await assertClosedOnce(h);
    assert.equal(relay.bytesIn, 7 + 14 + 1000);
    assert.equal(relay.bytesOut, 9 + 3);
    assert.equal(relay.reason, null);
    assert.deepEqual(h.peerErrors, []);
  });

  it('an empty replay buffer writes nothing and counts nothing', async () => {
    const h = await makePair({ replay: Buffer.alloc(0) });
    const atBackend = h.atBackend;
    h.client.write('x');
    assert.equal(await atBackend.until(1), 'x');
    assert.equal(h.relay.bytesIn, 1);
  });

  it('binary data passes through unchanged', async () => {
    const h = await makePair();
    const atBackend = h.atBackend;
    const atClient = h.atClient;
    const up = randomBytes(200_000);
    const down = randomBytes(150_000);
    h.client.end(up);
    h.backendPeer.end(down);
    await Promise.all([atBackend.ended(), atClient.ended()]);
    assert.ok(atBackend.bytes.equals(up), 'client → backend bytes differ');
    assert.ok(atClient.bytes.equals(down), 'backend → client bytes differ');
    const relay = await assertClosedOnce(h);
    assert.equal(relay.bytesIn, up.length);
    assert.equal(relay.bytesOut, down.length);
  });

  it('the backend tap sees backend bytes until it says it has seen enough', async () => {
    const seen: string[] = [];
    const tap: StreamTap = {
      inspect(chunk) {
        seen.push(chunk.toString());
        return seen.join('').includes('READY');
      },
    };
    const h = await makePair({ tap });
    const atClient = h.atClient;
    h.backendPeer.write('READY');
    assert.equal(await atClient.until(5), 'READY');
    assert.equal(h.relay.backendTap, null);
    h.backendPeer.write('after');
    assert.equal(await atClient.until(10), 'READYafter');
    assert.equal(seen.join(''), 'READY', 'the tap must not see bytes after it returned true');
  });
});

describe('Relay: closing', { timeout: 30_000 }, () => {
  it('half-close: client end() reaches the backend, which can still reply', async () => {
    const h = await makePair({ backendEndsOnEof: false });
    const atBackend = h.atBackend;
    const atClient = h.atClient;
    h.client.end('last words');
    assert.equal(await atBackend.end(), 'last words');
    // The backend has seen EOF but the session is still open the other way.
    assert.equal(h.relay.done, false);
    assert.equal(h.proxyBackend.destroyed, false);
    h.backendPeer.write('reply after FIN');
    assert.equal(await atClient.until(15), 'reply after FIN');
    h.backendPeer.end();
    assert.equal(await atClient.end(), 'reply after FIN');
    const relay = await assertClosedOnce(h);
    assert.equal(relay.reason, null);
    assert.equal(relay.bytesIn, 10);
    assert.equal(relay.bytesOut, 15);
  });

  it('backend end() closes the client', async () => {
    const h = await makePair();
    const atClient = h.atClient;
    h.backendPeer.end('goodbye');
    assert.equal(await atClient.end(), 'goodbye');
    const relay = await assertClosedOnce(h);
    assert.equal(relay.reason, null);
    assert.equal(relay.bytesOut, 7);
  });

  it('backend destroy() closes the client', async () => {
    const h = await makePair();
    h.backendPeer.destroy();
    await within(closedSocket(h.client), 5000, 'client close');
    const relay = await assertClosedOnce(h);
    assert.equal(relay.reason, null);
  });

  it('backend reset (RST) closes the client without an uncaught exception', async () => {
    const h = await makePair();
    const atBackend = h.atBackend;
    h.client.write('ping');
    await atBackend.until(4);
    h.backendPeer.resetAndDestroy();
    await within(closedSocket(h.client), 5000, 'client close');
    const relay = await assertClosedOnce(h);
    assert.equal(relay.reason, 'backend-error');
    assert.equal(h.proxyBackend.errored !== null, true, 'the proxy saw the reset as an error');
  });

  it('client reset (RST) closes the backend', async () => {
    const h = await makePair();
    const atClient = h.atClient;
    h.backendPeer.write('hello');
    await atClient.until(5);
    h.client.resetAndDestroy();
    await within(closedSocket(h.backendPeer), 5000, 'backend close');
    const relay = await assertClosedOnce(h);
    assert.equal(relay.reason, 'client-error');
  });

  it('destroy(reason) closes both sides and keeps the first reason', async () => {
    const h = await makePair();
    h.relay.destroy('shutdown');
    h.relay.destroy('idle-timeout');
    const relay = await assertClosedOnce(h);
    assert.equal(relay.reason, 'shutdown');
  });

  it("a client 'end' seen before start() (FIN with the opening) still half-closes the backend", async () => {
    const h = await makePair({ start: false });
    h.client.end('opening');
    // The opening phase reads the client to its EOF before the relay exists.
    h.proxyClient.on('data', () => {});
    h.proxyClient.resume();
    await once(h.proxyClient, 'end');
    h.proxyClient.removeAllListeners('data');
    h.proxyClient.pause();
    h.relay.start(Buffer.from('opening'));
    assert.equal(await within(h.atBackend.end(), 5000, 'backend EOF'), 'opening');
    await assertClosedOnce(h);
  });

  it("a backend 'end' seen before start() (during a replay phase) still ends the client", async () => {
    const h = await makePair({ start: false, backendEndsOnEof: false });
    h.backendPeer.end('greeting');
    h.proxyBackend.on('data', () => {});
    await once(h.proxyBackend, 'end');
    h.proxyBackend.removeAllListeners('data');
    h.relay.start(null);
    await within(h.atClient.ended(), 5000, 'client EOF');
    h.client.end();
    await assertClosedOnce(h);
  });

  it('a client socket already closed before start() still triggers relayClosed', async () => {
    const h = await makePair({ start: false });
    h.proxyClient.destroy();
    await closedSocket(h.proxyClient);
    assert.equal(h.proxyClient.closed, true);
    h.relay.start(null);
    await within(closedSocket(h.backendPeer), 5000, 'backend close');
    await assertClosedOnce(h);
  });

  it('a backend socket already closed before start() still triggers relayClosed', async () => {
    const h = await makePair({ start: false });
    h.proxyBackend.destroy();
    await closedSocket(h.proxyBackend);
    h.relay.start(Buffer.from('replay'));
    await within(closedSocket(h.client), 5000, 'client close');
    await assertClosedOnce(h);
  });

  it('both sockets closed before start() trigger relayClosed once', async () => {
    const h = await makePair({ start: false });
    h.proxyBackend.destroy();
    h.proxyClient.destroy();
    await Promise.all([closedSocket(h.proxyBackend), closedSocket(h.proxyClient)]);
    h.relay.start(null);
    await assertClosedOnce(h);
  });
});

/** 'data' mode pauses the stream; shared-read-buffer and direct modes stop the handle reading. */
function reading(socket: net.Socket): boolean {
  const handle = (socket as unknown as { _handle?: { reading?: boolean } | null })._handle;
  return !socket.isPaused() && handle?.reading !== false;
}

describe('Relay: backpressure', { timeout: 30_000 }, () => {
  const SIZE = 64 * 1024 * 1024;
  const LIMIT = 4 * 1024 * 1024;

  /** Writes `size` bytes of varied data, honouring the socket's own backpressure; returns the sha256. */
  async function pump(socket: net.Socket, size: number): Promise<string> {
    const hash = createHash('sha256');
    const base = randomBytes(1024 * 1024);
    for (let i = 0; i * base.length < size; i++) {
      const chunk = Buffer.from(base); // write() does not copy: every chunk needs its own memory
      chunk.writeUInt32BE(i, 0);
      hash.update(chunk);
      if (!socket.write(chunk)) await once(socket, 'drain');
    }
    socket.end();
    return hash.digest('hex');
  }

  /**
   * A slow consumer: at most 16 KiB per event-loop turn via read(), never flowing.
   * `sample` runs on every turn. Resolves with the sha256 and byte count at 'end'.
   */
  function slowRead(socket: net.Socket, sample: () => void): Promise<{ hash: string; total: number }> {
    return new Promise((resolve, reject) => {
      const hash = createHash('sha256');
      let total = 0;
      let ended = false;
      socket.once('end', () => {
        ended = true;
        resolve({ hash: hash.digest('hex'), total });
      });
      socket.once('error', reject);
      const step = (): void => {
        if (ended) return;
        sample();
        const n = Math.min(socket.readableLength, 16 * 1024);
        const chunk = (n > 0 ? socket.read(n) : socket.read(0)) as Buffer | null;
        if (chunk !== null) {
          hash.update(chunk);
          total += chunk.length;
        }
        setImmediate(step);
      };
      step();
    });
  }

  it('64 MB client → slow backend arrives intact with bounded proxy buffers', async () => {
    const h = await makePair({ manualPeers: true });
    let maxWritable = 0;
    let maxReadable = 0;
    let sawClientPaused = false;
    const sample = (): void => {
      maxWritable = Math.max(maxWritable, h.proxyBackend.writableLength, h.proxyClient.writableLength);
      maxReadable = Math.max(maxReadable, h.proxyClient.readableLength);
      if (!reading(h.proxyClient)) sawClientPaused = true;
    };
    const [sent, received] = await Promise.all([pump(h.client, SIZE), slowRead(h.backendPeer, sample)]);
    assert.equal(received.total, SIZE);
    assert.equal(received.hash, sent);
    assert.equal(h.relay.bytesIn, SIZE);
    assert.ok(maxWritable <= LIMIT, `proxy write buffer reached ${maxWritable} bytes`);
    assert.ok(maxReadable <= LIMIT, `proxy read buffer reached ${maxReadable} bytes`);
    assert.ok(sawClientPaused, 'the relay should have paused the client while the backend was slow');
    h.client.resume();
    h.backendPeer.end();
    await assertClosedOnce(h);
    assert.equal(h.relay.bytesOut, 0);
  });

  it('32 MB backend → slow client arrives intact with bounded proxy buffers', async () => {
    const h = await makePair({ manualPeers: true });
    const size = SIZE / 2;
    let maxWritable = 0;
    let sawBackendPaused = false;
    const sample = (): void => {
      maxWritable = Math.max(maxWritable, h.proxyClient.writableLength, h.proxyBackend.writableLength);
      if (!reading(h.proxyBackend)) sawBackendPaused = true;
    };
    const [sent, received] = await Promise.all([pump(h.backendPeer, size), slowRead(h.client, sample)]);
    assert.equal(received.total, size);
    assert.equal(received.hash, sent);
    assert.equal(h.relay.bytesOut, size);
    assert.ok(maxWritable <= LIMIT, `proxy write buffer reached ${maxWritable} bytes`);
    assert.ok(sawBackendPaused, 'the relay should have paused the backend while the client was slow');
    // The client (not half-open) answered EOF with its own end(); let the backend read it.
    h.backendPeer.resume();
    await assertClosedOnce(h);
  });
});

// These run in both passes of `npm test`: with direct I/O (the default) and
// with POLYPROXY_DIRECT_IO=0, where every side keeps its socket's methods.
describe('Relay: direct handle I/O', { timeout: 30_000 }, () => {
  /** One message each way, then a clean close with exact counters. */
  async function pingPong(h: Harness): Promise<void> {
    h.client.write('ping');
    assert.equal(await h.atBackend.until(4), 'ping');
    h.backendPeer.write('pong');
    assert.equal(await h.atClient.until(4), 'pong');
    h.client.end();
    await assertClosedOnce(h);
    assert.equal(h.relay.bytesIn, 4);
    assert.equal(h.relay.bytesOut, 4);
  }

  it('plain TCP sides are read and written through their handles unless direct I/O is off', async () => {
    const h = await makePair();
    for (const side of [h.relay.clientSide, h.relay.backendSide]) {
      assert.equal(side.readMode, ioSupport.directIo ? READ_HANDLE : READ_SHARED);
      assert.equal(side.writeMode, ioSupport.directIo ? WRITE_DIRECT : WRITE_SOCKET);
    }
    await pingPong(h);
  });

  it('a plain backend socket without the shared buffer still relays both ways', async () => {
    await pingPong(await makePair({ plainBackend: true }));
  });

  it('replayed bytes still queued in the Writable go out before direct writes', async () => {
    // 8 MB of replay cannot leave at once, so the next client bytes must wait behind it.
    const replay = Buffer.alloc(8 * 1024 * 1024, 0x61);
    const h = await makePair({ replay });
    h.client.write('tail');
    const total = replay.length + 4;
    const text = await h.atBackend.until(total);
    assert.equal(text.length, total);
    assert.equal(text.slice(-4), 'tail');
    assert.equal(text.indexOf('t'), replay.length);
    h.client.end();
    await assertClosedOnce(h);
  });

  it('bytes still queued in the backend Writable go out before direct writes', async () => {
    // Two writes queued in the Writable before the relay starts (the second waits in its buffer).
    const h = await makePair({ start: false });
    const first = Buffer.alloc(4 * 1024 * 1024, 0x61);
    const second = Buffer.alloc(4 * 1024 * 1024, 0x62);
    h.proxyBackend.write(first);
    h.proxyBackend.write(second);
    h.relay.start(null);
    h.client.write('tail');
    const total = first.length + second.length + 4;
    const text = await h.atBackend.until(total);
    assert.equal(text.length, total);
    assert.equal(text.indexOf('b'), first.length);
    assert.equal(text.indexOf('t'), first.length + second.length);
    h.client.end();
    await assertClosedOnce(h);
  });

  it('a side closed while a direct write to the other is queued: the queued bytes still arrive', async () => {
    const h = await makePair({ manualPeers: true });
    h.backendPeer.pause();
    h.client.on('error', () => {});
    const chunk = Buffer.alloc(1024 * 1024, 0x63);
    const backendSide = h.relay.backendSide;
    // Fill the loopback buffers until a write has to queue (direct, or in the Writable with direct I/O off).
    while (backendSide.pending === null && h.proxyBackend.writableLength === 0) {
      if (!h.client.write(chunk)) await Promise.race([once(h.client, 'drain'), tick()]);
      await tick();
    }
    // A protocol (or anything but EOF) closes the client side now.
    h.proxyClient.destroy();
    const relayed = h.relay.bytesIn;
    let received = 0;
    h.backendPeer.on('data', (c: Buffer) => (received += c.length));
    h.backendPeer.on('end', () => h.backendPeer.end());
    h.backendPeer.resume();
    await within(closedSocket(h.backendPeer), 5000, 'backend close');
    assert.equal(received, relayed, 'every byte the relay read from the client reaches the backend');
    await assertClosedOnce(h);
  });

  it('a backend that sends 16 MB and closes at once loses nothing to a slow client', async () => {
    const h = await makePair({ manualPeers: true });
    const size = 16 * 1024 * 1024;
    const data = randomBytes(size);
    const sent = createHash('sha256').update(data).digest('hex');
    // The backend peer writes everything, ends, and is gone before the client read much.
    h.backendPeer.end(data);
    const hash = createHash('sha256');
    let total = 0;
    for await (const chunk of h.client) {
      hash.update(chunk as Buffer);
      total += (chunk as Buffer).length;
      if (total < 1024 * 1024) await tick();
    }
    assert.equal(total, size);
    assert.equal(hash.digest('hex'), sent);
    h.client.end();
    h.backendPeer.resume();
    await assertClosedOnce(h);
    assert.equal(h.relay.bytesOut, size);
  });
});

describe('Relay: TLS client', { timeout: 30_000 }, () => {
  let pki: TestPki | null = null;
  after(async () => {
    await pki?.cleanup();
  });

  it("a TLS client's 'data' chunks reach a slow plain backend intact, through its handle unless direct I/O is off", async () => {
    pki = await makeTestPki({ serverNames: ['localhost'] });
    const ca = await readFile(pki.caCert);
    const secureContext = tls.createSecureContext({ cert: await readFile(pki.serverCert), key: await readFile(pki.serverKey) });
    const proxyServer = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    const backendServer = net.createServer({ allowHalfOpen: true });
    const [proxyPort, backendPort] = await Promise.all([listen(proxyServer), listen(backendServer)]);
    const accepted = once(proxyServer, 'connection') as Promise<[net.Socket]>;
    const client = tls.connect({ host: '127.0.0.1', port: proxyPort, servername: 'localhost', ca });
    sockets.push(client);
    const [plain] = await accepted;
    const proxyClient = new tls.TLSSocket(plain, { isServer: true, secureContext });
    sockets.push(plain, proxyClient);
    await Promise.all([once(client, 'secureConnect'), once(proxyClient, 'secure')]);
    const backendAccepted = once(backendServer, 'connection') as Promise<[net.Socket]>;
    const proxyBackend = net.connect({ host: '127.0.0.1', port: backendPort, allowHalfOpen: true, onread: onreadOption(backendOnRead) });
    sockets.push(proxyBackend);
    const [backendPeer] = await backendAccepted;
    sockets.push(backendPeer);
    backendPeer.pause();
    const relay = new Relay(proxyClient, proxyBackend, { relayClosed: () => {} }, 0, null);
    relay.start(null);
    assert.deepEqual([relay.clientSide.readMode, relay.clientSide.writeMode], [READ_EVENTS, WRITE_SOCKET]);
    assert.equal(relay.backendSide.writeMode, ioSupport.directIo ? WRITE_DIRECT : WRITE_SOCKET);

    const size = 16 * 1024 * 1024;
    const data = randomBytes(size);
    const sent = createHash('sha256').update(data).digest('hex');
    client.write(data);
    // The backend reads nothing until the proxy had to hold the client back.
    while (relay.backendSide.pending === null && proxyBackend.writableLength === 0) await tick();
    const hash = createHash('sha256');
    let total = 0;
    backendPeer.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      total += chunk.length;
    });
    backendPeer.resume();
    while (total < size) await tick();
    assert.equal(total, size);
    assert.equal(hash.digest('hex'), sent);
    assert.equal(relay.bytesIn, size);
    backendPeer.end('bye');
    let reply = '';
    client.on('data', (chunk: Buffer) => (reply += chunk.toString()));
    await once(client, 'end');
    assert.equal(reply, 'bye');
  });
});

describe('Relay: idle timeout', { timeout: 30_000 }, () => {
  it('an idle relay is destroyed with reason idle-timeout', async () => {
    const h = await makePair({ idleTimeoutMs: 1000 });
    const started = Date.now();
    const relay = await within(h.closed, 4000, 'idle relay close');
    const elapsed = Date.now() - started;
    assert.equal(relay.reason, 'idle-timeout');
    assert.ok(elapsed <= 3000, `closed after ${elapsed} ms`);
    await within(closedSocket(h.client), 2000, 'client close');
    await within(closedSocket(h.backendPeer), 2000, 'backend close');
    await assertClosedOnce(h);
  });

  it('idleTimeoutMs 0 never times out and does not keep the process alive', async () => {
    const h = await makePair({ idleTimeoutMs: 0 });
    assert.equal(h.relay.prevIdle, null);
    assert.equal(h.relay.nextIdle, null);
    h.client.end();
    h.backendPeer.end();
    const relay = await assertClosedOnce(h);
    assert.equal(relay.reason, null);
  });

  it('traffic either way refreshes lastActive', async () => {
    const h = await makePair({ idleTimeoutMs: 0 });
    const atBackend = h.atBackend;
    const atClient = h.atClient;
    h.relay.lastActive = 0;
    h.client.write('a');
    await atBackend.until(1);
    assert.ok(Date.now() - h.relay.lastActive < 2000, `client data set lastActive to ${h.relay.lastActive}`);
    h.relay.lastActive = 0;
    h.backendPeer.write('b');
    await atClient.until(1);
    assert.ok(Date.now() - h.relay.lastActive < 2000, `backend data set lastActive to ${h.relay.lastActive}`);
  });

  it('activity keeps the relay open; it times out once traffic stops', async () => {
    // 1500 ms: the coarse clock has 1 s resolution, so traffic every 200 ms must never look idle.
    const h = await makePair({ idleTimeoutMs: 1500 });
    const atBackend = h.atBackend;
    const started = Date.now();
    let sent = 0;
    const done = new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        h.client.write('.');
        if (++sent === 16) {
          clearInterval(timer);
          resolve();
        }
      }, 200);
      timers.push(timer);
    });
    await done;
    const lastActivity = Date.now();
    assert.ok(lastActivity - started >= 3000, 'traffic lasted twice the idle timeout');
    assert.equal(await atBackend.until(16), '.'.repeat(16));
    assert.equal(h.closedCalls.length, 0, 'an active relay must not time out');
    assert.equal(h.relay.reason, null);

    const relay = await within(h.closed, 4000, 'idle close after traffic stopped');
    const idleFor = Date.now() - lastActivity;
    assert.equal(relay.reason, 'idle-timeout');
    assert.ok(idleFor >= 300 && idleFor <= 3000, `closed ${idleFor} ms after the last byte`);
    await assertClosedOnce(h);
  });

  // The sweep compares `coarseNow - lastActive >= idleTimeoutMs`, but lastActive is
  // stamped from the coarse clock, which can be up to ~1 s stale (it is refreshed by
  // two unrelated 1 s intervals). A relay created just after a sweep, before the
  // other interval ticks, gets lastActive = that sweep's time and is destroyed at the
  // very next sweep: long before it has been idle for idleTimeoutMs. Scripted below
  // by lining up both intervals; the same happens at random to active sessions.
  it(
    'a relay is never closed as idle before idleTimeoutMs of real idleness',
    async () => {
      const owner: RelayOwner = { relayClosed() {} };
      const dummy = new net.Socket();
      /** Reads the module's coarse clock: the constructor stamps lastActive with it. */
      const coarse = (): number => new Relay(dummy, dummy, owner, 0, null).lastActive;
      const poll = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 5));
      const deadline = Date.now() + 5000;
      const waitUntil = async (cond: () => boolean): Promise<void> => {
        while (!cond()) {
          assert.ok(Date.now() < deadline, 'clock alignment took too long');
          await poll();
        }
      };
      // 1. Find a tick of the always-on coarse clock interval (no idle relay is open, so no sweep runs).
      const before = coarse();
      await waitUntil(() => coarse() !== before);
      const tick0 = coarse();
      // 2. Start the sweep 300 ms after that tick: sweeps then run 300 ms after every clock tick.
      await waitUntil(() => Date.now() >= tick0 + 300);
      const keeper = await makePair({ idleTimeoutMs: 60_000 });
      const sweepStart = Date.now();
      // 3. Wait for the first sweep to refresh the clock, then 400 ms more (the other interval ticks 700 ms after the sweep).
      await waitUntil(() => coarse() >= sweepStart + 990);
      const sweep1 = coarse();
      await waitUntil(() => Date.now() >= sweep1 + 400);
      // 4. A fresh relay now: it has been idle 0 ms.
      const h = await makePair({ idleTimeoutMs: 999 });
      const created = Date.now();
      const relay = await within(h.closed, 4000, 'idle close');
      const idleFor = Date.now() - created;
      assert.equal(relay.reason, 'idle-timeout');
      keeper.relay.destroy('test-end');
      assert.ok(idleFor >= 950, `closed as idle after only ${idleFor} ms (idleTimeoutMs 999)`);
    },
  );
});

describe('Relay: first response (issue 16, #3 and #5)', { timeout: 30_000 }, () => {
  const recorder = (): { answers: Array<string | null>; silent: Relay[]; hooks: NonNullable<PairOptions['hooks']> } => {
    const answers: Array<string | null> = [];
    const silent: Relay[] = [];
    return { answers, silent, hooks: { backendAnswered: (_relay, problem) => answers.push(problem), backendSilent: (relay) => (silent.push(relay), relay.destroy('test-silent')) } };
  };

  it('a backend silent past firstResponseMs: backendSilent, once, and the relay ends', async () => {
    const r = recorder();
    const h = await makePair({ firstResponseMs: 500, hooks: r.hooks, replay: Buffer.from('startup') });
    const started = Date.now();
    const relay = await within(h.closed, 4000, 'close after the deadline');
    const elapsed = Date.now() - started;
    assert.equal(relay.reason, 'first-response-timeout');
    assert.ok(elapsed >= 450 && elapsed <= 2500, `ended after ${elapsed} ms`);
    assert.deepEqual(r.silent, [relay]);
    assert.deepEqual(r.answers, []);
    await assertClosedOnce(h);
  });

  it('a client half-closed in front of a silent backend is ended by the deadline', async () => {
    const r = recorder();
    const h = await makePair({ firstResponseMs: 500, hooks: r.hooks, backendEndsOnEof: false });
    h.client.end();
    const relay = await within(h.closed, 4000, 'close after the deadline');
    assert.equal(relay.reason, 'first-response-timeout');
  });

  it('a first byte is reported as an answer and no deadline fires afterwards', async () => {
    const r = recorder();
    const h = await makePair({ firstResponseMs: 500, hooks: r.hooks });
    h.backendPeer.write('R');
    await h.atClient.until(1);
    await new Promise((resolve) => setTimeout(resolve, 2200));
    assert.deepEqual(r.answers, [null]);
    assert.deepEqual(r.silent, []);
    assert.equal(h.relay.done, false);
    h.relay.destroy('test-end');
    await h.closed;
    assert.deepEqual(r.answers, [null], 'reported once');
  });

  it('a backend reset before its first byte is reported as a failure', async () => {
    const r = recorder();
    const h = await makePair({ firstResponseMs: 5000, hooks: r.hooks });
    h.backendPeer.resetAndDestroy();
    await within(h.closed, 4000, 'close after the reset');
    assert.equal(r.answers.length, 1);
    assert.match(String(r.answers[0]), /before answering/);
  });

  it('a backend that closes before its first byte is reported; a client that left first is not the backend failing', async () => {
    const r = recorder();
    const h = await makePair({ firstResponseMs: 5000, hooks: r.hooks });
    h.backendPeer.end();
    await within(h.closed, 4000, 'close after the backend FIN');
    assert.deepEqual(r.answers, ['closed before answering']);

    const r2 = recorder();
    const h2 = await makePair({ firstResponseMs: 5000, hooks: r2.hooks });
    h2.client.resetAndDestroy();
    await within(h2.closed, 4000, 'close after the client reset');
    assert.deepEqual(r2.answers, []);
  });
});
