/**
 * Health checks and circuit breakers through the real CLI: an http route
 * balanced over two backends. A killed backend is skipped within the probe
 * interval (its breaker opens, every request goes to the other) and is
 * readmitted once it is back; with both down the route fails fast with 503.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import type { ProxyStats } from '../../src/admin/source.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';

const PROBE_MS = 100;

interface Backend {
  readonly name: string;
  port: number;
  server: http.Server;
  sockets: Set<Socket>;
  hits: number;
}

function createBackend(name: string): Backend {
  const backend: Backend = { name, port: 0, server: http.createServer(), sockets: new Set(), hits: 0 };
  serve(backend);
  return backend;
}

function serve(backend: Backend): void {
  backend.server.on('request', (req, res) => {
    if (req.url !== '/healthz') backend.hits++;
    res.end(backend.name);
  });
  backend.server.on('connection', (s) => {
    backend.sockets.add(s);
    s.on('close', () => backend.sockets.delete(s));
  });
}

function start(backend: Backend, port = 0): Promise<void> {
  return new Promise((resolve) =>
    backend.server.listen(port, '127.0.0.1', () => {
      backend.port = (backend.server.address() as AddressInfo).port;
      resolve();
    }),
  );
}

/** Gone as a crashed process is: the port refuses and open connections are cut. */
async function kill(backend: Backend): Promise<void> {
  const closed = new Promise((resolve) => backend.server.close(resolve));
  for (const s of backend.sockets) s.destroy();
  await closed;
  backend.server = http.createServer();
  serve(backend);
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return Date.now() - started;
}

describe('health checks and circuit breakers (http, balanced route)', () => {
  const a = createBackend('A');
  const b = createBackend('B');
  let cli: RunningCli;
  let web: string;
  let admin: string;

  before(async () => {
    await start(a);
    await start(b);
    const config = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      admin: { port: 0 },
      security: { allowPrivateBackends: true },
      // A generous probe timeout: a killed backend refuses at once, and a loaded test machine must not time out the live one.
      health: { intervalMs: PROBE_MS, timeoutMs: 2000, fall: 1, rise: 1, openMs: 60000, httpPath: '/healthz' },
      routes: { 'app.test': [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`] },
      listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: 0, connectTimeoutMs: 2000 }],
    });
    cli = await startCli(['--config', config]);
    web = `http://127.0.0.1:${cli.port('web')}/`;
    admin = `http://127.0.0.1:${(cli.ready as unknown as { admin: AddressInfo }).admin.port}`;
  });

  after(async () => {
    await cli?.stop();
    a.server.close();
    b.server.close();
  });

  // A fresh connection per request, so each one is balanced anew.
  const get = async (): Promise<{ status: number; body: string }> => {
    const res = await request(web, { headers: { host: 'app.test', connection: 'close' }, reset: true });
    return { status: res.statusCode, body: await res.body.text() };
  };
  const state = async (backend: Backend): Promise<string | undefined> => {
    const stats = (await (await request(`${admin}/api/stats`)).body.json()) as ProxyStats;
    return stats.endpoints.find((e) => e.endpoint === `127.0.0.1:${backend.port}`)?.state;
  };

  it('balances over both while both are up', async () => {
    const bodies = new Set<string>();
    for (let i = 0; i < 6; i++) bodies.add((await get()).body);
    assert.deepEqual([...bodies].sort(), ['A', 'B']);
  });

  it('a killed backend is skipped within the probe interval, and readmitted after recovery', async () => {
    const port = a.port;
    await kill(a);
    const openedIn = await until('A open', async () => (await state(a)) === 'open');
    assert.ok(openedIn < PROBE_MS * 10, `opened after ${openedIn} ms`);
    for (let i = 0; i < 10; i++) assert.deepEqual(await get(), { status: 200, body: 'B' });
    const metrics = await (await request(`${admin}/metrics`)).body.text();
    assert.match(metrics, new RegExp(`polyproxy_endpoint_breaker_state\\{endpoint="127.0.0.1:${port}"\\} 2`));
    assert.match(metrics, new RegExp(`polyproxy_endpoint_up\\{endpoint="127.0.0.1:${port}"\\} 0`));

    await start(a, port);
    await until('A closed again', async () => (await state(a)) === 'closed');
    const before = a.hits;
    for (let i = 0; i < 6; i++) await get();
    assert.ok(a.hits - before >= 2, `A served ${a.hits - before} of 6 requests after recovery`);
  });

  it('with every endpoint down the route fails fast with 503', async () => {
    await kill(a);
    await kill(b);
    await until('both open', async () => (await state(a)) === 'open' && (await state(b)) === 'open');
    const started = Date.now();
    const res = await request(web, { headers: { host: 'app.test', accept: 'application/json' } });
    assert.equal(res.statusCode, 503);
    const body = (await res.body.json()) as { error: { code: string } };
    assert.equal(body.error.code, 'PP_ERR_UNAVAILABLE');
    assert.ok(Date.now() - started < 1000, 'no connect attempt was made');
  });
});
