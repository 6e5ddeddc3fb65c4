/**
 * FastCgiGateway's listener side, in-process with a backend that is down:
 * failures answered through core's error pages and counted in
 * polyproxy_errors_total by kind (and `failed` unless the client caused
 * them), maxConnections refused with a 503 page, a chunked body over its
 * limit refused 413, unparsable requests 400, and drain; failover from a
 * refused backend by core's connect loop.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { parseEndpoint } from '../../../../src/core/endpoint.ts';
import type { ConnectionPool } from '../../../../src/fastcgi/pool.ts';
import { FCGI_STDIN, FCGI_STDOUT, RecordParser, encodeEndRequest, encodeRecord } from '../../../../src/fastcgi/records.ts';
import { FastCgiGateway } from '../../../../src/protocols/fastcgi/gateway.ts';
import type { GatewaySettings } from '../../../../src/protocols/fastcgi/gateway.ts';
import { errorCounts } from '../../../helpers/errors-total.ts';

const silent = pino({ level: 'silent' });
const started: FastCgiGateway[] = [];
after(async () => {
  for (const gw of started) {
    await gw.stopAccepting();
    gw.destroyAll('test over');
  }
});

async function deadEndpoint(): Promise<string> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  return `127.0.0.1:${port}`;
}

async function gateway(name: string, overrides: Partial<GatewaySettings> = {}): Promise<{ gw: FastCgiGateway; port: number }> {
  const settings: GatewaySettings = {
    name,
    host: '127.0.0.1',
    port: 0,
    reusePort: false,
    backends: [parseEndpoint(await deadEndpoint())],
    balance: 'round-robin',
    documentRoot: '/var/www',
    index: 'index.php',
    params: {},
    connectTimeoutMs: 1000,
    backendTimeoutMs: 1000,
    keepAliveTimeoutMs: 5000,
    requestTimeoutMs: 5000,
    healthCheckIntervalMs: 60000,
    maxConnectionsPerBackend: 2,
    backendIdleTimeoutMs: 1000,
    maxBufferedBodyBytes: 10,
    maxConnections: 0,
    ...overrides,
  };
  const gw = new FastCgiGateway(settings, silent);
  started.push(gw);
  const address = await gw.listen();
  return { gw, port: address.port };
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(port: number, path: string, options: { method?: string; headers?: Record<string, string>; body?: string[] } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    for (const chunk of options.body ?? []) req.write(chunk);
    req.end();
  });
}

function raw(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    let got = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (got += d));
    socket.on('close', () => resolve(got));
    socket.on('error', reject);
  });
}

function hold(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
    socket.on('error', reject);
  });
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.ok(check());
}

describe('fastcgi gateway: failures and listener bookkeeping', () => {
  it('a backend that is down: 502, then 503 while its breaker is open; each counted by kind and as failed', async () => {
    const { gw, port } = await gateway('fcgi-down');
    const first = await request(port, '/index.php', { headers: { host: 'php.test' } });
    assert.equal(first.status, 502);
    assert.equal(first.headers['x-polyproxy-error'], 'PP_ERR_BACKEND_UNREACHABLE');
    assert.equal(first.headers.connection, 'close');
    assert.match(first.body, /<p>The backend for host &#34;php.test&#34; could not be reached or failed.<\/p>/);
    const second = await request(port, '/index.php', { headers: { host: 'php.test', accept: 'application/json' } });
    assert.equal(second.status, 503);
    assert.deepEqual(JSON.parse(second.body), { error: { status: 503, code: 'PP_ERR_UNAVAILABLE', message: 'Host "php.test" is unavailable.' } });
    assert.deepEqual(await errorCounts('fcgi-down'), { BACKEND_UNREACHABLE: 1, UNAVAILABLE: 1 });
    assert.equal(gw.counters.failed, 2);
    assert.equal(gw.counters.total, 2);
  });

  it('client faults: a bad path 400, a chunked body over maxBufferedBodyBytes 413; counted, not failed', async () => {
    const { gw, port } = await gateway('fcgi-client');
    const bad = await request(port, '/a/%2e%2e/x.php');
    assert.equal(bad.status, 400);
    assert.equal(bad.headers['x-polyproxy-error'], 'PP_ERR_PROTOCOL');
    const big = await request(port, '/upload.php', { method: 'POST', body: ['12345678', '12345678'] });
    assert.equal(big.status, 413);
    assert.equal(big.headers['x-polyproxy-error'], 'PP_ERR_PROTOCOL');
    assert.match(big.body, /<title>413 Content Too Large<\/title>[^]*limited to 10 bytes/);
    assert.deepEqual(await errorCounts('fcgi-client'), { PROTOCOL: 2 });
    assert.equal(gw.counters.failed, 0);
  });

  it('a request node:http cannot parse: 400 page, PROTOCOL counted', async () => {
    const { port } = await gateway('fcgi-garbage');
    assert.match(await raw(port, 'NOT HTTP AT ALL\r\n\r\n'), /^HTTP\/1\.1 400 Bad Request\r\ncontent-type: text\/html/);
    assert.deepEqual(await errorCounts('fcgi-garbage'), { PROTOCOL: 1 });
  });

  it('maxConnections: the connection past it gets the 503 page, counted as refused', async () => {
    const { gw, port } = await gateway('fcgi-max', { maxConnections: 1 });
    const first = await hold(port);
    await until(() => gw.sessions === 1);
    const refused = await request(port, '/index.php');
    assert.equal(refused.status, 503);
    assert.equal(refused.headers['x-polyproxy-error'], 'PP_ERR_TOO_MANY');
    assert.deepEqual({ open: gw.counters.open, total: gw.counters.total, refused: gw.counters.refused, failed: gw.counters.failed }, { open: 1, total: 2, refused: 1, failed: 0 });
    assert.deepEqual(await errorCounts('fcgi-max'), {});
    first.destroy();
  });

  it('drain: stops accepting, idle() waits for the open connection', async () => {
    const { gw, port } = await gateway('fcgi-drain');
    const client = await hold(port);
    await until(() => gw.sessions === 1);
    await gw.stopAccepting();
    assert.equal(gw.draining, true);
    await assert.rejects(hold(port), { code: 'ECONNREFUSED' });
    let idle = false;
    const waiting = gw.idle().then(() => (idle = true));
    for (let i = 0; i < 5; i++) await new Promise(setImmediate);
    assert.equal(idle, false);
    client.destroy();
    await waiting;
    assert.equal(gw.counters.open, 0);
  });
});

/** A FastCGI responder answering every request "ok" on kept connections; counts the connections it accepted. */
async function okResponder(): Promise<{ address: string; connections: () => number; close: () => void }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const parser = new RecordParser((type, _id, content) => {
      if (type === FCGI_STDIN && content.length === 0) {
        socket.write(Buffer.concat([encodeRecord(FCGI_STDOUT, 1, Buffer.from('Content-Type: text/plain\r\n\r\nok')), encodeRecord(FCGI_STDOUT, 1), encodeEndRequest(1, 0)]));
      }
    });
    socket.on('data', (chunk: Buffer) => parser.push(chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => connections,
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

describe('fastcgi gateway: failover', () => {
  it('a refused first candidate: core\'s connect loop lands on the next, the breaker hears the refusal, the slot follows the connection', async () => {
    const live = await okResponder();
    after(live.close);
    const dead = parseEndpoint(await deadEndpoint());
    const { gw, port } = await gateway('failover', { backends: [dead, parseEndpoint(live.address)] });
    const first = await request(port, '/index.php');
    assert.equal(first.status, 200);
    assert.equal(first.body, 'ok');
    assert.equal(gw.health.state(dead.label), 'open');
    const [deadPool, livePool] = gw.pools as [ConnectionPool, ConnectionPool];
    assert.equal(deadPool.activeCount + deadPool.idleCount, 0, 'no slot left on the refused backend');
    await until(() => livePool.idleCount === 1);
    // The refused backend is skipped now; the kept connection serves the next request.
    const second = await request(port, '/index.php');
    assert.equal(second.status, 200);
    assert.equal(live.connections(), 1);
    assert.equal(deadPool.activeCount + deadPool.idleCount, 0);
  });
});
