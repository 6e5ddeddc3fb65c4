/**
 * ws-bridge with `workers: 2` through the built CLI (`npm run build`
 * first): clients are spread over both worker processes by the kernel, and
 * so are the API's pushes; a push reaching the worker that does not hold
 * its client is delivered by the sibling (through the supervisor), and 404
 * means no worker holds it.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { startApi } from '../helpers/ws-api.ts';
import type { TestApi } from '../helpers/ws-api.ts';
import { connectOk, metrics } from '../helpers/ws-bridge.ts';
import type { Client } from '../helpers/ws-bridge.ts';

let api: TestApi;
let proxy: RunningCli;
let port: number;

before(async () => {
  api = await startApi();
  const file = await writeConfig({ workers: 2, logLevel: 'warn', shutdownTimeoutSeconds: 1, listeners: [{ name: 'ws', protocol: 'ws-bridge', host: '127.0.0.1', port: 0, api: api.url }] });
  proxy = await startCli(['--config', file]);
  port = proxy.port('ws');
});

after(async () => {
  await proxy.stop();
  await api.close();
});

/** One push on a fresh connection, so the kernel picks a worker for each. */
function pushFresh(id: string, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: `/${id}`, method: 'POST', agent: false, headers: { 'content-type': 'text/plain', connection: 'close' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('workers: 2 — every push reaches its client whichever worker took the push', async () => {
  assert.equal(proxy.ready.pids?.length, 2);
  const clients = new Map<string, Client>();
  for (let i = 0; i < 20; i++) clients.set(`w${i}`, await connectOk(port, `/w${i}`));
  // 20 clients and 20 pushes, each on its own connection: without forwarding between
  // workers, about half would get 404 (all landing on the holding worker: odds 2^-20).
  const results = await Promise.all([...clients.keys()].map((id) => pushFresh(id, `to ${id}`)));
  assert.deepEqual(
    results.map((r) => r.status),
    results.map(() => 200),
  );
  for (const [id, client] of clients) {
    const [msg] = await client.received(1);
    assert.equal(msg?.data.toString(), `to ${id}`);
  }
  // 404 only when no worker holds the client: every push of these lands somewhere, all answer 404.
  const missing = await Promise.all(Array.from({ length: 6 }, () => pushFresh('nobody', 'x')));
  assert.deepEqual(
    missing.map((r) => r.status),
    missing.map(() => 404),
  );
  // The bridge's metrics page sums both workers, whichever answers it.
  const m = await metrics(port);
  assert.equal(m.get('polyproxy_wsbridge_connections_open'), 20);
  assert.equal(m.get('polyproxy_wsbridge_pushes_delivered_total'), 20);
  assert.equal(m.get('polyproxy_wsbridge_pushes_not_found_total'), 6);
  for (const client of clients.values()) await client.close();
});

test('workers: 2 — a second connection with a ClientId replaces the first, on either worker', async () => {
  for (let round = 0; round < 6; round++) {
    const id = `dup${round}`;
    const first = await connectOk(port, `/${id}`);
    const second = await connectOk(port, `/${id}`);
    assert.equal((await first.closed).code, 4409, `round ${round}`);
    assert.equal((await pushFresh(id, 'new')).status, 200);
    assert.equal((await second.received(1))[0]?.data.toString(), 'new');
    await second.close();
  }
});

test('workers: 2 — SIGTERM drains: open clients are closed with 1001 at the deadline', async () => {
  const clients = await Promise.all(Array.from({ length: 6 }, (_, i) => connectOk(port, `/d${i}`)));
  await proxy.stop();
  for (const c of clients) assert.equal((await c.closed).code, 1001);
  assert.equal(api.requests.filter((r) => r.method === 'DELETE' && /\/d\d$/.test(r.path)).length, 6);
});
