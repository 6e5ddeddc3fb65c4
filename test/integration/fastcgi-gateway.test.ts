/**
 * The fastcgi listener (HTTP in, FastCGI out) through the real CLI, in
 * front of two real php-fpm pools the test starts (alpha on TCP, beta on a
 * unix socket): round-robin and random by pool name, the CGI params PHP
 * sees, Status and headers, a 64 MB POST checked by sha256, a chunked body,
 * a fatal error (500, stderr logged), 504 on a slow script, 502/503 with no
 * live backend, a stopped pool skipped and readmitted by the health probe,
 * and `polyproxy fastcgi status` on both pools.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { FastCgiClusterProxy } from '../../src/fastcgi/cluster-proxy.ts';
import { Cluster } from '../../src/fastcgi/collections.ts';
import { BIN, startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { phpFpmMissing, startPhpFpm, writeDocroot } from '../helpers/php-fpm.ts';
import type { PhpFpmPool } from '../helpers/php-fpm.ts';

const execFileAsync = promisify(execFile);
const MB = 1024 * 1024;

let skip: string | null = null;
let docroot = '';
let alpha: PhpFpmPool;
let beta: PhpFpmPool;
let gamma: PhpFpmPool;
let gammaPort = 0;
let cli: RunningCli;

before(async () => {
  skip = await phpFpmMissing();
  if (skip !== null) return;
  docroot = await writeDocroot();
  [alpha, beta, gamma] = await Promise.all([
    startPhpFpm({ name: 'alpha', listen: 'tcp', docroot, children: 8 }),
    startPhpFpm({ name: 'beta', listen: 'unix', docroot, children: 8 }),
    startPhpFpm({ name: 'gamma', listen: 'tcp', docroot, children: 8 }),
  ]);
  gammaPort = Number(gamma.endpoint.split(':')[1]);
  // A kept FastCGI connection pins a php-fpm worker, so the listeners sharing a pool
  // stay within its 8 children: 4 (rr) + 1 + 1 + 1 + 1.
  const common = { protocol: 'fastcgi', host: '127.0.0.1', port: 0, documentRoot: docroot, maxConnectionsPerBackend: 1 };
  const file = await writeConfig({
    workers: 1,
    listeners: [
      { ...common, name: 'rr', backends: [alpha.endpoint, beta.endpoint], params: { APP_ENV: 'test' }, maxConnectionsPerBackend: 4 },
      { ...common, name: 'random', backends: [alpha.endpoint, beta.endpoint], balance: 'random' },
      { ...common, name: 'slow', backends: [alpha.endpoint], backendTimeoutMs: 300 },
      { ...common, name: 'dead', backends: ['127.0.0.1:1'], healthCheckIntervalMs: 60000 },
      { ...common, name: 'failover', backends: [gamma.endpoint, alpha.endpoint], healthCheckIntervalMs: 100 },
      { ...common, name: 'tiny', backends: [alpha.endpoint], maxBufferedBodyBytes: 10 },
    ],
  });
  cli = await startCli(['--config', file]);
});

after(async () => {
  await cli?.stop();
  await Promise.all([alpha?.stop(), beta?.stop(), gamma?.stop()]);
});

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
after(() => agent.destroy());

function request(listener: string, path: string, options: { method?: string; headers?: Record<string, string>; body?: Buffer | Buffer[] } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: cli.port(listener), path, method: options.method ?? 'GET', headers: options.headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    const body = options.body;
    if (Array.isArray(body)) {
      for (const chunk of body) req.write(chunk);
      req.end();
    } else req.end(body);
  });
}

const poolOf = (reply: Reply): string => (JSON.parse(reply.body.toString()) as { pool: string }).pool;

describe('fastcgi gateway listener with php-fpm', () => {
  it('round-robin alternates the two pools (TCP and unix socket)', async (t) => {
    if (skip !== null) return t.skip(skip);
    const pools: string[] = [];
    for (let i = 0; i < 6; i++) pools.push(poolOf(await request('rr', '/pool.php')));
    assert.ok(['alpha,beta,alpha,beta,alpha,beta', 'beta,alpha,beta,alpha,beta,alpha'].includes(pools.join(',')), pools.join(','));
    const index = await request('rr', '/');
    assert.equal(index.status, 200);
    assert.match(index.body.toString(), /^pool=(alpha|beta)\n$/);
  });

  it('random balance reaches both pools', async (t) => {
    if (skip !== null) return t.skip(skip);
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) seen.add(poolOf(await request('random', '/pool.php')));
    assert.deepEqual([...seen].sort(), ['alpha', 'beta']);
  });

  it('PHP sees the CGI params, PATH_INFO, HTTP_* headers and the listener params', async (t) => {
    if (skip !== null) return t.skip(skip);
    const reply = await request('rr', '/server.php/extra/path?a=1&b=two', { headers: { 'X-Test': 'yes', Proxy: 'http://evil.example' } });
    assert.equal(reply.status, 200);
    const { server, get } = JSON.parse(reply.body.toString()) as { server: Record<string, string>; get: Record<string, string> };
    assert.deepEqual(get, { a: '1', b: 'two' });
    assert.equal(server.SCRIPT_FILENAME, `${docroot}/server.php`);
    assert.equal(server.SCRIPT_NAME, '/server.php');
    assert.equal(server.PATH_INFO, '/extra/path');
    assert.equal(server.REQUEST_URI, '/server.php/extra/path?a=1&b=two');
    assert.equal(server.QUERY_STRING, 'a=1&b=two');
    assert.equal(server.REQUEST_METHOD, 'GET');
    assert.equal(server.DOCUMENT_ROOT, docroot);
    assert.equal(server.HTTP_X_TEST, 'yes');
    assert.equal(server.HTTP_PROXY, undefined, 'httpoxy: the Proxy header never becomes HTTP_PROXY');
    assert.equal(server.REMOTE_ADDR, '127.0.0.1');
    assert.equal(server.SERVER_PORT, String(cli.port('rr')));
    assert.equal(server.SERVER_NAME, '127.0.0.1');
    assert.equal(server.APP_ENV, 'test');
    // A directory gets its index file; a path without ".php" goes to the root index (front controller).
    assert.equal((await request('rr', '/sub/')).body.toString(), 'sub index /sub/index.php -');
    assert.match((await request('rr', '/some/route')).body.toString(), /^pool=/);
    assert.equal((await request('rr', '/a/%2e%2e/server.php')).status, 400);
  });

  it('Status and headers from PHP become the HTTP response', async (t) => {
    if (skip !== null) return t.skip(skip);
    const reply = await request('rr', '/status.php');
    assert.equal(reply.status, 201);
    assert.equal(reply.headers['x-custom'], 'yes');
    assert.deepEqual(reply.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(reply.body.toString(), 'created');
    const big = await request('rr', `/big.php?bytes=${5 * MB}`);
    assert.equal(big.body.length, 5 * MB);
  });

  it('a 64 MB POST body is streamed to PHP intact; a chunked body is buffered with its CONTENT_LENGTH', async (t) => {
    if (skip !== null) return t.skip(skip);
    const chunks: Buffer[] = [];
    const hash = createHash('sha256');
    for (let i = 0; i < 64; i++) {
      const chunk = Buffer.alloc(MB, i);
      hash.update(chunk);
      chunks.push(chunk);
    }
    const reply = await request('rr', '/hash.php', { method: 'POST', headers: { 'content-length': String(64 * MB), 'content-type': 'application/octet-stream' }, body: chunks });
    assert.equal(reply.status, 200);
    const got = JSON.parse(reply.body.toString()) as { bytes: number; sha256: string };
    assert.deepEqual({ bytes: got.bytes, sha256: got.sha256 }, { bytes: 64 * MB, sha256: hash.digest('hex') });

    const chunked = await request('rr', '/server.php', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: [Buffer.from('x=1&'), Buffer.from('y=2')] });
    const dump = JSON.parse(chunked.body.toString()) as { server: Record<string, string>; post: Record<string, string> };
    assert.equal(dump.server.CONTENT_LENGTH, '7');
    assert.deepEqual(dump.post, { x: '1', y: '2' });
    const tooLarge = await request('tiny', '/server.php', { method: 'POST', body: [Buffer.alloc(8), Buffer.alloc(8)] });
    assert.equal(tooLarge.status, 413);
  });

  it('a PHP fatal error gives 500 and its stderr is logged', async (t) => {
    if (skip !== null) return t.skip(skip);
    const reply = await request('rr', '/fatal.php');
    assert.equal(reply.status, 500);
    const line = await cli.waitForLog((l) => l.msg === 'fastcgi stderr' && String(l.stderr).includes('undefined_function_for_test'));
    assert.equal(line.level, 'warn');
    assert.equal(line.uri, '/fatal.php');
    assert.match(String(line.stderr), /PHP Fatal error/);
    // The connection is still good for the next request.
    assert.equal((await request('rr', '/pool.php')).status, 200);
  });

  it('502 when PHP sends a header HTTP cannot carry; HEAD gets the head only', async (t) => {
    if (skip !== null) return t.skip(skip);
    const bad = await request('rr', '/badheader.php');
    assert.equal(bad.status, 502);
    assert.equal(bad.headers['x-polyproxy-error'], 'PP_ERR_BACKEND_UNREACHABLE');
    const head = await request('rr', '/index.php', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.equal((await request('rr', '/pool.php')).status, 200);
  });

  it('504 when the script outlives backendTimeoutMs', async (t) => {
    if (skip !== null) return t.skip(skip);
    const reply = await request('slow', '/sleep.php?ms=3000', { headers: { accept: 'application/json' } });
    assert.equal(reply.status, 504);
    assert.equal(reply.headers['x-polyproxy-error'], 'PP_ERR_TIMEOUT');
    assert.equal((JSON.parse(reply.body.toString()) as { error: { status: number } }).error.status, 504);
  });

  it('502 when the backend refuses, then 503 while every backend is down', async (t) => {
    if (skip !== null) return t.skip(skip);
    const first = await request('dead', '/');
    assert.equal(first.status, 502);
    assert.equal(first.headers['x-polyproxy-error'], 'PP_ERR_BACKEND_UNREACHABLE');
    const second = await request('dead', '/');
    assert.equal(second.status, 503);
    assert.equal(second.headers['x-polyproxy-error'], 'PP_ERR_UNAVAILABLE');
  });

  it('a stopped pool is skipped, and readmitted when it is back', async (t) => {
    if (skip !== null) return t.skip(skip);
    const before = new Set<string>();
    for (let i = 0; i < 4; i++) before.add(poolOf(await request('failover', '/pool.php')));
    assert.deepEqual([...before].sort(), ['alpha', 'gamma']);
    await gamma.stop();
    for (let i = 0; i < 8; i++) {
      const reply = await request('failover', '/pool.php');
      assert.equal(reply.status, 200, `request ${i} after the stop`);
      assert.equal(poolOf(reply), 'alpha');
    }
    await cli.waitForLog((l) => l.msg === 'endpoint down: circuit open' && l.endpoint === gamma.endpoint);
    gamma = await startPhpFpm({ name: 'gamma', listen: 'tcp', docroot, port: gammaPort, children: 8 });
    await cli.waitForLog((l) => l.msg === 'endpoint up: circuit closed' && l.endpoint === gamma.endpoint);
    const after = new Set<string>();
    for (let i = 0; i < 4; i++) after.add(poolOf(await request('failover', '/pool.php')));
    assert.deepEqual([...after].sort(), ['alpha', 'gamma']);
  });

  it('polyproxy fastcgi status prints both pools as JSON and as a table', async (t) => {
    if (skip !== null) return t.skip(skip);
    const json = await execFileAsync(process.execPath, [BIN, 'fastcgi', 'status', '--server', alpha.endpoint, '--server', beta.endpoint, '--json']);
    const parsed = JSON.parse(json.stdout) as Array<{ server: string; status: { pool: string; processes: unknown[]; acceptedConnections: number } }>;
    assert.deepEqual(
      parsed.map((p) => [p.server, p.status.pool, p.status.processes.length]),
      [
        [alpha.endpoint, 'alpha', 8],
        [beta.endpoint, 'beta', 8],
      ],
    );
    assert.ok(parsed.every((p) => p.status.acceptedConnections > 0));
    const table = await execFileAsync(process.execPath, [BIN, 'fastcgi', 'status', '--server', alpha.endpoint, '--server', beta.endpoint]);
    assert.match(table.stdout, new RegExp(`== ${alpha.endpoint}: pool alpha \\(static\\)`));
    assert.match(table.stdout, /accepted conn +listen queue/);
    assert.match(table.stdout, /\/status\?full/);
    await assert.rejects(execFileAsync(process.execPath, [BIN, 'fastcgi', 'status', '--server', alpha.endpoint, '--server', '127.0.0.1:1']), (err: { code: number; stdout: string }) => {
      assert.equal(err.code, 1);
      assert.match(err.stdout, /pool alpha/);
      assert.match(err.stdout, /127\.0\.0\.1:1: ERROR FCGI_ERR_CONNECT_FAILED/);
      return true;
    });
  });

  // Last: it stops the proxy.
  it('SIGTERM drains: a request in flight completes, then the process exits 0', async (t) => {
    if (skip !== null) return t.skip(skip);
    const inFlight = request('rr', '/sleep.php?ms=700');
    // Signal once a php-fpm worker is running the request (read from the pools' status pages).
    const cluster = new FastCgiClusterProxy(Cluster.of(alpha.endpoint, beta.endpoint), { keepAlive: false });
    for (;;) {
      const statuses = await cluster.getStatus();
      if (statuses.some((st) => st.status?.processes.some((p) => p.state === 'Running' && p.requestUri === '/sleep.php?ms=700'))) break;
    }
    cluster.close();
    cli.child.kill('SIGTERM');
    const reply = await inFlight;
    assert.equal(reply.status, 200);
    assert.equal(reply.body.toString(), 'slept');
    assert.equal(reply.headers.connection, 'close');
    assert.deepEqual(await cli.exited, { code: 0, signal: null });
  });
});

