/**
 * WsBridgeListener's failures, in-process against a real test API: each is
 * a PolyproxyError of its kind, answered through core's error pages in
 * plain text with ws2api's status, and counted in polyproxy_errors_total
 * (and `failed` unless the client caused it); maxConnections refusals
 * count as refused, not as errors.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { WsBridgeListener } from '../../../../src/protocols/ws-bridge/bridge.ts';
import type { WsBridgeSettings } from '../../../../src/protocols/ws-bridge/bridge.ts';
import { errorCounts } from '../../../helpers/errors-total.ts';
import { startApi } from '../../../helpers/ws-api.ts';
import type { TestApi } from '../../../helpers/ws-api.ts';
import { connect, connectOk, push } from '../../../helpers/ws-bridge.ts';

const silent = pino({ level: 'silent' });
const cleanup: Array<() => Promise<void>> = [];
after(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function api(): Promise<TestApi> {
  const a = await startApi();
  cleanup.push(() => a.close());
  return a;
}

async function deadApi(): Promise<string> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  return `http://127.0.0.1:${port}/api/`;
}

async function bridge(name: string, apiUrl: string, overrides: Partial<WsBridgeSettings> = {}): Promise<{ bridge: WsBridgeListener; port: number }> {
  const settings: WsBridgeSettings = {
    name,
    host: '127.0.0.1',
    port: 0,
    reusePort: false,
    maxConnections: 0,
    api: apiUrl,
    metricsPath: '/metrics',
    ordering: 'ordered',
    duplicateClientId: 'replace',
    onApiFailure: 'drop',
    pingIntervalMs: 30000,
    deadPeerTimeoutMs: 60000,
    maxMessageBytes: 1024,
    connectTimeoutMs: 1000,
    pool: { maxConnections: 8, maxIdle: 8, idleTimeoutMs: 1000, timeoutMs: 2000 },
    ...overrides,
  };
  const b = new WsBridgeListener(settings, silent);
  const address = await b.listen();
  cleanup.push(() => b.close());
  return { bridge: b, port: address.port };
}

async function until(check: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400 && !(await check()); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.ok(await check());
}

describe('ws-bridge listener: failures', () => {
  it('API down: the upgrade is refused 502 in plain text, BACKEND_UNREACHABLE counted and failed', async () => {
    const { bridge: b, port } = await bridge('wsb-down', await deadApi());
    assert.deepEqual(await connect(port, '/alice'), { ok: false, status: 502, body: 'the API is unavailable' });
    assert.deepEqual(await errorCounts('wsb-down'), { BACKEND_UNREACHABLE: 1 });
    assert.deepEqual({ total: b.counters.total, open: b.counters.open, refused: b.counters.refused, failed: b.counters.failed }, { total: 1, open: 0, refused: 0, failed: 1 });
    assert.equal(b.stats.upgradesRefused, 1);
  });

  it('API slow: 504, TIMEOUT counted', async () => {
    const a = await api();
    a.handler = () => ({ body: 'ok', delayMs: 1000 });
    const { port } = await bridge('wsb-slow', a.url, { pool: { maxConnections: 8, maxIdle: 8, idleTimeoutMs: 1000, timeoutMs: 100 } });
    assert.deepEqual(await connect(port, '/bob'), { ok: false, status: 504, body: 'the API did not answer in time' });
    assert.deepEqual(await errorCounts('wsb-slow'), { TIMEOUT: 1 });
  });

  it('the API answers anything but exactly "ok": 403 with its text, FORBIDDEN counted', async () => {
    const a = await api();
    a.handler = (req) => ({ body: req.path.endsWith('/mallory') ? 'banned' : 'ok ' });
    const { bridge: b, port } = await bridge('wsb-denied', a.url);
    assert.deepEqual(await connect(port, '/mallory'), { ok: false, status: 403, body: 'banned' });
    assert.deepEqual(await connect(port, '/eve'), { ok: false, status: 403, body: 'ok ' });
    assert.deepEqual(await errorCounts('wsb-denied'), { FORBIDDEN: 2 });
    assert.equal(b.counters.failed, 2);
  });

  it('bad upgrades are the client\'s fault: 400 / 405 / 409, counted as errors but not as failed', async () => {
    const a = await api();
    const { bridge: b, port } = await bridge('wsb-client', a.url, { duplicateClientId: 'refuse' });
    const bad = await connect(port, '/a/b');
    assert.deepEqual(bad, { ok: false, status: 400, body: 'the path must be /<ClientId>' });
    const method = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => socket.write('POST /x HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'));
      let got = '';
      socket.setEncoding('latin1');
      socket.on('data', (d: string) => (got += d));
      socket.on('close', () => resolve(got));
      socket.on('error', reject);
    });
    assert.match(method, /^HTTP\/1\.1 405 Method Not Allowed\r\n[^]*x-polyproxy-error: PP_ERR_PROTOCOL\r\n/);
    const first = await connectOk(port, '/dup');
    assert.deepEqual(await connect(port, '/dup'), { ok: false, status: 409, body: 'this ClientId is already connected' });
    assert.deepEqual(await errorCounts('wsb-client'), { PROTOCOL: 2, FORBIDDEN: 1 });
    assert.equal(b.counters.failed, 0);
    await first.close();
  });

  it('maxConnections: the upgrade past it gets 503, counted as refused and not as an error', async () => {
    const a = await api();
    const { bridge: b, port } = await bridge('wsb-max', a.url, { maxConnections: 1 });
    const first = await connectOk(port, '/one');
    assert.deepEqual(await connect(port, '/two'), { ok: false, status: 503, body: 'too many connections' });
    assert.deepEqual({ total: b.counters.total, open: b.counters.open, refused: b.counters.refused, failed: b.counters.failed }, { total: 2, open: 1, refused: 1, failed: 0 });
    assert.deepEqual(await errorCounts('wsb-max'), {});
    await first.close();
  });

  it('push to a client nobody holds: 404 on a kept-alive connection, NOT_FOUND counted; an over-size push 413 and closed', async () => {
    const a = await api();
    const { bridge: b, port } = await bridge('wsb-push', a.url);
    const res = await fetch(`http://127.0.0.1:${port}/nobody`, { method: 'POST', body: 'hi' });
    assert.equal(res.status, 404);
    assert.equal(await res.text(), 'client not connected');
    assert.equal(res.headers.get('x-polyproxy-error'), 'PP_ERR_NOT_FOUND');
    assert.equal(res.headers.get('connection'), 'keep-alive');
    const big = await fetch(`http://127.0.0.1:${port}/nobody`, { method: 'POST', body: 'x'.repeat(2000) });
    assert.equal(big.status, 413);
    assert.equal(await big.text(), 'push body over maxMessageBytes (1024)');
    assert.equal(big.headers.get('connection'), 'close');
    assert.deepEqual(await errorCounts('wsb-push'), { NOT_FOUND: 1, PROTOCOL: 1 });
    assert.equal(b.stats.pushesNotFound, 1);
  });

  it('plain requests it does not serve: 426 with Upgrade, 405 with Allow, 404', async () => {
    const a = await api();
    const { port } = await bridge('wsb-plain', a.url);
    const get = await fetch(`http://127.0.0.1:${port}/someone`);
    assert.equal(get.status, 426);
    assert.equal(get.headers.get('upgrade'), 'websocket');
    await get.text();
    const put = await fetch(`http://127.0.0.1:${port}/someone`, { method: 'PUT' });
    assert.equal(put.status, 405);
    assert.equal(put.headers.get('allow'), 'GET, POST');
    await put.text();
    const missing = await fetch(`http://127.0.0.1:${port}/a/b`);
    assert.equal(missing.status, 404);
    assert.equal(await missing.text(), 'not found');
    assert.deepEqual(await errorCounts('wsb-plain'), { PROTOCOL: 2, NOT_FOUND: 1 });
  });

  it('a message over maxMessageBytes: `ws` closes the client 1009, PROTOCOL counted', async () => {
    const a = await api();
    const { port } = await bridge('wsb-big', a.url);
    const client = await connectOk(port, '/big');
    client.ws.send('x'.repeat(2000));
    assert.equal((await client.closed).code, 1009);
    await until(async () => (await errorCounts('wsb-big')).PROTOCOL === 1);
    assert.equal(a.requests.filter((r) => r.method === 'POST').length, 0);
  });

  it('an API failure on a message (5xx) is counted; the client stays connected', async () => {
    const a = await api();
    a.handler = (req) => (req.method === 'POST' ? { status: 500, body: 'oops' } : { body: req.method === 'GET' ? 'ok' : '' });
    const { bridge: b, port } = await bridge('wsb-post', a.url);
    const client = await connectOk(port, '/carol');
    client.ws.send('hello');
    await until(async () => (await errorCounts('wsb-post')).BACKEND_UNREACHABLE === 1);
    assert.equal(b.counters.failed, 1);
    assert.equal(b.stats.messagesFailed, 1);
    assert.equal((await push(port, 'carol', 'still here')).status, 200);
    assert.equal((await client.received(1))[0]?.data.toString(), 'still here');
    await client.close();
  });
});
