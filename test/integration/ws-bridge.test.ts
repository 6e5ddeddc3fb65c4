/**
 * The ws-bridge listener (issue #6, DESIGN.md "WebSocket ↔ HTTP bridge"):
 * `ws` clients through the bridge to a real node:http API, one test per
 * arrow of the ws2api protocol and per failure.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { startProxy } from '../../src/supervisor/proxy.ts';
import type { RunningProxy } from '../../src/supervisor/proxy.ts';
import { connect, connectOk, metrics, push } from '../helpers/ws-bridge.ts';
import { API_BASE, startApi } from '../helpers/ws-api.ts';
import type { ApiRequest, TestApi } from '../helpers/ws-api.ts';

const running: Array<{ stop(): Promise<void> }> = [];
after(async () => {
  for (const r of running.splice(0).reverse()) await r.stop();
});

async function bridge(api: string, extra: Record<string, unknown> = {}): Promise<{ proxy: RunningProxy; port: number }> {
  const config = parseConfig({ workers: 1, logLevel: 'silent', listeners: [{ name: 'ws', protocol: 'ws-bridge', host: '127.0.0.1', port: 0, api, ...extra }] }, process.cwd());
  const proxy = await startProxy(config);
  running.push({ stop: () => proxy.drain(200) });
  return { proxy, port: proxy.bound[0]?.port ?? 0 };
}

async function api(): Promise<TestApi> {
  const a = await startApi();
  running.push({ stop: () => a.close() });
  return a;
}

const is = (method: string, id: string) => (r: ApiRequest) => r.method === method && r.path === `${API_BASE}${id}`;

test('every arrow: upgrade → GET ok; message → POST and reply; push → message; close → DELETE with the reason', async () => {
  const a = await api();
  const { port } = await bridge(a.url);
  const client = await connectOk(port, '/alice');
  const get = await a.waitFor(is('GET', 'alice'));
  assert.equal(get.body.length, 0);
  assert.equal(get.headers['x-forwarded-for'], '127.0.0.1');

  client.ws.send('hello');
  const post = await a.waitFor(is('POST', 'alice'));
  assert.equal(post.body.toString(), 'hello');
  assert.equal(post.contentType, 'text/plain; charset=utf-8');
  const [reply] = await client.received(1);
  assert.equal(reply?.data.toString(), 're:hello');
  assert.equal(reply?.isBinary, false);

  const pushed = await push(port, 'alice', 'from the API');
  assert.deepEqual(pushed, { status: 200, text: 'ok' });
  const second = (await client.received(2))[1];
  assert.equal(second?.data.toString(), 'from the API');
  assert.equal(second?.isBinary, false);

  await client.close(1000, 'bye now');
  const del = await a.waitFor(is('DELETE', 'alice'));
  assert.equal(del.body.toString(), 'bye now');
  assert.deepEqual(
    a.requests.map((r) => r.method),
    ['GET', 'POST', 'DELETE'],
  );
});

test('an empty API answer sends nothing back; a non-2xx answer neither', async () => {
  const a = await api();
  a.handler = (req) => (req.method === 'GET' ? { body: 'ok' } : req.body.toString() === 'fail' ? { status: 400, body: 'bad' } : req.body.toString() === 'quiet' ? { body: '' } : { body: `re:${req.body.toString()}` });
  const { port } = await bridge(a.url);
  const client = await connectOk(port, '/bob');
  client.ws.send('quiet');
  client.ws.send('fail');
  client.ws.send('last');
  const [only] = await client.received(1);
  assert.equal(only?.data.toString(), 're:last');
  assert.equal(client.messages.length, 1);
  await client.close();
});

test('refused upgrade: the API answers anything but "ok" → 403 with its text, no DELETE', async () => {
  const a = await api();
  a.handler = (req) => (req.method === 'GET' ? { body: req.path.endsWith('/mallory') ? 'banned' : 'ok ' } : {});
  const { port } = await bridge(a.url);
  const refused = await connect(port, '/mallory');
  assert.deepEqual(refused, { ok: false, status: 403, body: 'banned' });
  // "exactly ok": a trailing space is not ok.
  const almost = await connect(port, '/eve');
  assert.equal(almost.ok, false);
  assert.equal(!almost.ok && almost.status, 403);
  const m = await metrics(port);
  assert.equal(m.get('polyproxy_wsbridge_connections_opened_total'), 0);
  assert.equal(m.get('polyproxy_wsbridge_upgrades_refused_total'), 2);
  assert.equal(m.get('polyproxy_wsbridge_requests_succeeded_total'), 2);
  assert.equal(a.requests.filter((r) => r.method === 'DELETE').length, 0);
});

test('bad upgrade targets are refused before the API is asked', async () => {
  const a = await api();
  const { port } = await bridge(a.url);
  for (const path of ['/', '/a/b', '/bad%zz', `/${'x'.repeat(300)}`]) {
    const r = await connect(port, path);
    assert.equal(r.ok, false, path);
    assert.equal(!r.ok && r.status, 400, path);
  }
  assert.equal(a.requests.length, 0);
});

test('push to a client that is not connected → 404', async () => {
  const a = await api();
  const { port } = await bridge(a.url);
  assert.deepEqual(await push(port, 'nobody', 'hi'), { status: 404, text: 'client not connected' });
  const client = await connectOk(port, '/somebody');
  await client.close(1000, 'gone');
  await a.waitFor(is('DELETE', 'somebody'));
  assert.equal((await push(port, 'somebody', 'hi')).status, 404);
  const m = await metrics(port);
  assert.equal(m.get('polyproxy_wsbridge_pushes_not_found_total'), 2);
});

test('binary messages: posted as application/octet-stream, binary answers and pushes come back binary', async () => {
  const a = await api();
  const { port } = await bridge(a.url);
  const client = await connectOk(port, '/bin');
  const bytes = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80]);
  client.ws.send(bytes);
  const post = await a.waitFor(is('POST', 'bin'));
  assert.equal(post.contentType, 'application/octet-stream');
  assert.deepEqual(post.body, bytes);
  const [echo] = await client.received(1);
  assert.equal(echo?.isBinary, true);
  assert.deepEqual(echo?.data, bytes);
  assert.equal((await push(port, 'bin', bytes, 'application/octet-stream')).status, 200);
  // Text that is not UTF-8 cannot be a text frame: it goes out binary too.
  assert.equal((await push(port, 'bin', Buffer.from([0xc3, 0x28]), 'text/plain')).status, 200);
  const [, pushed, invalid] = await client.received(3);
  assert.equal(pushed?.isBinary, true);
  assert.deepEqual(pushed?.data, bytes);
  assert.equal(invalid?.isBinary, true);
  await client.close();
});

test('ordered (default): one request at a time per client, in arrival order, even when later ones would be faster', async () => {
  const a = await api();
  let inFlight = 0;
  let maxInFlight = 0;
  a.handler = async (req) => {
    if (req.method !== 'POST') return { body: req.method === 'GET' ? 'ok' : '' };
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const n = Number(req.body.toString());
    await new Promise((r) => setTimeout(r, 20 - n)); // the first message is the slowest
    inFlight--;
    return { body: `re:${n}` };
  };
  const { port } = await bridge(a.url);
  const client = await connectOk(port, '/ordered');
  for (let i = 0; i < 20; i++) client.ws.send(String(i));
  client.ws.close(1000, 'done');
  const del = await a.waitFor(is('DELETE', 'ordered'));
  assert.equal(del.body.toString(), 'done');
  const posts = a.requests.filter((r) => r.method === 'POST').map((r) => Number(r.body.toString()));
  assert.deepEqual(posts, Array.from({ length: 20 }, (_, i) => i));
  assert.equal(maxInFlight, 1);
  // The DELETE comes after every message of the client.
  assert.equal(a.requests.at(-1)?.method, 'DELETE');
});

test('ordered: the replies come back in order', async () => {
  const a = await api();
  a.handler = async (req) => {
    if (req.method !== 'POST') return { body: req.method === 'GET' ? 'ok' : '' };
    const n = Number(req.body.toString());
    return { body: `re:${n}`, delayMs: 10 - n };
  };
  const { port } = await bridge(a.url);
  const client = await connectOk(port, '/replies');
  for (let i = 0; i < 10; i++) client.ws.send(String(i));
  const replies = await client.received(10);
  assert.deepEqual(
    replies.map((r) => r.data.toString()),
    Array.from({ length: 10 }, (_, i) => `re:${i}`),
  );
  await client.close();
});

test('parallel: a client\'s messages are in flight together', async () => {
  const a = await api();
  let inFlight = 0;
  let release: () => void = () => {};
  const allIn = new Promise<void>((resolve) => (release = resolve));
  a.handler = async (req) => {
    if (req.method !== 'POST') return { body: req.method === 'GET' ? 'ok' : '' };
    inFlight++;
    if (inFlight === 5) release();
    await allIn; // every POST waits until all five are in flight: only parallel dispatch gets here
    return { body: `re:${req.body.toString()}` };
  };
  const { port } = await bridge(a.url, { ordering: 'parallel' });
  const client = await connectOk(port, '/par');
  for (let i = 0; i < 5; i++) client.ws.send(String(i));
  const replies = await client.received(5);
  assert.deepEqual(replies.map((r) => r.data.toString()).sort(), ['re:0', 're:1', 're:2', 're:3', 're:4']);
  await client.close();
});

test('API down: upgrade 502, failed counters rise, the bridge stays up and recovers', async () => {
  const a = await api();
  // A port nothing listens on.
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const deadPort = (probe.address() as net.AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  const { port } = await bridge(`http://127.0.0.1:${deadPort}/api/`);
  for (let i = 0; i < 3; i++) {
    const r = await connect(port, `/c${i}`);
    assert.equal(!r.ok && r.status, 502);
  }
  const m = await metrics(port);
  assert.equal(m.get('polyproxy_wsbridge_requests_failed_total'), 3);
  assert.equal(m.get('polyproxy_wsbridge_requests_started_total'), 3);
  assert.equal(m.get('polyproxy_wsbridge_connections_open'), 0);
  // The same bridge still serves (its pushes and metrics answer); a bridge on a live API accepts.
  assert.equal((await push(port, 'c0', 'x')).status, 404);
  const live = await bridge(a.url);
  await (await connectOk(live.port, '/c0')).close();
});

test('API slow: upgrade 504 past pool.timeoutMs; a slow message answer fails without closing the client', async () => {
  const a = await api();
  a.handler = (req) => (req.path.endsWith('/slow') ? { body: 'ok', delayMs: 2000 } : req.method === 'POST' ? { body: 'late', delayMs: 2000 } : { body: 'ok' });
  const { port } = await bridge(a.url, { pool: { timeoutMs: 200 } });
  const r = await connect(port, '/slow');
  assert.equal(!r.ok && r.status, 504);
  const client = await connectOk(port, '/fast');
  client.ws.send('anyone?');
  await a.waitFor(is('POST', 'fast'));
  // The POST times out; the client stays connected and can still be pushed to.
  for (let i = 0; i < 100; i++) {
    if ((await metrics(port)).get('polyproxy_wsbridge_requests_failed_total') === 2) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal((await metrics(port)).get('polyproxy_wsbridge_requests_failed_total'), 2);
  assert.equal((await push(port, 'fast', 'still here')).status, 200);
  const [msg] = await client.received(1);
  assert.equal(msg?.data.toString(), 'still here');
  await client.close();
});

test('API 5xx on upgrade → 502', async () => {
  const a = await api();
  a.handler = () => ({ status: 503, body: 'ok' });
  const { port } = await bridge(a.url);
  const r = await connect(port, '/x');
  assert.equal(!r.ok && r.status, 502);
});

test('duplicate ClientId, replace (default): the new connection wins, the old one is closed 4409 without a DELETE', async () => {
  const a = await api();
  const { port } = await bridge(a.url);
  const first = await connectOk(port, '/dup');
  const second = await connectOk(port, '/dup');
  const closed = await first.closed;
  assert.equal(closed.code, 4409);
  assert.equal((await push(port, 'dup', 'to the new one')).status, 200);
  const [msg] = await second.received(1);
  assert.equal(msg?.data.toString(), 'to the new one');
  assert.equal(first.messages.length, 0);
  assert.equal(a.requests.filter((r) => r.method === 'DELETE').length, 0);
  await second.close(1000, 'last');
  const del = await a.waitFor(is('DELETE', 'dup'));
  assert.equal(del.body.toString(), 'last');
});

test('duplicate ClientId, refuse: the second upgrade gets 409, the first keeps working', async () => {
  const a = await api();
  const { port } = await bridge(a.url, { duplicateClientId: 'refuse' });
  const first = await connectOk(port, '/dup');
  const second = await connect(port, '/dup');
  assert.equal(!second.ok && second.status, 409);
  first.ws.send('still');
  const [msg] = await first.received(1);
  assert.equal(msg?.data.toString(), 're:still');
  assert.equal(a.requests.filter((r) => r.method === 'GET').length, 1);
  await first.close();
});

test('a client that stops answering pings is cut off and the API gets a DELETE', async () => {
  const a = await api();
  const { port } = await bridge(a.url, { pingIntervalMs: 50, deadPeerTimeoutMs: 200 });
  const alive = await connectOk(port, '/alive');
  const dead = await connectOk(port, '/dead', { autoPong: false });
  const del = await a.waitFor(is('DELETE', 'dead'));
  assert.match(del.body.toString(), /dead peer/);
  assert.equal((await dead.closed).code, 1006);
  // The one that answers pings stays.
  assert.equal(alive.ws.readyState, 1);
  assert.equal((await push(port, 'alive', 'ping-pong ok')).status, 200);
  await alive.received(1);
  await alive.close();
});

test('a message over maxMessageBytes closes the client with 1009; a larger push gets 413', async () => {
  const a = await api();
  const { port } = await bridge(a.url, { maxMessageBytes: 1024 });
  const client = await connectOk(port, '/big');
  assert.equal((await push(port, 'big', 'x'.repeat(2000))).status, 413);
  client.ws.send('x'.repeat(2000));
  assert.equal((await client.closed).code, 1009);
  assert.equal(a.requests.filter((r) => r.method === 'POST').length, 0);
});

test('metrics: the bridge\'s own path has its counters and gauges', async () => {
  const a = await api();
  let hold: () => void = () => {};
  const held = new Promise<void>((resolve) => (hold = resolve));
  a.handler = async (req) => {
    if (req.method === 'POST') await held;
    return { body: req.method === 'GET' ? 'ok' : '' };
  };
  const { port } = await bridge(a.url, { metricsPath: '/bridge-metrics' });
  const c1 = await connectOk(port, '/m1');
  const c2 = await connectOk(port, '/m2');
  c1.ws.send('wait');
  await a.waitFor(is('POST', 'm1'));
  let m = await metrics(port, '/bridge-metrics');
  assert.equal(m.get('polyproxy_wsbridge_connections_opened_total'), 2);
  assert.equal(m.get('polyproxy_wsbridge_connections_open'), 2);
  assert.equal(m.get('polyproxy_wsbridge_requests_in_flight'), 1);
  assert.equal(m.get('polyproxy_wsbridge_requests_started_total'), 3);
  hold();
  await c1.close();
  await c2.close();
  await a.waitFor((r) => r.method === 'DELETE' && r.path.endsWith('m2'));
  await a.waitFor((r) => r.method === 'DELETE' && r.path.endsWith('m1'));
  for (let i = 0; i < 50 && (m.get('polyproxy_wsbridge_requests_in_flight') !== 0 || m.get('polyproxy_wsbridge_connections_closed_total') !== 2); i++) m = await metrics(port, '/bridge-metrics');
  assert.equal(m.get('polyproxy_wsbridge_connections_closed_total'), 2);
  assert.equal(m.get('polyproxy_wsbridge_connections_open'), 0);
  assert.equal(m.get('polyproxy_wsbridge_requests_succeeded_total'), 5);
  assert.equal(m.get('polyproxy_wsbridge_requests_failed_total'), 0);
  // Only the bridge's metrics there.
  const text = await (await fetch(`http://127.0.0.1:${port}/bridge-metrics`)).text();
  assert.ok(text.split('\n').every((l) => l === '' || l.includes('polyproxy_wsbridge_')), text);
});

test('drain: at the deadline every client is closed with 1001 and the API hears about it', async () => {
  const a = await api();
  const config = parseConfig({ workers: 1, logLevel: 'silent', listeners: [{ name: 'ws', protocol: 'ws-bridge', host: '127.0.0.1', port: 0, api: a.url }] }, process.cwd());
  const proxy = await startProxy(config);
  const port = proxy.bound[0]?.port ?? 0;
  const client = await connectOk(port, '/drained');
  await proxy.drain(100);
  assert.equal((await client.closed).code, 1001);
  const del = await a.waitFor(is('DELETE', 'drained'));
  assert.match(del.body.toString(), /shutting down/);
  const after = await connect(port, '/late').catch((err: NodeJS.ErrnoException) => err.code);
  assert.equal(after, 'ECONNREFUSED');
});
