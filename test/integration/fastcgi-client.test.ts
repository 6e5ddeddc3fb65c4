/**
 * The FastCGI client library against real php-fpm: two pools started by the
 * test (alpha on 127.0.0.1:<free port>, beta on a unix socket), each naming
 * itself through $_SERVER['FPM_POOL']. Request helpers and bodies as PHP
 * sees them, keep-conn reuse, streamed stdin, round-robin and random
 * distribution by pool name, a cluster request reaching both, the status
 * page parsed, a fatal error's stderr, timeouts, and a stopped pool.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FastCgiClient } from '../../src/fastcgi/client.ts';
import { FastCgiClusterProxy } from '../../src/fastcgi/cluster-proxy.ts';
import { Cluster, Random, RoundRobin } from '../../src/fastcgi/collections.ts';
import { JsonData, MultipartFormData, StreamContent } from '../../src/fastcgi/content.ts';
import { FastCgiError } from '../../src/fastcgi/errors.ts';
import { FastCgiProxy } from '../../src/fastcgi/proxy.ts';
import { DeleteRequest, GetRequest, PatchRequest, PostRequest, PutRequest } from '../../src/fastcgi/request.ts';
import { phpFpmMissing, startPhpFpm, writeDocroot } from '../helpers/php-fpm.ts';
import type { PhpFpmPool } from '../helpers/php-fpm.ts';

let skip: string | null = null;
let docroot = '';
let alpha: PhpFpmPool;
let beta: PhpFpmPool;
const script = (name: string): string => path.join(docroot, name);

before(async () => {
  skip = await phpFpmMissing();
  if (skip !== null) return;
  docroot = await writeDocroot();
  [alpha, beta] = await Promise.all([startPhpFpm({ name: 'alpha', listen: 'tcp', docroot }), startPhpFpm({ name: 'beta', listen: 'unix', docroot })]);
});

after(async () => {
  await Promise.all([alpha?.stop(), beta?.stop()]);
});

interface ServerDump {
  server: Record<string, string>;
  get: Record<string, unknown>;
  post: Record<string, unknown>;
  files: Record<string, { name: string; size: number; type: string }>;
  input: string;
}

describe('FastCGI client against php-fpm', () => {
  it('GET with a query, over TCP and a unix socket', async (t) => {
    if (skip !== null) return t.skip(skip);
    const client = new FastCgiClient();
    for (const pool of [alpha, beta]) {
      const response = await client.sendRequest(pool.endpoint, new GetRequest(script('server.php'), { query: { a: '1', list: ['x', 'y'] } }));
      assert.equal(response.status, 200);
      assert.equal(response.header('Content-Type'), 'application/json');
      const dump = response.json<ServerDump>();
      assert.equal(dump.server.FPM_POOL, pool.name);
      assert.equal(dump.server.REQUEST_METHOD, 'GET');
      assert.deepEqual(dump.get, { a: '1', list: ['x', 'y'] });
    }
    client.close();
  });

  it('POST url-encoded and multipart, PUT JSON, PATCH and DELETE bodies reach PHP', async (t) => {
    if (skip !== null) return t.skip(skip);
    const client = new FastCgiClient();
    const form = (await client.sendRequest(alpha.endpoint, new PostRequest(script('server.php'), { name: 'Ada', tags: ['a', 'b'] }))).json<ServerDump>();
    assert.deepEqual(form.post, { name: 'Ada', tags: ['a', 'b'] });

    const multipart = new MultipartFormData({ title: 'doc' }, { upload: { filename: 'hello.txt', content: 'hello world', contentType: 'text/plain' } });
    const mp = (await client.sendRequest(alpha.endpoint, new PostRequest(script('server.php'), multipart))).json<ServerDump>();
    assert.deepEqual(mp.post, { title: 'doc' });
    assert.deepEqual(mp.files.upload, { name: 'hello.txt', size: 11, type: 'text/plain' });

    const put = (await client.sendRequest(beta.endpoint, new PutRequest(script('server.php'), new JsonData({ id: 7 })))).json<ServerDump>();
    assert.equal(put.server.REQUEST_METHOD, 'PUT');
    assert.equal(put.server.CONTENT_TYPE, 'application/json');
    assert.equal(put.input, '{"id":7}');

    const patch = (await client.sendRequest(beta.endpoint, new PatchRequest(script('server.php'), 'x=1'))).json<ServerDump>();
    assert.equal(patch.server.REQUEST_METHOD, 'PATCH');
    assert.equal(patch.input, 'x=1');
    const del = (await client.sendRequest(beta.endpoint, new DeleteRequest(script('server.php')))).json<ServerDump>();
    assert.equal(del.server.REQUEST_METHOD, 'DELETE');
    client.close();
  });

  it('keeps the connection (the same worker answers) with FCGI_KEEP_CONN, and not without', async (t) => {
    if (skip !== null) return t.skip(skip);
    const kept = new FastCgiClient();
    const pids = new Set<number>();
    for (let i = 0; i < 5; i++) pids.add((await kept.sendRequest(alpha.endpoint, new GetRequest(script('pool.php')))).json<{ pid: number }>().pid);
    assert.equal(pids.size, 1, 'one kept connection is served by one php-fpm worker');
    kept.close();
  });

  it('streams a large stdin body (32 MB) and gets its hash back', async (t) => {
    if (skip !== null) return t.skip(skip);
    const size = 32 * 1024 * 1024;
    const hash = createHash('sha256');
    async function* body(): AsyncGenerator<Uint8Array> {
      for (let sent = 0; sent < size; sent += 1024 * 1024) {
        const chunk = Buffer.alloc(1024 * 1024, sent / (1024 * 1024));
        hash.update(chunk);
        yield chunk;
      }
    }
    const client = new FastCgiClient();
    const response = await client.sendRequest(beta.endpoint, new PostRequest(script('hash.php'), new StreamContent(body(), size)));
    assert.deepEqual(response.json(), { pool: 'beta', bytes: size, sha256: hash.digest('hex') });
    client.close();
  });

  it('a PHP fatal error is a 500 with the message on stderr; a silent script times out', async (t) => {
    if (skip !== null) return t.skip(skip);
    const client = new FastCgiClient({ readWriteTimeoutMs: 300 });
    const fatal = await client.sendRequest(alpha.endpoint, new GetRequest(script('fatal.php')));
    assert.equal(fatal.status, 500);
    assert.match(fatal.stderr, /PHP Fatal error: .*undefined_function_for_test/);
    assert.match(fatal.stderr, /about to fail/);
    await assert.rejects(client.sendRequest(alpha.endpoint, new GetRequest(script('sleep.php'), { query: { ms: 2000 } })), (e: unknown) => e instanceof FastCgiError && e.code === 'FCGI_ERR_READ_TIMEOUT');
    client.close();
  });

  it('Proxy over RoundRobin alternates pools; over Random reaches both', async (t) => {
    if (skip !== null) return t.skip(skip);
    const rr = new FastCgiProxy(RoundRobin.of(alpha.endpoint, beta.endpoint));
    const pools: string[] = [];
    for (let i = 0; i < 6; i++) pools.push((await rr.sendRequest(new GetRequest(script('pool.php')))).json<{ pool: string }>().pool);
    assert.deepEqual(pools, ['alpha', 'beta', 'alpha', 'beta', 'alpha', 'beta']);
    rr.close();

    const random = new FastCgiProxy(Random.of(alpha.endpoint, beta.endpoint));
    const counts = new Map<string, number>();
    for (let i = 0; i < 40; i++) {
      const pool = (await random.sendRequest(new GetRequest(script('pool.php')))).json<{ pool: string }>().pool;
      counts.set(pool, (counts.get(pool) ?? 0) + 1);
    }
    // P(one pool never chosen in 40 fair draws) = 2 * 2^-40.
    assert.deepEqual([...counts.keys()].sort(), ['alpha', 'beta']);
    random.close();
  });

  it('Proxy async API: ids, the iterator of ready responses, and callbacks', async (t) => {
    if (skip !== null) return t.skip(skip);
    const proxy = new FastCgiProxy(RoundRobin.of(alpha.endpoint, beta.endpoint));
    const slow = proxy.sendAsyncRequest(new GetRequest(script('sleep.php'), { query: { ms: 300 } }));
    const fast = proxy.sendAsyncRequest(new GetRequest(script('pool.php')));
    const order: number[] = [];
    for await (const response of proxy.responses()) order.push(response.requestId);
    assert.deepEqual(order, [fast, slow]);
    const pools: string[] = [];
    for (let i = 0; i < 4; i++) proxy.sendAsyncRequest(new GetRequest(script('pool.php')).addResponseCallbacks((r) => pools.push(r.json<{ pool: string }>().pool)));
    await proxy.waitForResponses();
    assert.deepEqual(pools.sort(), ['alpha', 'alpha', 'beta', 'beta']);
    assert.equal(proxy.hasUnhandledResponses(), false);
    proxy.close();
  });

  it('ClusterProxy sends one request to every pool and reads both status pages', async (t) => {
    if (skip !== null) return t.skip(skip);
    const cluster = new FastCgiClusterProxy(Cluster.of(alpha.endpoint, beta.endpoint), { keepAlive: false });
    const reached: string[] = [];
    for await (const result of cluster.sendRequest(new GetRequest(script('pool.php')))) {
      assert.equal(result.error, undefined);
      reached.push(`${result.server}=${result.response?.json<{ pool: string }>().pool}`);
    }
    assert.deepEqual(reached.sort(), [`${alpha.endpoint}=alpha`, `${beta.endpoint}=beta`].sort());

    const statuses = await cluster.getStatus('/status');
    assert.deepEqual(
      statuses.map((s) => [s.server, s.status?.pool]),
      [
        [alpha.endpoint, 'alpha'],
        [beta.endpoint, 'beta'],
      ],
    );
    for (const s of statuses) {
      const status = s.status;
      assert.ok(status !== undefined, String(s.error));
      assert.equal(status.processManager, 'static');
      // php-fpm's pool counters drift upward after requests on FCGI_KEEP_CONN connections (earlier tests used
      // them), so only their consistency is checked; the per-process list is exact: pm.max_children = 4.
      assert.equal(status.idleProcesses + status.activeProcesses, status.totalProcesses, JSON.stringify(status.raw));
      assert.ok(status.acceptedConnections >= 2, `accepted ${status.acceptedConnections}`);
      assert.ok(status.startTime instanceof Date && Math.abs(status.startTime.getTime() - Date.now()) < 600_000);
      assert.equal(status.processes.length, 4);
      const serving = status.processes.find((p) => p.requestUri === '/status?full');
      assert.equal(serving?.state, 'Running', 'the process serving the status request shows it');
      assert.equal(serving?.requestMethod, 'GET');
      assert.ok(status.processes.every((p) => p.pid > 0 && p.requests >= 0));
    }
    cluster.close();
  });

  it('a stopped pool: the cluster reports its error and still returns the other', async (t) => {
    if (skip !== null) return t.skip(skip);
    const gamma = await startPhpFpm({ name: 'gamma', listen: 'unix', docroot });
    const cluster = new FastCgiClusterProxy(Cluster.of(alpha.endpoint, gamma.endpoint), { keepAlive: false });
    await gamma.stop();
    const statuses = await cluster.getStatus();
    assert.equal(statuses[0]?.status?.pool, 'alpha');
    assert.ok(statuses[1]?.error instanceof FastCgiError);
    assert.equal((statuses[1]?.error as FastCgiError).code, 'FCGI_ERR_CONNECT_FAILED');
    cluster.close();
  });
});
