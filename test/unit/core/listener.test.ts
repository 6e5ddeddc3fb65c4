/**
 * src/core/listener.ts. First the pipeline (identify → route → connect →
 * replay → relay) with a one-line test protocol: the leftover replayed,
 * refusals in the protocol's bytes, the connection limit, the handshake
 * timeout, stopAccepting. Then the fast path (tcp with a fixed backend: no identify, the
 * route from the router's cache, a callback Dial straight into the relay)
 * must behave like the pipeline: bytes and half-close, counters, resolver
 * hooks, balancing fallback, breaker accounting, refusal when the backend
 * is down, drain. The first connection goes the pipeline way (cache miss).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { unansweredEndpoint } from '../../helpers/unanswered.ts';
import type { ClientConnection } from '../../../src/core/client-connection.ts';
import { PolyproxyError } from '../../../src/core/errors.ts';
import type { ProtocolModule } from '../../../src/core/protocol.ts';
import { EndpointHealth } from '../../../src/core/health.ts';
import { ioSupport } from '../../../src/core/io/support.ts';
import { Listener } from '../../../src/core/listener.ts';
import type { ListenerSettings } from '../../../src/core/listener.ts';
import type { ConnectionInfo, ConnectionSummary, Resolver, Route } from '../../../src/core/resolver.ts';
import { Router } from '../../../src/core/router.ts';
import { SsrfGuard } from '../../../src/core/ssrf-guard.ts';
import { createTcpProtocol } from '../../../src/protocols/tcp/opening.ts';
import type { DrainTarget, Opening, ProtocolSession } from '../../../src/core/protocol.ts';

const silent = pino({ level: 'silent' });
const run = promisify(execFile);

/** Echoes, then half-closes when the client does (like the tcp-rate backend). */
async function echoServer(): Promise<{ server: net.Server; endpoint: string }> {
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, endpoint: `127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** A loopback port nothing listens on. */
async function deadEndpoint(): Promise<string> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `127.0.0.1:${port}`;
}

function settings(overrides: Partial<ListenerSettings> = {}): ListenerSettings {
  return { name: 'tcp', protocol: 'tcp', host: '127.0.0.1', port: 0, connectTimeoutMs: 2000, idleTimeoutMs: 0, handshakeTimeoutMs: 5000, firstResponseTimeoutMs: 0, tcpKeepAliveMs: 0, maxConnections: 0, maxOpeningBytes: 65536, reusePort: false, ...overrides };
}

async function startListener(resolver: Resolver, health: EndpointHealth, overrides: Partial<ListenerSettings> = {}, protocol = createTcpProtocol('tcp', { backend: 'fixed' })): Promise<{ listener: Listener; port: number }> {
  const router = new Router({ sources: [{ name: 'backend', resolver }], guard: new SsrfGuard({ allowPrivateBackends: true, allowBackends: [] }), cacheTtlMs: 60_000, cacheMaxEntries: 100, resolveTimeoutMs: 1000, health });
  const listener = new Listener(settings(overrides), protocol, router, null, silent);
  const address = await listener.listen();
  return { listener, port: address.port };
}

/** Writes `payload`, ends, and collects everything until the proxy closes. */
function roundTrip(port: number, payload: string): Promise<string> {
  return exchange(port, payload, true);
}

describe('listener fast path (tcp, fixed backend)', () => {
  const servers: net.Server[] = [];
  const listeners: Listener[] = [];
  after(async () => {
    for (const l of listeners) {
      l.destroyAll('test over');
      await l.stopAccepting();
    }
    for (const s of servers) s.close();
  });

  it('serves many connections, counts them, calls the hooks with the client address', async () => {
    const echo = await echoServer();
    servers.push(echo.server);
    const route: Route = { endpoint: echo.endpoint };
    const connects: ConnectionInfo[] = [];
    const disconnects: ConnectionSummary[] = [];
    let resolves = 0;
    const resolver: Resolver = {
      resolve: () => {
        resolves++;
        return route;
      },
      onConnect: (_id, info) => connects.push(info),
      onDisconnect: (_id, info) => disconnects.push(info),
    };
    const { listener, port } = await startListener(resolver, new EndpointHealth());
    listeners.push(listener);
    for (let i = 0; i < 5; i++) assert.equal(await roundTrip(port, `ping ${i}`), `ping ${i}`);
    const parallel = await Promise.all(Array.from({ length: 20 }, (_, i) => roundTrip(port, `p${i}`)));
    assert.deepEqual(
      parallel,
      Array.from({ length: 20 }, (_, i) => `p${i}`),
    );
    await listener.idle();
    assert.equal(resolves, 1, 'later connections are served from the cache');
    assert.equal(listener.counters.total, 25);
    assert.equal(listener.counters.open, 0);
    assert.equal(listener.counters.failed, 0);
    assert.equal(listener.counters.bytesIn, listener.counters.bytesOut);
    assert.equal(connects.length, 25);
    assert.equal(disconnects.length, 25);
    assert.ok(connects.every((c) => c.clientAddress === '127.0.0.1' && c.endpoint === echo.endpoint));
    assert.ok(disconnects.every((d) => d.clientAddress === '127.0.0.1' && d.bytesIn === d.bytesOut && d.bytesIn > 0));
  });

  it('pipeline: a client whose FIN arrives with its opening still half-closes the backend', async () => {
    // Routed by first bytes: ClientConnection reads the opening and sees the FIN before the relay exists.
    const echo = await echoServer();
    servers.push(echo.server);
    const { listener, port } = await startListener({ resolve: () => ({ endpoint: echo.endpoint }) }, new EndpointHealth(), {}, createTcpProtocol('tcp', { firstBytesTimeoutMs: 2000 }));
    listeners.push(listener);
    for (let i = 0; i < 3; i++) assert.equal(await roundTrip(port, `opening ${i}`), `opening ${i}`);
    await listener.idle();
    assert.equal(listener.counters.open, 0);
  });

  it('falls back to the next endpoint of a balanced route and feeds the breaker', async () => {
    const echo = await echoServer();
    servers.push(echo.server);
    const dead = await deadEndpoint();
    const health = new EndpointHealth({ failureThreshold: 2, intervalMs: 0 });
    const { listener, port } = await startListener({ resolve: () => ({ endpoint: [dead, echo.endpoint] }) }, health);
    listeners.push(listener);
    for (let i = 0; i < 6; i++) assert.equal(await roundTrip(port, `x${i}`), `x${i}`);
    await listener.idle();
    assert.equal(health.state(dead), 'open');
    assert.equal(listener.counters.failed, 0);
  });

  it('a backend that refuses closes the client and counts a failure, on the fast path too', async () => {
    const dead = await deadEndpoint();
    const health = new EndpointHealth({ failureThreshold: 100, intervalMs: 0 });
    const { listener, port } = await startListener({ resolve: () => ({ endpoint: dead }) }, health);
    listeners.push(listener);
    for (let i = 0; i < 3; i++) assert.equal(await roundTrip(port, 'hello'), '');
    await listener.idle();
    assert.equal(listener.counters.failed, 3);
    assert.equal(listener.counters.open, 0);
  });

  it('destroyAll ends connections still waiting for their backend', async () => {
    const hang = await unansweredEndpoint();
    const { listener, port } = await startListener({ resolve: () => ({ endpoint: hang.endpoint }) }, new EndpointHealth({ intervalMs: 0 }), { connectTimeoutMs: 30_000 });
    listeners.push(listener);
    // Fill the route cache so the next connection takes the fast path.
    await listener.router.route('tcp', { protocol: 'tcp', listener: 'tcp', clientAddress: '', clientPort: 0, tls: undefined });
    const client = net.connect({ host: '127.0.0.1', port });
    client.on('error', () => {});
    const closed = new Promise((resolve) => client.once('close', resolve));
    await new Promise((resolve) => client.once('connect', resolve));
    // The accept reaches the listener a moment after the client's connect: wait until its dial is pending.
    while (listener.sessions === 0) await new Promise((resolve) => setImmediate(resolve));
    listener.destroyAll('shutdown');
    await closed;
    await listener.idle();
    assert.equal(listener.sessions, 0);
    assert.equal(listener.counters.open, 0);
    await hang.close();
  });
});

describe('listener fast path on bare handles (direct I/O on; sockets with POLYPROXY_DIRECT_IO=0)', () => {
  const servers: net.Server[] = [];
  const listeners: Listener[] = [];
  after(async () => {
    for (const l of listeners) {
      l.destroyAll('test over');
      await l.stopAccepting();
    }
    for (const s of servers) s.close();
  });

  /** A listener whose route is already cached, so the next connection takes the fast path. */
  async function warmListener(endpoint: string | string[], overrides: Partial<ListenerSettings> = {}, health = new EndpointHealth()): Promise<{ listener: Listener; port: number }> {
    const started = await startListener({ resolve: () => ({ endpoint }) }, health, overrides);
    listeners.push(started.listener);
    await started.listener.router.route('tcp', { protocol: 'tcp', listener: 'tcp', clientAddress: '', clientPort: 0, tls: undefined });
    return started;
  }

  it('a plain session runs on bare handles only with direct I/O, with the same bytes, counters and half-close', async () => {
    const echo = await echoServer();
    servers.push(echo.server);
    const { listener, port } = await warmListener(echo.endpoint);
    const client = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    let got = '';
    client.setEncoding('utf8');
    client.on('data', (text: string) => (got += text));
    const closed = new Promise((resolve) => client.once('close', resolve));
    client.write('one');
    while (got !== 'one') await new Promise((resolve) => setImmediate(resolve));
    assert.equal(listener.handleSessions, ioSupport.handleRelay ? 1 : 0);
    assert.equal(listener.sessions, 1);
    // Half-close: the backend sees our FIN and can still answer.
    client.end('two');
    await closed;
    assert.equal(got, 'onetwo');
    await listener.idle();
    assert.equal(listener.handleSessions, 0);
    assert.equal(listener.counters.open, 0);
    assert.equal(listener.counters.bytesIn, 6);
    assert.equal(listener.counters.bytesOut, 6);
  });

  it('a bare-handle session\'s client socket still has the listener\'s keepalive, now set once on the listening socket (Linux copies it to each accepted one)', { skip: process.platform !== 'linux' ? 'Linux only' : false }, async () => {
    const echo = await echoServer();
    servers.push(echo.server);
    const { listener, port } = await warmListener(echo.endpoint, { tcpKeepAliveMs: 7000 });
    const client = net.connect({ host: '127.0.0.1', port });
    client.setEncoding('utf8');
    let got = '';
    client.on('data', (text: string) => (got += text));
    client.write('x');
    while (got !== 'x') await new Promise((resolve) => setImmediate(resolve));
    try {
      assert.equal(listener.handleSessions, ioSupport.handleRelay ? 1 : 0);
      // The proxy's end of the client connection (local port = the listener's): keepalive armed with the listener's delay.
      const { stdout } = await run('ss', ['-tnoH', 'state', 'established', `( sport = :${port} )`]);
      assert.match(stdout, /timer:\(keepalive,[0-9.]+(s|ms)?,0\)/, stdout);
      const seconds = Number(/timer:\(keepalive,([0-9.]+)s?/.exec(stdout)?.[1] ?? 'NaN');
      assert.ok(seconds > 5 && seconds <= 7, stdout);
    } finally {
      client.destroy();
      await listener.idle();
    }
  });

  it('16 MB each way through a slow reader arrive intact (queued writes, reads stopped meanwhile)', { timeout: 60_000 }, async () => {
    const echo = await echoServer();
    servers.push(echo.server);
    const { listener, port } = await warmListener(echo.endpoint);
    const payload = randomBytes(16 * 1024 * 1024);
    const received = createHash('sha256');
    let length = 0;
    await new Promise<void>((resolve, reject) => {
      const client = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => client.end(payload));
      client.on('error', reject);
      client.on('data', (chunk: Buffer) => {
        received.update(chunk);
        length += chunk.length;
        // A slow client: the proxy's writes to it queue and the backend side must stop reading.
        client.pause();
        setTimeout(() => client.resume(), 1);
      });
      client.on('close', () => resolve());
    });
    assert.equal(length, payload.length);
    assert.equal(received.digest('hex'), createHash('sha256').update(payload).digest('hex'));
    await listener.idle();
    assert.equal(listener.counters.bytesIn, payload.length);
    assert.equal(listener.counters.bytesOut, payload.length);
  });

  it('an idle session is closed by idleTimeoutMs; a client reset closes the backend', { timeout: 30_000 }, async () => {
    let backendClosed = 0;
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => {});
      socket.on('close', () => backendClosed++);
      socket.pipe(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
    const { listener, port } = await warmListener(`127.0.0.1:${(server.address() as AddressInfo).port}`, { idleTimeoutMs: 300 });
    const idle = net.connect({ host: '127.0.0.1', port });
    idle.on('error', () => {});
    await new Promise((resolve) => idle.once('connect', resolve));
    await new Promise((resolve) => idle.once('close', resolve));
    const reset = net.connect({ host: '127.0.0.1', port });
    reset.on('error', () => {});
    await new Promise((resolve) => reset.once('connect', resolve));
    reset.write('x');
    await new Promise((resolve) => reset.once('data', resolve));
    reset.resetAndDestroy();
    await listener.idle();
    while (backendClosed < 2) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(listener.counters.open, 0);
  });

  it('a balanced route with a refusing endpoint: fallback, breaker fed; all refusing: closed and counted failed', async () => {
    const echo = await echoServer();
    servers.push(echo.server);
    const dead = await deadEndpoint();
    const health = new EndpointHealth({ failureThreshold: 100, intervalMs: 0 });
    const { listener, port } = await warmListener([dead, echo.endpoint], {}, health);
    for (let i = 0; i < 4; i++) assert.equal(await roundTrip(port, `b${i}`), `b${i}`);
    await listener.idle();
    assert.equal(listener.counters.failed, 0);
    const down = await warmListener(dead, {}, new EndpointHealth({ failureThreshold: 100, intervalMs: 0 }));
    for (let i = 0; i < 2; i++) assert.equal(await roundTrip(down.port, 'hello'), '');
    await down.listener.idle();
    assert.equal(down.listener.counters.failed, 2);
    assert.equal(down.listener.counters.open, 0);
  });
});

/** A protocol whose opening is one line naming the resource; errors are `ERR <code>\n`. */
const LINE_PROTOCOL: ProtocolModule = {
  name: 'line',
  async identify(conn: ClientConnection) {
    const id = await conn.read((buffered) => {
      const end = buffered.indexOf(0x0a);
      if (end < 0) return undefined;
      if (end === 0) throw new PolyproxyError('PROTOCOL', 'empty id', { source: 'client' });
      return { value: buffered.toString('latin1', 0, end), consumed: end + 1 };
    });
    return { resourceId: id, replay: Buffer.from(`hello ${id}\n`) };
  },
  encodeError: (err) => Buffer.from(`ERR ${err.code}\n`),
};

/** Connects, writes `payload` (and ends when asked), collects everything until the proxy closes. */
function exchange(port: number, payload: string, end = true): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    // A client that does not end answers the proxy's FIN with its own (allowHalfOpen off), so 'close' comes.
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: end }, () => (end ? socket.end(payload) : socket.write(payload)));
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => (got += text));
    socket.on('error', reject);
    socket.on('close', () => resolve(got));
  });
}

describe('listener pipeline (a line protocol, routed per id)', () => {
  const servers: net.Server[] = [];
  const listeners: Listener[] = [];
  after(async () => {
    for (const l of listeners) {
      l.destroyAll('test over');
      await l.stopAccepting();
    }
    for (const s of servers) s.close();
  });

  async function start(overrides: Partial<ListenerSettings> = {}): Promise<{ listener: Listener; port: number }> {
    const echo = await echoServer();
    servers.push(echo.server);
    const resolver: Resolver = { resolve: (id) => (id === 'known' ? { endpoint: echo.endpoint } : null) };
    const started = await startListener(resolver, new EndpointHealth(), { name: 'line', protocol: 'line', ...overrides }, LINE_PROTOCOL);
    listeners.push(started.listener);
    return started;
  }

  it('replays the opening, then the bytes the client sent after it, then relays', async () => {
    const { listener, port } = await start();
    assert.equal(await exchange(port, 'known\npipelined'), 'hello known\npipelined');
    await listener.idle();
    assert.equal(listener.counters.total, 1);
    assert.equal(listener.counters.failed, 0);
    assert.equal(listener.counters.bytesOut, 'hello known\npipelined'.length);
  });

  it('refuses in the protocol\'s own bytes: an unrouted id, a malformed opening', async () => {
    const { listener, port } = await start();
    assert.equal(await exchange(port, 'nobody\n'), 'ERR PP_ERR_NOT_FOUND\n');
    assert.equal(await exchange(port, '\n'), 'ERR PP_ERR_PROTOCOL\n');
    await listener.idle();
    assert.equal(listener.counters.open, 0);
    assert.equal(listener.counters.failed, 1, 'NOT_FOUND counts; a client\'s PROTOCOL error does not');
  });

  it('an opening past maxOpeningBytes is a PROTOCOL refusal', async () => {
    const { port } = await start({ maxOpeningBytes: 16 });
    assert.equal(await exchange(port, 'x'.repeat(64), false), 'ERR PP_ERR_PROTOCOL\n');
  });

  it('past maxConnections a client gets TOO_MANY and counts as refused', async () => {
    const { listener, port } = await start({ maxConnections: 1 });
    const first = net.connect({ host: '127.0.0.1', port });
    first.on('error', () => {});
    await new Promise((resolve) => first.once('connect', resolve));
    // The first client holds its slot while its opening is incomplete.
    first.write('kno');
    assert.equal(await exchange(port, 'known\n'), 'ERR PP_ERR_TOO_MANY\n');
    assert.equal(listener.counters.refused, 1);
    first.destroy();
    await listener.idle();
    assert.equal(await exchange(port, 'known\nagain'), 'hello known\nagain', 'the slot is free again');
  });

  it('a client silent past handshakeTimeoutMs gets HANDSHAKE_TIMEOUT', async () => {
    const { port } = await start({ handshakeTimeoutMs: 100 });
    const started = Date.now();
    assert.equal(await exchange(port, 'kn', false), 'ERR PP_ERR_HANDSHAKE_TIMEOUT\n');
    const took = Date.now() - started;
    assert.ok(took >= 90 && took < 900, `closed after ${took} ms`);
  });

  it('stopAccepting refuses new clients while an established session goes on', async () => {
    const { listener, port } = await start();
    const open = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    open.setEncoding('utf8');
    let got = '';
    open.on('data', (text: string) => (got += text));
    const closed = new Promise((resolve) => open.once('close', resolve));
    open.write('known\n');
    while (!got.includes('hello')) await new Promise((resolve) => open.once('data', resolve));
    await listener.stopAccepting();
    assert.equal(listener.draining, true);
    await assert.rejects(exchange(port, 'known\n'), /ECONNREFUSED/);
    open.end('still here');
    await closed;
    assert.equal(got, 'hello known\nstill here');
    await listener.idle();
    assert.equal(listener.sessions, 0);
  });
});


/** One byte says what the client's opening does: R reads forever, W waits on `waiting` (a backend, say), T serves the connection itself. */
function fakeProtocol(waiting: Promise<void>, drains: boolean[]): ProtocolModule {
  const one = (buffered: Buffer) => ({ value: buffered.toString('latin1', 0, 1), consumed: 1 });
  return {
    name: 'fake',
    async identify(conn: ClientConnection, session?: ProtocolSession): Promise<Opening | null> {
      const mode = await conn.read(one);
      if (mode === 'R') await conn.read(() => undefined);
      if (mode === 'W') {
        await waiting;
        return { resourceId: 'db', replay: null };
      }
      // T: served here until the drain deadline.
      session?.takeOver();
      await new Promise<void>((resolve) => {
        const target: DrainTarget = {
          drain(deadline) {
            drains.push(deadline);
            if (deadline) resolve();
          },
        };
        session?.onDrain(target);
      });
      conn.close(Buffer.from('served: bye\n'));
      return null;
    },
    encodeError(err: PolyproxyError): Buffer {
      return Buffer.from(`ERR ${err.kind}\n`);
    },
  };
}

function client(port: number, first: string): { received: () => string; closed: Promise<void> } {
  let got = '';
  const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(first));
  socket.setEncoding('utf8');
  socket.on('data', (text: string) => (got += text));
  socket.on('error', () => {});
  return { received: () => got, closed: new Promise((resolve) => socket.once('close', () => resolve())) };
}

describe('Listener drain', () => {
  it('tells self-serving connections, then answers openings SHUTTING_DOWN at the deadline', async () => {
    let release!: () => void;
    const waiting = new Promise<void>((resolve) => (release = resolve));
    const drains: boolean[] = [];
    const health = new EndpointHealth({}, silent);
    const router = new Router({ sources: [{ name: 's', resolver: { resolve: () => ({ endpoint: '127.0.0.1:1' }) } }], guard: new SsrfGuard({ allowPrivateBackends: true, allowBackends: [] }), cacheTtlMs: 1000, cacheMaxEntries: 10, resolveTimeoutMs: 1000, health });
    const listener = new Listener(
      { name: 'fake', protocol: 'fake', host: '127.0.0.1', port: 0, connectTimeoutMs: 1000, idleTimeoutMs: 0, handshakeTimeoutMs: 30_000, firstResponseTimeoutMs: 0, tcpKeepAliveMs: 0, maxConnections: 0, maxOpeningBytes: 1024, reusePort: false },
      fakeProtocol(waiting, drains),
      router,
      null,
      silent,
    );
    const { port } = await listener.listen();
    const reading = client(port, 'R');
    const waiter = client(port, 'W');
    const served = client(port, 'T');
    for (let i = 0; i < 200 && listener.sessions < 3; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    await new Promise((resolve) => setTimeout(resolve, 20)); // each identify is past its first read

    await listener.stopAccepting();
    assert.deepEqual(drains, [false], 'the self-serving connection hears the drain');
    assert.equal(listener.sessions, 3, 'openings are left to finish');

    listener.destroyAll('shutdown');
    assert.deepEqual(drains, [false, true]);
    await Promise.all([reading.closed, waiter.closed, served.closed]);
    assert.equal(reading.received(), 'ERR SHUTTING_DOWN\n', 'a pending read fails and the refusal answers');
    assert.equal(waiter.received(), 'ERR SHUTTING_DOWN\n', 'waiting on something else: answered at once');
    assert.equal(served.received(), 'served: bye\n');

    // The waiting opening finishes later: no second answer, and the listener goes idle.
    release();
    await listener.idle();
    assert.equal(listener.sessions, 0);
  });
});
