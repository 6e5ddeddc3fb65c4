/**
 * The http listener's per-backend connection limit through the real CLI:
 * with `pool.maxConnectionsPerBackend: 2`, 20 concurrent slow requests (the
 * backend answers only when the test releases each one) all succeed while
 * the backend never sees more than 2 connections at once; past a tiny
 * `queueTimeoutMs`, or with `maxQueue: 0`, a request that would wait gets
 * the 503 page naming the connection limit.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';

interface SlowBackend {
  server: http.Server;
  endpoint: string;
  open: number;
  maxOpen: number;
  connections: number;
  /** Requests the backend holds, each answered when the test calls it. */
  held: Array<() => void>;
  /** Resolves when a request arrives (the next one, when none is held yet). */
  nextRequest(): Promise<() => void>;
}

async function startSlowBackend(): Promise<SlowBackend> {
  const waiting: Array<(release: () => void) => void> = [];
  const backend: SlowBackend = {
    server: http.createServer(),
    endpoint: '',
    open: 0,
    maxOpen: 0,
    connections: 0,
    held: [],
    nextRequest() {
      const release = backend.held.shift();
      if (release !== undefined) return Promise.resolve(release);
      return new Promise((resolve) => waiting.push(resolve));
    },
  };
  backend.server.keepAliveTimeout = 60000;
  backend.server.on('connection', (socket) => {
    backend.connections++;
    backend.open++;
    backend.maxOpen = Math.max(backend.maxOpen, backend.open);
    socket.on('close', () => backend.open--);
  });
  backend.server.on('request', (req, res) => {
    req.resume();
    const release = (): void => {
      res.end(`ok ${req.url ?? ''}`);
    };
    const waiter = waiting.shift();
    if (waiter !== undefined) waiter(release);
    else backend.held.push(release);
  });
  await new Promise<void>((resolve) => backend.server.listen(0, '127.0.0.1', resolve));
  backend.endpoint = `127.0.0.1:${(backend.server.address() as AddressInfo).port}`;
  return backend;
}

/** One request on its own client connection (no client-side pooling). */
function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { host: 'app.test' }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('http listener: per-backend connection limit', () => {
  let backend: SlowBackend;
  let cli: RunningCli;

  before(async () => {
    backend = await startSlowBackend();
    const file = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: { 'app.test': backend.endpoint },
      listeners: [
        // maxHeadBytes bounds pipelined bytes too (2×): small, so a body taken for them would be refused at once.
        { name: 'queue', protocol: 'http', host: '127.0.0.1', port: 0, maxHeadBytes: 4096, pool: { maxConnectionsPerBackend: 2, queueTimeoutMs: 30000 } },
        { name: 'short', protocol: 'http', host: '127.0.0.1', port: 0, pool: { maxConnectionsPerBackend: 1, queueTimeoutMs: 50 } },
        { name: 'noqueue', protocol: 'http', host: '127.0.0.1', port: 0, pool: { maxConnectionsPerBackend: 1, maxQueue: 0 } },
      ],
    });
    cli = await startCli(['--config', file]);
  });

  after(async () => {
    await cli?.stop();
    backend?.server.closeAllConnections();
    await new Promise<void>((resolve) => backend?.server.close(() => resolve()));
  });

  it('20 concurrent slow requests through 2 backend connections all succeed', async () => {
    const port = cli.port('queue');
    const connectionsBefore = backend.connections;
    backend.maxOpen = backend.open;
    const responses = Promise.all(Array.from({ length: 20 }, (_, i) => get(port, `/r${i}`)));
    for (let i = 0; i < 20; i++) {
      const release = await backend.nextRequest();
      assert.ok(backend.open <= 2, `backend has ${backend.open} connections open`);
      release();
    }
    const results = await responses;
    assert.deepEqual(
      results.map((r) => r.status),
      Array.from({ length: 20 }, () => 200),
    );
    assert.deepEqual(results.map((r) => r.body).sort(), Array.from({ length: 20 }, (_, i) => `ok /r${i}`).sort());
    assert.ok(backend.maxOpen <= 2, `the backend saw ${backend.maxOpen} concurrent connections`);
    assert.ok(backend.connections - connectionsBefore <= 2, `the backend accepted ${backend.connections - connectionsBefore} connections (kept alive and handed on)`);
  });

  for (const name of ['short', 'noqueue']) {
    it(`${name}: a request that cannot get a connection slot gets 503`, async () => {
      const port = cli.port(name);
      const first = get(port, '/held');
      const release = await backend.nextRequest(); // the only slot is taken
      const refused = await get(port, '/refused');
      assert.equal(refused.status, 503);
      assert.match(refused.body, /connection limit/);
      release();
      assert.equal((await first).status, 200);
      // The slot came back: the next request goes through.
      const again = get(port, '/again');
      (await backend.nextRequest())();
      assert.equal((await again).status, 200);
    });
  }

  it('a request body that arrives while the request waits for a slot waits with it (not taken for pipelined bytes)', async () => {
    const port = cli.port('queue');
    const held = [get(port, '/h1'), get(port, '/h2')];
    const releases = [await backend.nextRequest(), await backend.nextRequest()]; // both slots taken
    const body = Buffer.alloc(400 * 1024, 0x61);
    const socket = net.connect({ host: '127.0.0.1', port });
    let answer = '';
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => (answer += text));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(`POST /post HTTP/1.1\r\nHost: app.test\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
    await new Promise((resolve) => setTimeout(resolve, 50)); // the head is in: waiting for a slot
    socket.write(body);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(answer, '', 'nothing answered while the request waits');
    for (const release of releases) release();
    (await backend.nextRequest())();
    await closed;
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.match(answer, /ok \/post$/);
    for (const r of await Promise.all(held)) assert.equal(r.status, 200);
  });
});
