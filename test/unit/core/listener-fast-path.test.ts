/**
 * The listener's fast path (tcp with a fixed backend: no identify, the
 * route from the router's cache, a callback Dial straight into the relay)
 * must behave like the pipeline: bytes and half-close, counters, resolver
 * hooks, balancing fallback, breaker accounting, refusal when the backend
 * is down, drain. The first connection goes the pipeline way (cache miss).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { Dial } from '../../../src/core/connect.ts';
import type { DialOwner } from '../../../src/core/connect.ts';
import { parseEndpoint } from '../../../src/core/endpoint.ts';
import type { PolyproxyError } from '../../../src/core/errors.ts';
import { EndpointHealth } from '../../../src/core/health.ts';
import { Listener } from '../../../src/core/listener.ts';
import type { ListenerSettings } from '../../../src/core/listener.ts';
import type { ConnectionInfo, ConnectionSummary, Resolver, Route } from '../../../src/core/resolver.ts';
import { Router } from '../../../src/core/router.ts';
import { SsrfGuard } from '../../../src/core/ssrf-guard.ts';
import { createTcpProtocol } from '../../../src/protocols/tcp/opening.ts';

const silent = pino({ level: 'silent' });

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
  return new Promise((resolve, reject) => {
    let got = '';
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => socket.end(payload));
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => (got += text));
    socket.on('error', reject);
    socket.on('close', () => resolve(got));
  });
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
    // TEST-NET-1 is never routed: the dial hangs until its timeout (or fails at once where there is no route at all).
    const { listener, port } = await startListener({ resolve: () => ({ endpoint: '192.0.2.1:9' }) }, new EndpointHealth({ intervalMs: 0 }), { connectTimeoutMs: 30_000 });
    listeners.push(listener);
    // Fill the route cache so the next connection takes the fast path.
    await listener.router.route('tcp', { protocol: 'tcp', listener: 'tcp', clientAddress: '', clientPort: 0, tls: undefined });
    const client = net.connect({ host: '127.0.0.1', port });
    client.on('error', () => {});
    const closed = new Promise((resolve) => client.once('close', resolve));
    await new Promise((resolve) => client.once('connect', resolve));
    await new Promise((resolve) => setTimeout(resolve, 50));
    listener.destroyAll('shutdown');
    await closed;
    await listener.idle();
    assert.equal(listener.sessions, 0);
    assert.equal(listener.counters.open, 0);
  });
});

describe('Dial', () => {
  it('fails with BACKEND_UNREACHABLE naming every endpoint, once', async () => {
    const a = await deadEndpoint();
    const b = await deadEndpoint();
    const outcome = await new Promise<{ error: PolyproxyError | null; calls: number }>((resolve) => {
      let calls = 0;
      const owner: DialOwner = {
        dialConnected: () => {
          calls++;
          resolve({ error: null, calls });
        },
        dialFailed: (_dial, error) => {
          calls++;
          setTimeout(() => resolve({ error, calls }), 50);
        },
      };
      new Dial(owner, [parseEndpoint(a), parseEndpoint(b)], 1000, undefined).start();
    });
    assert.equal(outcome.calls, 1);
    assert.equal(outcome.error?.kind, 'BACKEND_UNREACHABLE');
    assert.match(outcome.error?.message ?? '', new RegExp(`${a}: .*; ${b}: `));
  });

  it('times out an attempt that gets no answer', { timeout: 10_000 }, async () => {
    // TEST-NET-1 is never routed: the connect hangs (timeout) or fails at once (no route); either way the owner hears once.
    const started = Date.now();
    const error = await new Promise<PolyproxyError>((resolve, reject) => {
      const owner: DialOwner = { dialConnected: () => reject(new Error('connected to TEST-NET')), dialFailed: (_dial, err) => resolve(err) };
      new Dial(owner, [parseEndpoint('192.0.2.1:9')], 300, undefined).start();
    });
    assert.equal(error.kind, 'BACKEND_UNREACHABLE');
    assert.ok(Date.now() - started < 2000);
    if (/timeout/.test(error.message)) assert.ok(Date.now() - started >= 300);
  });
});
