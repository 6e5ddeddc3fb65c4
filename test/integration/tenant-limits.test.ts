/**
 * Tenant limits (issue 21) with real clients: psql and pg past a tenant's
 * maxConnections (53300) while another tenant connects, fair share of a
 * full listener, a reload that changes a limit, curl past requestsPerSecond
 * (429 with Retry-After), and a tenant limited to 1 MB/s downloading 10 MB
 * through the http and tcp listeners while an unlimited tenant on the same
 * listener runs at full speed.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import tls from 'node:tls';
import { promisify } from 'node:util';
import pg from 'pg';
import { parseConfig } from '../../src/config/load.ts';
import { startProxy } from '../../src/supervisor/proxy.ts';
import type { RunningProxy } from '../../src/supervisor/proxy.ts';
import { makeTestPki } from '../helpers/certs.ts';
import { answer, fakeServer } from '../helpers/fastcgi-server.ts';
import { startApi } from '../helpers/ws-api.ts';
import { connect, connectOk } from '../helpers/ws-bridge.ts';
import { PG_HOST, PG_PORT, PG_USER, ensureDatabases, postgresMissing } from '../helpers/services.ts';

const execFileAsync = promisify(execFile);
const MB = 1024 * 1024;
const PG = `${PG_HOST}:${PG_PORT}`;

function pgConfig(limits: unknown, maxConnections = 0) {
  return parseConfig(
    {
      workers: 1,
      logLevel: 'silent',
      security: { allowPrivateBackends: true },
      routes: { pp_alpha: PG, pp_beta: PG },
      limits,
      listeners: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0, maxConnections }],
    },
    process.cwd(),
  );
}

async function connectAll(port: number, database: string, n: number): Promise<pg.Client[]> {
  const clients: pg.Client[] = [];
  for (let i = 0; i < n; i++) {
    const client = new pg.Client({ host: '127.0.0.1', port, user: PG_USER, database });
    await client.connect();
    clients.push(client);
  }
  return clients;
}

async function psql(port: number, database: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync('psql', [`host=127.0.0.1 port=${port} user=${PG_USER} dbname=${database} sslmode=disable`, '-Atc', 'select 1'], { env: { ...process.env, PGCONNECT_TIMEOUT: '5' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

function refusedWith(client: pg.Client): Promise<{ code?: string; message: string }> {
  client.on('error', () => {});
  return client.connect().then(
    () => assert.fail('connected past the limit'),
    (err: { code?: string; message: string }) => err,
  );
}

test('postgres: the 6th psql of a tenant limited to 5 gets 53300 while another tenant connects', async (t) => {
  const skip = await postgresMissing();
  if (skip !== null) return t.skip(skip);
  await ensureDatabases(['pp_alpha', 'pp_beta']);
  const proxy = await startProxy(pgConfig({ tenants: { pp_alpha: { maxConnections: 5 } } }));
  const port = proxy.bound[0]?.port ?? 0;
  const held = await connectAll(port, 'pp_alpha', 5);
  try {
    const sixth = await psql(port, 'pp_alpha');
    assert.equal(sixth.code, 2, sixth.stderr);
    assert.match(sixth.stderr, /too many connections for tenant "pp_alpha"/);
    const err = await refusedWith(new pg.Client({ host: '127.0.0.1', port, user: PG_USER, database: 'pp_alpha' }));
    assert.equal(err.code, '53300');
    const beta = await psql(port, 'pp_beta');
    assert.equal(beta.code, 0, beta.stderr);
    assert.equal(beta.stdout.trim(), '1');
    // The five held sessions still work; one ending frees a place.
    assert.equal((await (held[0] as pg.Client).query<{ n: number }>('select 1 as n')).rows[0]?.n, 1);
    await (held.shift() as pg.Client).end();
    await waitFor(async () => (await psql(port, 'pp_alpha')).code === 0);
    const stats = proxy.stats().resources.find((r) => r.resourceId === 'pp_alpha');
    assert.equal(stats?.limited, 2);
  } finally {
    await Promise.all(held.map((c) => c.end()));
    await proxy.drain(1000);
  }
});

test('postgres with auth + pool: a tenant limited to 2 gets 53300 on its 3rd client, the pool does not bypass the limits', async (t) => {
  const skip = await postgresMissing();
  if (skip !== null) return t.skip(skip);
  await ensureDatabases(['pp_pooled_limit', 'pp_pooled_other']);
  const password = 'limits-secret';
  const proxy = await startProxy(
    parseConfig(
      {
        workers: 1,
        logLevel: 'silent',
        security: { allowPrivateBackends: true },
        routes: { pp_pooled_limit: PG, pp_pooled_other: PG },
        limits: { tenants: { pp_pooled_limit: { maxConnections: 2 } } },
        listeners: [{ name: 'pgpool', protocol: 'postgres', host: '127.0.0.1', port: 0, auth: { users: { [PG_USER]: { password } } }, pool: { mode: 'transaction', size: 2 } }],
      },
      process.cwd(),
    ),
  );
  const port = proxy.bound[0]?.port ?? 0;
  const open = (database: string): pg.Client => new pg.Client({ host: '127.0.0.1', port, user: PG_USER, password, database });
  const held: pg.Client[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const c = open('pp_pooled_limit');
      await c.connect();
      held.push(c);
    }
    const err = await refusedWith(open('pp_pooled_limit'));
    assert.equal(err.code, '53300');
    assert.match(err.message, /too many connections for tenant "pp_pooled_limit"/);
    const other = open('pp_pooled_other');
    await other.connect();
    assert.equal((await other.query<{ n: number }>('select 1 as n')).rows[0]?.n, 1);
    await other.end();
    // A held client leaving frees its place (the lease ends with the pooled session).
    await (held.shift() as pg.Client).end();
    await waitFor(async () => {
      const c = open('pp_pooled_limit');
      c.on('error', () => {});
      try {
        await c.connect();
        held.push(c);
        return true;
      } catch {
        return false;
      }
    });
    assert.equal((await (held[1] as pg.Client).query<{ n: number }>('select 2 as n')).rows[0]?.n, 2);
  } finally {
    await Promise.all(held.map((c) => c.end()));
    await proxy.drain(1000);
  }
});

test('postgres: fair share — at the listener\'s maxConnections a tenant over its share is refused, one under it gets in', async (t) => {
  const skip = await postgresMissing();
  if (skip !== null) return t.skip(skip);
  await ensureDatabases(['pp_alpha', 'pp_beta']);
  const proxy = await startProxy(pgConfig({ fairShareReservePercent: 20 }, 10));
  const port = proxy.bound[0]?.port ?? 0;
  // Reserve: 2 of 10. Alpha alone fills 8, then is over its share (10 / 2).
  const held = await connectAll(port, 'pp_alpha', 8);
  try {
    const err = await refusedWith(new pg.Client({ host: '127.0.0.1', port, user: PG_USER, database: 'pp_alpha' }));
    assert.equal(err.code, '53300');
    assert.match(err.message, /fair share/);
    held.push(...(await connectAll(port, 'pp_beta', 2)));
  } finally {
    await Promise.all(held.map((c) => c.end()));
    await proxy.drain(1000);
  }
});

test('postgres: a reload changes a tenant\'s limit for new sessions', async (t) => {
  const skip = await postgresMissing();
  if (skip !== null) return t.skip(skip);
  await ensureDatabases(['pp_alpha']);
  const proxy = await startProxy(pgConfig({ tenants: { pp_alpha: { maxConnections: 1 } } }));
  const port = proxy.bound[0]?.port ?? 0;
  const held = await connectAll(port, 'pp_alpha', 1);
  try {
    assert.equal((await refusedWith(new pg.Client({ host: '127.0.0.1', port, user: PG_USER, database: 'pp_alpha' }))).code, '53300');
    await proxy.reload(pgConfig({ tenants: { pp_alpha: { maxConnections: 2 } } }));
    held.push(...(await connectAll(port, 'pp_alpha', 1)));
    assert.equal((await refusedWith(new pg.Client({ host: '127.0.0.1', port, user: PG_USER, database: 'pp_alpha' }))).code, '53300');
  } finally {
    await Promise.all(held.map((c) => c.end()));
    await proxy.drain(1000);
  }
});

/** An http backend that answers /big with 10 MB and anything else with "ok". */
async function bigBackend(): Promise<{ server: http.Server; port: number }> {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const server = http.createServer((req, res) => {
    if (req.url !== '/big') {
      res.end('ok');
      return;
    }
    res.writeHead(200, { 'content-length': String(10 * MB) });
    let left = 10 * MB;
    const pump = (): void => {
      while (left > 0) {
        left -= chunk.length;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

async function httpProxy(backendPort: number, limits: unknown): Promise<RunningProxy> {
  const backend = `127.0.0.1:${backendPort}`;
  return startProxy(
    parseConfig(
      { workers: 1, logLevel: 'silent', security: { allowPrivateBackends: true }, routes: { 'slow.test': backend, 'fast.test': backend, 'slow-h2.test': backend, 'fast-h2.test': backend }, limits, listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 }] },
      process.cwd(),
    ),
  );
}

test('http: curl past requestsPerSecond gets 429 with Retry-After; another tenant is served', async () => {
  const backend = await bigBackend();
  const proxy = await httpProxy(backend.port, { tenants: { 'slow.test': { requestsPerSecond: 0.5, requestsBurst: 2 } } });
  const url = `http://127.0.0.1:${proxy.bound[0]?.port}/`;
  const curl = async (host: string): Promise<string> => (await execFileAsync('curl', ['-s', '-i', '-H', `Host: ${host}`, url])).stdout;
  try {
    assert.match(await curl('slow.test'), /^HTTP\/1\.1 200/);
    assert.match(await curl('slow.test'), /^HTTP\/1\.1 200/);
    const third = await curl('slow.test');
    assert.match(third, /^HTTP\/1\.1 429 Too Many Requests/);
    assert.match(third, /\r\nretry-after: 2\r\n/i);
    assert.match(await curl('fast.test'), /^HTTP\/1\.1 200/);
  } finally {
    await proxy.drain(1000);
    backend.server.close();
  }
});

test("http/2: a stream past requestsPerSecond gets 429 with retry-after; another tenant's streams on the same connection are served", async () => {
  const backend = await bigBackend();
  // Its own tenant names: buckets live in the process's store, which the HTTP/1.1 test above already drew on.
  const proxy = await httpProxy(backend.port, { tenants: { 'slow-h2.test': { requestsPerSecond: 0.5, requestsBurst: 2 } } });
  const session = http2.connect(`http://127.0.0.1:${proxy.bound[0]?.port}`);
  const get = (authority: string): Promise<http2.IncomingHttpHeaders> =>
    new Promise((resolve, reject) => {
      const stream = session.request({ ':path': '/', ':authority': authority });
      stream.once('response', (headers) => {
        stream.resume();
        stream.once('close', () => resolve(headers));
      });
      stream.once('error', reject);
      stream.end();
    });
  try {
    assert.equal((await get('slow-h2.test'))[':status'], 200);
    assert.equal((await get('slow-h2.test'))[':status'], 200);
    const third = await get('slow-h2.test');
    assert.equal(third[':status'], 429);
    assert.equal(third['retry-after'], '2');
    assert.equal((await get('fast-h2.test'))[':status'], 200);
  } finally {
    session.close();
    await proxy.drain(1000);
    backend.server.close();
  }
});

function download(port: number, host: string): Promise<{ bytes: number; seconds: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/big', headers: { host }, agent: false }, (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => (bytes += c.length));
        res.on('end', () => resolve({ bytes, seconds: (performance.now() - started) / 1000 }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

test('http: a tenant limited to 1 MB/s downloads 10 MB in about 10 s while an unlimited one runs at full speed', async () => {
  const backend = await bigBackend();
  const proxy = await httpProxy(backend.port, { tenants: { 'slow.test': { bandwidth: { outBytesPerSecond: MB } } } });
  const port = proxy.bound[0]?.port ?? 0;
  try {
    const slow = download(port, 'slow.test');
    const fast = await download(port, 'fast.test');
    const limited = await slow;
    assert.equal(limited.bytes, 10 * MB);
    assert.equal(fast.bytes, 10 * MB);
    assert.ok(limited.seconds >= 7 && limited.seconds <= 14, `limited: ${limited.seconds} s`);
    assert.ok(fast.seconds < limited.seconds / 3, `unlimited: ${fast.seconds} s vs ${limited.seconds} s`);
  } finally {
    await proxy.drain(1000);
    backend.server.close();
  }
});

test('tcp: a tenant (SNI name) limited to 1 MB/s downloads 10 MB in about 10 s while an unlimited one runs at full speed', async () => {
  const pki = await makeTestPki();
  const chunk = Buffer.alloc(64 * 1024, 0x62);
  const backend = net.createServer((socket) => {
    let left = 10 * MB;
    const pump = (): void => {
      while (left > 0) {
        left -= chunk.length;
        if (!socket.write(chunk)) {
          socket.once('drain', pump);
          return;
        }
      }
      socket.end();
    };
    pump();
  });
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  const target = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
  const proxy = await startProxy(
    parseConfig(
      {
        workers: 1,
        logLevel: 'silent',
        security: { allowPrivateBackends: true },
        routes: { 'slow.test': target, 'fast.test': target },
        limits: { tenants: { 'slow.test': { bandwidth: { outBytesPerSecond: MB } } } },
        listeners: [{ name: 'tls', protocol: 'tcp', host: '127.0.0.1', port: 0, routeBy: 'sni', tls: { cert: pki.serverCert, key: pki.serverKey } }],
      },
      process.cwd(),
    ),
  );
  const port = proxy.bound[0]?.port ?? 0;
  const fetchAll = (servername: string): Promise<{ bytes: number; seconds: number }> =>
    new Promise((resolve, reject) => {
      const started = performance.now();
      const socket = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false });
      let bytes = 0;
      socket.on('data', (c: Buffer) => (bytes += c.length));
      socket.on('end', () => {
        socket.end();
        resolve({ bytes, seconds: (performance.now() - started) / 1000 });
      });
      socket.on('error', reject);
    });
  try {
    const slow = fetchAll('slow.test');
    const fast = await fetchAll('fast.test');
    const limited = await slow;
    assert.equal(limited.bytes, 10 * MB);
    assert.equal(fast.bytes, 10 * MB);
    assert.ok(limited.seconds >= 7 && limited.seconds <= 14, `limited: ${limited.seconds} s`);
    assert.ok(fast.seconds < limited.seconds / 3, `unlimited: ${fast.seconds} s vs ${limited.seconds} s`);
  } finally {
    await proxy.drain(1000);
    backend.close();
  }
});

test('fastcgi: curl past a Host\'s requestsPerSecond gets 429 with Retry-After; a reload lifts the limit', async () => {
  const responder = await fakeServer((req) => answer(req, 'Content-Type: text/plain\r\n\r\nok'));
  const limits = (rate: number) => ({ tenants: { 'php.test': { requestsPerSecond: rate, requestsBurst: 1 } } });
  const config = (rate: number) =>
    parseConfig({ workers: 1, logLevel: 'silent', limits: limits(rate), listeners: [{ name: 'php', protocol: 'fastcgi', host: '127.0.0.1', port: 0, documentRoot: '/srv', backends: [responder.address] }] }, process.cwd());
  const proxy = await startProxy(config(0.2));
  const url = `http://127.0.0.1:${proxy.bound[0]?.port}/index.php`;
  const curl = async (host: string): Promise<string> => (await execFileAsync('curl', ['-s', '-i', '-H', `Host: ${host}`, url])).stdout;
  try {
    assert.match(await curl('php.test'), /^HTTP\/1\.1 200/);
    const second = await curl('PHP.test:8080');
    assert.match(second, /^HTTP\/1\.1 429 Too Many Requests/);
    assert.match(second, /\r\nretry-after: 5\r\n/i);
    assert.match(await curl('other.test'), /^HTTP\/1\.1 200/);
    await proxy.reload(config(1000));
    assert.match(await curl('php.test'), /^HTTP\/1\.1 200/);
  } finally {
    await proxy.drain(1000);
    await responder.close();
  }
});

test('ws-bridge: an upgrade past the Host\'s requestsPerSecond gets 429; a message past it closes with 1008', async () => {
  const api = await startApi();
  const proxy = await startProxy(
    parseConfig(
      { workers: 1, logLevel: 'silent', limits: { tenants: { 'ws.test': { requestsPerSecond: 0.2, requestsBurst: 2 } } }, listeners: [{ name: 'ws', protocol: 'ws-bridge', host: '127.0.0.1', port: 0, api: api.url }] },
      process.cwd(),
    ),
  );
  const port = proxy.bound[0]?.port ?? 0;
  try {
    // Burst 2: the upgrade takes one, the first message the other, the second message is over.
    const client = await connectOk(port, '/alice', { headers: { host: 'ws.test' } });
    client.ws.send('one');
    client.ws.send('two');
    const closed = await client.closed;
    assert.equal(closed.code, 1008);
    const refused = await connect(port, '/bob', { headers: { host: 'ws.test' } });
    assert.equal(refused.ok, false);
    assert.equal(refused.ok === false && refused.status, 429);
    // Another tenant is not limited.
    const other = await connectOk(port, '/carol', { headers: { host: 'other.test' } });
    await other.close();
  } finally {
    await proxy.drain(1000);
    await api.close();
  }
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
