/**
 * Issue 15 (defect 6): a client message whose `POST <api><ClientId>` fails
 * (API down, timeout, 5xx) is lost; `onApiFailure` says what the client
 * learns of it: nothing (`drop`, the default, ws2api's behaviour), a text
 * message with a small JSON error (`error-message`), or a close with 1011
 * (`close`). Every mode counts the lost message in the bridge's
 * messages_failed_total and in polyproxy_errors_total. Real `ws` clients
 * through the bridge to a real node:http API.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { startProxy } from '../../src/supervisor/proxy.ts';
import { errorCounts } from '../helpers/errors-total.ts';
import { connectOk, metrics } from '../helpers/ws-bridge.ts';
import { API_BASE, startApi } from '../helpers/ws-api.ts';
import type { ApiHandler, TestApi } from '../helpers/ws-api.ts';

const running: Array<{ stop(): Promise<void> }> = [];
after(async () => {
  for (const r of running.splice(0).reverse()) await r.stop();
});

async function bridge(name: string, api: string, extra: Record<string, unknown> = {}): Promise<number> {
  const config = parseConfig({ workers: 1, logLevel: 'silent', listeners: [{ name, protocol: 'ws-bridge', host: '127.0.0.1', port: 0, api, ...extra }] }, process.cwd());
  const proxy = await startProxy(config);
  running.push({ stop: () => proxy.drain(200) });
  return proxy.bound[0]?.port ?? 0;
}

async function api(handler: ApiHandler): Promise<TestApi> {
  const a = await startApi(handler);
  running.push({ stop: () => a.close() });
  return a;
}

/** GET ok; POST `boom` → 503, `slow` → late, anything else echoed; DELETE empty. */
const flaky: ApiHandler = (req) => {
  if (req.method === 'GET') return { body: 'ok' };
  if (req.method !== 'POST') return {};
  const text = req.body.toString();
  if (text === 'boom') return { status: 503, body: 'down for maintenance' };
  if (text === 'slow') return { body: 're:slow', delayMs: 1000 };
  return { body: `re:${text}` };
};

const UNAVAILABLE = { error: 'api_unavailable', status: 502 };
const TIMED_OUT = { error: 'api_timeout', status: 504 };

test('onApiFailure: drop (the default): the client hears nothing, stays connected; the lost message is counted', async () => {
  const a = await api(flaky);
  for (const [name, extra] of [
    ['wsf-drop', { onApiFailure: 'drop' }],
    ['wsf-default', {}],
  ] as const) {
    const port = await bridge(name, a.url, extra);
    const client = await connectOk(port, `/${name}`);
    client.ws.send('boom');
    client.ws.send('next');
    // Ordered: the failed POST finished before `next` was posted, so its reply is the first and only message.
    const [reply] = await client.received(1);
    assert.equal(reply?.data.toString(), 're:next', name);
    assert.equal(client.messages.length, 1, name);
    assert.equal(client.ws.readyState, 1, name);
    const m = await metrics(port);
    assert.equal(m.get('polyproxy_wsbridge_messages_failed_total'), 1, name);
    assert.equal(m.get('polyproxy_wsbridge_requests_failed_total'), 1, name);
    assert.deepEqual(await errorCounts(name), { BACKEND_UNREACHABLE: 1 }, name);
    await client.close();
  }
});

test('onApiFailure: error-message: a 5xx and a timeout each send the client a JSON text message; it stays connected', async () => {
  const a = await api(flaky);
  const port = await bridge('wsf-message', a.url, { onApiFailure: 'error-message', pool: { timeoutMs: 200 } });
  const client = await connectOk(port, '/erin');
  client.ws.send('boom');
  client.ws.send('slow');
  client.ws.send('fine');
  const [unavailable, timedOut, fine] = await client.received(3);
  assert.equal(unavailable?.isBinary, false);
  assert.deepEqual(JSON.parse(unavailable?.data.toString() ?? ''), UNAVAILABLE);
  assert.equal(timedOut?.isBinary, false);
  assert.deepEqual(JSON.parse(timedOut?.data.toString() ?? ''), TIMED_OUT);
  assert.equal(fine?.data.toString(), 're:fine');
  assert.equal(client.ws.readyState, 1);
  const m = await metrics(port);
  assert.equal(m.get('polyproxy_wsbridge_messages_failed_total'), 2);
  assert.deepEqual(await errorCounts('wsf-message'), { BACKEND_UNREACHABLE: 1, TIMEOUT: 1 });
  await client.close();
});

test('onApiFailure: error-message: the API goes down after the upgrade → api_unavailable', async () => {
  const a = await api(flaky);
  const port = await bridge('wsf-message-down', a.url, { onApiFailure: 'error-message' });
  const client = await connectOk(port, '/dave');
  await a.close();
  client.ws.send('anyone?');
  const [msg] = await client.received(1);
  assert.equal(msg?.data.toString(), JSON.stringify(UNAVAILABLE));
  assert.equal(client.ws.readyState, 1);
  assert.equal((await metrics(port)).get('polyproxy_wsbridge_messages_failed_total'), 1);
  assert.deepEqual(await errorCounts('wsf-message-down'), { BACKEND_UNREACHABLE: 1 });
  await client.close();
});

test('onApiFailure: close: a 5xx closes the client with 1011 "API unavailable"; the DELETE carries that reason', async () => {
  const a = await api(flaky);
  const port = await bridge('wsf-close', a.url, { onApiFailure: 'close' });
  const client = await connectOk(port, '/carl');
  client.ws.send('boom');
  assert.deepEqual(await client.closed, { code: 1011, reason: 'API unavailable' });
  assert.equal(client.messages.length, 0);
  const del = await a.waitFor((r) => r.method === 'DELETE' && r.path === `${API_BASE}carl`);
  assert.equal(del.body.toString(), 'API unavailable');
  const m = await metrics(port);
  assert.equal(m.get('polyproxy_wsbridge_messages_failed_total'), 1);
  assert.equal(m.get('polyproxy_wsbridge_connections_closed_total'), 1);
  assert.deepEqual(await errorCounts('wsf-close'), { BACKEND_UNREACHABLE: 1 });
});

test('onApiFailure: close: the API goes down after the upgrade → 1011', async () => {
  const a = await api(flaky);
  const port = await bridge('wsf-close-down', a.url, { onApiFailure: 'close' });
  const client = await connectOk(port, '/cora');
  await a.close();
  client.ws.send('anyone?');
  assert.deepEqual(await client.closed, { code: 1011, reason: 'API unavailable' });
  // The POST failed, then the DELETE too (the API is still down); only the POST was a message.
  let m = await metrics(port);
  for (let i = 0; i < 100 && m.get('polyproxy_wsbridge_requests_failed_total') !== 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    m = await metrics(port);
  }
  assert.equal(m.get('polyproxy_wsbridge_requests_failed_total'), 2);
  assert.equal(m.get('polyproxy_wsbridge_messages_failed_total'), 1);
  assert.deepEqual(await errorCounts('wsf-close-down'), { BACKEND_UNREACHABLE: 2 });
});
