/** The bridge's bounded API client against real node:http and node:https servers. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { after, test } from 'node:test';
import { ApiClient } from '../../../../src/protocols/ws-bridge/api-client.ts';
import { BridgeStats } from '../../../../src/protocols/ws-bridge/metrics.ts';
import { makeTestPki } from '../../../helpers/certs.ts';
import { startApi } from '../../../helpers/ws-api.ts';
import type { TestApi } from '../../../helpers/ws-api.ts';

const apis: TestApi[] = [];
after(async () => {
  for (const a of apis) await a.close();
});

const settings = { maxConnections: 2, maxIdle: 1, idleTimeoutMs: 10000, timeoutMs: 1000, connectTimeoutMs: 1000, tcpKeepAliveMs: 0, maxResponseBytes: 64 };

test('at most maxConnections at once, at most maxIdle kept after', async () => {
  const api = await startApi();
  apis.push(api);
  let inFlight = 0;
  let most = 0;
  api.handler = async (req) => {
    inFlight++;
    most = Math.max(most, inFlight);
    await new Promise((r) => setTimeout(r, 20));
    inFlight--;
    return { body: `re:${req.body.toString()}` };
  };
  const stats = new BridgeStats();
  const client = new ApiClient({ api: api.url, ...settings }, stats);
  const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => client.message('c', Buffer.from(String(i)), false)));
  assert.deepEqual(
    answers.map((a) => a.body.toString()),
    ['re:0', 're:1', 're:2', 're:3', 're:4', 're:5'],
  );
  assert.equal(most, 2);
  assert.equal(client.connections, 1);
  assert.equal(client.idleConnections, 1);
  assert.equal(stats.requestsStarted, 6);
  assert.equal(stats.requestsSucceeded, 6);
  assert.equal(stats.requestsInFlight, 0);
  await client.shutdown();
});

test('an upgrade GET waits for a connection ahead of queued messages', async () => {
  const api = await startApi();
  apis.push(api);
  const seen: string[] = [];
  api.handler = async (req) => {
    seen.push(`${req.method} ${req.path.slice(req.path.lastIndexOf('/') + 1)}`);
    await new Promise((r) => setTimeout(r, 10));
    return req.method === 'GET' ? { body: 'ok' } : { body: 're' };
  };
  const client = new ApiClient({ api: api.url, ...settings, maxConnections: 1 }, new BridgeStats());
  // One message on the only connection, four queued behind it, then a new client's upgrade.
  const messages = Array.from({ length: 5 }, (_, i) => client.message(`m${i}`, Buffer.from('x'), false));
  const upgrade = client.open('new', undefined);
  assert.equal((await upgrade).body.toString(), 'ok');
  await Promise.all(messages);
  assert.deepEqual(seen, ['POST m0', 'GET new', 'POST m1', 'POST m2', 'POST m3', 'POST m4']);
  await client.shutdown();
});

test('outcomes: 5xx and oversized bodies are unreachable, silence is a timeout, octet-stream and non-UTF-8 are binary', async () => {
  const api = await startApi();
  apis.push(api);
  api.handler = (req) => {
    const what = req.body.toString();
    if (what === '5xx') return { status: 500, body: 'boom' };
    if (what === 'big') return { body: 'x'.repeat(65) };
    if (what === 'slow') return { body: 'late', delayMs: 1500 };
    if (what === 'octets') return { body: 'abc', contentType: 'application/octet-stream' };
    if (what === 'latin1') return { body: Buffer.from([0xe9]) };
    return { status: 404, body: 'nope' };
  };
  const stats = new BridgeStats();
  const client = new ApiClient({ api: api.url, ...settings }, stats);
  const send = (s: string) => client.message('c', Buffer.from(s), false);
  assert.equal((await send('5xx')).outcome, 'unreachable');
  assert.equal((await send('big')).outcome, 'unreachable');
  assert.equal((await send('slow')).outcome, 'timeout');
  const octets = await send('octets');
  assert.equal(octets.outcome, 'ok');
  assert.equal(octets.binary, true);
  assert.equal((await send('latin1')).binary, true);
  const notFound = await send('other');
  assert.deepEqual([notFound.outcome, notFound.status, notFound.binary, notFound.body.toString()], ['ok', 404, false, 'nope']);
  assert.equal(stats.requestsFailed, 3);
  assert.equal(stats.requestsSucceeded, 3);
  await client.shutdown();
});

test('nothing listening: unreachable at once', async () => {
  const client = new ApiClient({ api: 'http://127.0.0.1:1/', ...settings }, new BridgeStats());
  const answer = await client.open('c', undefined);
  assert.equal(answer.outcome, 'unreachable');
  await client.shutdown();
});

test('an https API: the certificate is checked against the trusted CAs, then requests go over TLS', async () => {
  const pki = await makeTestPki({ serverNames: ['localhost'] });
  const server = https.createServer({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => res.end(`tls:${req.method} ${req.url} ${Buffer.concat(chunks).toString()}`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const defaults = tls.getCACertificates('default');
  try {
    const url = `https://localhost:${(server.address() as AddressInfo).port}/api/`;
    const untrusted = new ApiClient({ api: url, ...settings }, new BridgeStats());
    const refused = await untrusted.message('c1', Buffer.from('hi'), false);
    assert.equal(refused.outcome, 'unreachable');
    assert.match(refused.error, /certificate/i);
    await untrusted.shutdown();

    tls.setDefaultCACertificates([...defaults, readFileSync(pki.caCert, 'utf8')]);
    const client = new ApiClient({ api: url, ...settings }, new BridgeStats());
    const answer = await client.message('c1', Buffer.from('hi'), false);
    assert.deepEqual([answer.outcome, answer.status, answer.body.toString()], ['ok', 200, 'tls:POST /api/c1 hi']);
    // The connection is kept and reused.
    assert.equal((await client.message('c1', Buffer.from('again'), false)).body.toString(), 'tls:POST /api/c1 again');
    assert.equal(client.connections, 1);
    await client.shutdown();
  } finally {
    tls.setDefaultCACertificates(defaults);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await pki.cleanup();
  }
});

test('the deadline runs once the request is sent: a body that stops half-way is a timeout', async () => {
  const server = net.createServer((socket) => {
    socket.once('data', () => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const stats = new BridgeStats();
    const client = new ApiClient({ api: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, ...settings, timeoutMs: 300 }, stats);
    const started = performance.now();
    const answer = await client.message('c', Buffer.from('x'), false);
    const took = performance.now() - started;
    assert.equal(answer.outcome, 'timeout');
    assert.ok(took >= 300 && took < 1000, `timed out after ${took} ms`);
    assert.equal(client.connections, 0, 'the half-answered connection is closed');
    assert.deepEqual([stats.requestsFailed, stats.requestsInFlight], [1, 0]);
    await client.shutdown();
  } finally {
    server.close();
  }
});
