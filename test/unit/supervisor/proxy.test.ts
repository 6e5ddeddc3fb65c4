/**
 * src/supervisor/proxy.ts in-process, listeners on port 0: startProxy binds
 * and serves, stats read the listeners, reload swaps routes for new
 * sessions only (warning about listener changes, refusing a config whose
 * resolver cannot load), drain waits for sessions and cuts them at its
 * deadline.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../../src/config/load.ts';
import type { Config } from '../../../src/config/schema.ts';
import { startProxy } from '../../../src/supervisor/proxy.ts';
import type { RunningProxy } from '../../../src/supervisor/proxy.ts';

const servers: net.Server[] = [];
let A: string;
let B: string;

/** Answers `<name>:` then echoes, ending when the client does. */
async function namedEcho(name: string): Promise<string> {
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    socket.write(`${name}:`);
    socket.pipe(socket);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function config(routes: Record<string, string>, extra: Record<string, unknown> = {}, listeners: unknown[] = []): Config {
  return parseConfig(
    {
      logLevel: 'silent',
      security: { allowPrivateBackends: true },
      routes,
      listeners: [{ name: 'kv', protocol: 'tcp', host: '127.0.0.1', port: 0, firstBytesTimeoutMs: 0 }, ...listeners],
      ...extra,
    },
    '/',
  );
}

/** Sends `text`, ends, returns everything until the proxy closes. */
function roundTrip(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => socket.end(text));
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (got += chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(got));
  });
}

/** A session left open: resolves once the backend's greeting came through the proxy. */
async function openSession(port: number): Promise<{ socket: net.Socket; got: () => string; closed: Promise<void> }> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  socket.on('error', () => {});
  let got = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (got += chunk));
  // 'end': the proxy closing its side is what counts (this client keeps its own half open).
  const closed = new Promise<void>((resolve) => socket.once('end', () => resolve()));
  while (!got.includes(':')) await new Promise((resolve) => socket.once('data', resolve));
  return { socket, got: () => got, closed };
}

before(async () => {
  A = await namedEcho('A');
  B = await namedEcho('B');
});

after(() => {
  for (const s of servers) s.close();
});

describe('startProxy', () => {
  let proxy: RunningProxy;
  after(() => proxy.drain(0));

  it('binds each listener (port 0 filled in), serves it, and counts in stats()', async () => {
    proxy = await startProxy(config({ kv: A }));
    assert.equal(proxy.bound.length, 1);
    const [kv] = proxy.bound;
    assert.equal(kv?.name, 'kv');
    assert.equal(kv?.protocol, 'tcp');
    assert.ok((kv?.port ?? 0) > 0);
    assert.equal(await roundTrip(kv?.port ?? 0, 'hello'), 'A:hello');
    await proxy.listeners[0]?.idle();
    const stats = proxy.stats();
    assert.equal(stats.listeners[0]?.total, 1);
    assert.equal(stats.listeners[0]?.bytesIn, 5);
    assert.equal(stats.listeners[0]?.bytesOut, 'A:hello'.length);
    assert.equal(stats.cache.misses, 1);
  });
});

describe('reload', () => {
  let proxy: RunningProxy;
  after(() => proxy.drain(0));

  it('new sessions take the new routes, an established one stays where it was', async () => {
    proxy = await startProxy(config({ kv: A }));
    const port = proxy.bound[0]?.port ?? 0;
    const old = await openSession(port);
    const warnings = await proxy.reload(config({ kv: B }));
    assert.deepEqual(warnings, []);
    assert.equal(await roundTrip(port, 'x'), 'B:x');
    old.socket.end('still A');
    await old.closed;
    assert.equal(old.got(), 'A:still A');
  });

  it('listener changes come back as warnings and wait for a restart', async () => {
    const port = proxy.bound[0]?.port ?? 0;
    const warnings = await proxy.reload(config({ kv: A }, {}, [{ name: 'extra', protocol: 'tcp', port: 0, backend: A }]));
    assert.deepEqual(warnings, ['listener extra is new: it starts at the next restart']);
    assert.equal(proxy.listeners.length, 1);
    assert.equal(await roundTrip(port, 'y'), 'A:y', 'the routes of the same reload applied');
  });

  it('a cluster change comes back as a warning (the fleet membership is made once per process)', async () => {
    // An unreachable Redis: a config with a fleet still loads; the membership is not rebuilt by a reload.
    const warnings = await proxy.reload(config({ kv: A }, { cluster: { redis: { url: 'redis://127.0.0.1:1' } } }));
    assert.ok(warnings.includes('cluster changed: the fleet settings apply at the next restart'), warnings.join('; '));
    assert.equal(proxy.fleet, null);
  });

  it('a resolver module that cannot load refuses the reload and changes nothing', async () => {
    const port = proxy.bound[0]?.port ?? 0;
    await assert.rejects(proxy.reload(config({ kv: B }, { resolver: { module: '/nonexistent/polyproxy-resolver.ts' } })));
    assert.equal(await roundTrip(port, 'z'), 'A:z');
  });
});

describe('drain', () => {
  it('stops accepting at once and returns when the last session ends', async () => {
    const proxy = await startProxy(config({ kv: A }));
    const port = proxy.bound[0]?.port ?? 0;
    const session = await openSession(port);
    let drained = false;
    const drain = proxy.drain(5000).then(() => (drained = true));
    await assert.rejects(roundTrip(port, 'late'), /ECONNREFUSED/);
    assert.equal(drained, false, 'waits for the open session');
    session.socket.end('bye');
    await drain;
    assert.equal(session.got(), 'A:bye');
  });

  it('closes the sessions left at its deadline', async () => {
    const proxy = await startProxy(config({ kv: A }));
    const session = await openSession(proxy.bound[0]?.port ?? 0);
    const started = Date.now();
    await proxy.drain(100);
    const took = Date.now() - started;
    await session.closed;
    assert.ok(took >= 95 && took < 900, `drain took ${took} ms`);
    assert.equal(proxy.listeners[0]?.sessions, 0);
  });
});
