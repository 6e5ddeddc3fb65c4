/**
 * The admin server (issue #8) over a fake AdminSource: every route, status
 * codes and content types, 404/405, a throwing source (500, logged, server
 * still up), purge decoding and the cross-site purge refusal, readiness
 * flipping, HEAD, binding and closing with idle keep-alive connections.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createAdminServer } from '../../../src/admin/server.ts';
import type { AdminServer } from '../../../src/admin/server.ts';
import type { AdminSource, ProxyStats } from '../../../src/admin/source.ts';

const STATS: ProxyStats = {
  version: '0.1.0',
  startedAt: 1_700_000_000_000,
  uptimeSeconds: 42,
  workers: 2,
  ready: true,
  listeners: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 6432, open: 3, total: 10, refused: 1, failed: 2, bytesIn: 1234, bytesOut: 5678 }],
  routes: ['shop', '*.tenants'],
  cache: { entries: 5, hits: 30, misses: 10 },
  endpoints: [{ endpoint: '127.0.0.1:5432', state: 'closed', healthy: true, failures: 0, lastProbeAt: 1_700_000_001_000 }],
  resources: [{ resourceId: 'shop', open: 3, total: 10, bytesIn: 1234, bytesOut: 5678 }],
  coldStarts: { waiting: 0, wakes: 1, timeouts: 0 },
  pools: [],
};

const METRICS = '# HELP polyproxy_connections_open Open connections\n# TYPE polyproxy_connections_open gauge\npolyproxy_connections_open{listener="pg"} 3\n';

class FakeSource implements AdminSource {
  isReady = false;
  fail: Error | null = null;
  purged: string[] = [];
  purgeCount = 2;

  metrics(): Promise<string> {
    if (this.fail !== null) return Promise.reject(this.fail);
    return Promise.resolve(METRICS);
  }

  stats(): Promise<ProxyStats> {
    // Synchronous throw on purpose: the server must handle both kinds.
    if (this.fail !== null) throw this.fail;
    return Promise.resolve(STATS);
  }

  purge(resourceId: string): Promise<number> {
    if (this.fail !== null) return Promise.reject(this.fail);
    this.purged.push(resourceId);
    return Promise.resolve(this.purgeCount);
  }

  ready(): boolean {
    if (this.fail !== null) throw this.fail;
    return this.isReady;
  }
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string, agent?: http.Agent): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: agent ?? false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function parse(answer: Answer): unknown {
  assert.equal(answer.headers['content-type'], 'application/json; charset=utf-8');
  return JSON.parse(answer.body);
}

describe('admin server', () => {
  const source = new FakeSource();
  const logs: Array<{ level: number; msg: string; [key: string]: unknown }> = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  let server: AdminServer;
  let port: number;
  const purgeHeaders = (extra: Record<string, string> = {}): Record<string, string> => ({ 'content-type': 'application/json', ...extra });

  before(async () => {
    server = createAdminServer(source, { host: '127.0.0.1', port: 0, log: logger });
    port = (await server.listen()).port;
  });
  after(() => server.close());
  beforeEach(() => {
    source.isReady = false;
    source.fail = null;
    source.purged = [];
    logs.length = 0;
  });

  it('binds the configured host and reports the address', () => {
    assert.equal(server.address?.address, '127.0.0.1');
    assert.equal(server.address?.port, port);
    assert.notEqual(port, 0);
  });

  it('GET /healthz answers 200 ok, uncacheable', async () => {
    const res = await request(port, 'GET', '/healthz');
    assert.equal(res.status, 200);
    assert.equal(res.body, 'ok');
    assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(res.headers['cache-control'], 'no-store');
  });

  it('ignores the query string', async () => {
    const res = await request(port, 'GET', '/healthz?probe=1');
    assert.equal(res.status, 200);
    assert.equal(res.body, 'ok');
  });

  it('GET /readyz follows source.ready(): 503, then 200, then 503 again', async () => {
    let res = await request(port, 'GET', '/readyz');
    assert.equal(res.status, 503);
    assert.equal(res.body, 'not ready');
    source.isReady = true;
    res = await request(port, 'GET', '/readyz');
    assert.equal(res.status, 200);
    assert.equal(res.body, 'ready');
    assert.equal(res.headers['cache-control'], 'no-store');
    source.isReady = false; // draining
    res = await request(port, 'GET', '/readyz');
    assert.equal(res.status, 503);
  });

  it('GET /metrics serves the source text with the Prometheus content type', async () => {
    const res = await request(port, 'GET', '/metrics');
    assert.equal(res.status, 200);
    assert.equal(res.body, METRICS);
    assert.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    assert.equal(res.headers['content-type'], Registry.PROMETHEUS_CONTENT_TYPE);
    assert.equal(res.headers['cache-control'], 'no-store');
  });

  it('GET /api/stats serves the source stats as JSON', async () => {
    const res = await request(port, 'GET', '/api/stats');
    assert.equal(res.status, 200);
    assert.deepEqual(parse(res), STATS);
    assert.equal(res.headers['cache-control'], 'no-store');
  });

  it('GET / serves the dashboard with a CSP that allows exactly its inline script and style', async () => {
    const res = await request(port, 'GET', '/');
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.equal(res.headers['x-frame-options'], 'DENY');
    assert.match(res.body, /data-testid="listeners-body"/);
    assert.match(res.body, /data-testid="purge-form"/);
    assert.doesNotMatch(res.body, /(src|href)="https?:/, 'no external assets');
    const csp = String(res.headers['content-security-policy']);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.match(csp, /connect-src 'self'/);
    const scripts = [...res.body.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1] as string);
    const style = /<style>([\s\S]*)<\/style>/.exec(res.body)?.[1];
    assert.ok(scripts.length > 0 && style !== undefined);
    const hash = (text: string): string => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;
    assert.ok(csp.includes(`script-src ${scripts.map(hash).join(' ')};`), 'the script hashes in the CSP match the served scripts, and only they');
    assert.ok(csp.includes(`style-src ${hash(style)}`), 'the style hash in the CSP matches the served style');
  });

  it('HEAD works for every GET route: same status and headers, no body', async () => {
    source.isReady = true;
    for (const path of ['/', '/healthz', '/readyz', '/metrics', '/api/stats']) {
      const get = await request(port, 'GET', path);
      const head = await request(port, 'HEAD', path);
      assert.equal(head.status, 200, path);
      assert.equal(head.body, '', path);
      assert.equal(head.headers['content-type'], get.headers['content-type'], path);
      assert.equal(head.headers['content-length'], String(Buffer.byteLength(get.body)), path);
    }
  });

  it('answers 404 JSON for unknown paths', async () => {
    for (const path of ['/nope', '/api/stats/extra', '/healthz/', '/api', '/api/purge']) {
      const res = await request(port, 'GET', path);
      assert.equal(res.status, 404, path);
      assert.deepEqual(parse(res), { error: 'not found' });
    }
    const post = await request(port, 'POST', '/nope', purgeHeaders(), '{}');
    assert.equal(post.status, 404);
  });

  it('answers 405 with Allow for a known path and another method', async () => {
    for (const [method, path] of [['POST', '/healthz'], ['DELETE', '/api/stats'], ['PUT', '/'], ['OPTIONS', '/metrics']] as const) {
      const res = await request(port, method, path);
      assert.equal(res.status, 405, `${method} ${path}`);
      assert.equal(res.headers.allow, 'GET, HEAD');
      assert.deepEqual(parse(res), { error: 'method not allowed' });
    }
    for (const method of ['GET', 'HEAD', 'PUT', 'OPTIONS']) {
      const res = await request(port, method, '/api/purge/shop');
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.allow, 'POST');
    }
    assert.deepEqual(source.purged, []);
  });

  it('a CORS preflight gets no Access-Control-Allow-* headers', async () => {
    const res = await request(port, 'OPTIONS', '/api/purge/shop', {
      origin: 'http://evil.example',
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'content-type',
    });
    assert.equal(res.status, 405);
    assert.equal(Object.keys(res.headers).filter((h) => h.startsWith('access-control-')).length, 0);
  });

  it('POST /api/purge/<id> purges the URL-decoded id and answers { purged }', async () => {
    let res = await request(port, 'POST', '/api/purge/shop', purgeHeaders(), '{}');
    assert.equal(res.status, 200);
    assert.deepEqual(parse(res), { purged: 2 });
    assert.equal(res.headers['cache-control'], 'no-store');

    res = await request(port, 'POST', `/api/purge/${encodeURIComponent('a/b c.example.com')}`, purgeHeaders());
    assert.equal(res.status, 200);
    res = await request(port, 'POST', '/api/purge/%C3%A9t%C3%A9?ignored=1', purgeHeaders({ 'content-type': 'Application/JSON; charset=utf-8' }));
    assert.equal(res.status, 200);
    assert.deepEqual(source.purged, ['shop', 'a/b c.example.com', 'été']);
    assert.ok(logs.some((l) => l.msg === 'admin purge' && l.resourceId === 'shop' && l.purged === 2));
  });

  it('refuses a malformed or missing resource id with 400', async () => {
    let res = await request(port, 'POST', '/api/purge/%E0%A4%A', purgeHeaders());
    assert.equal(res.status, 400);
    assert.match((parse(res) as { error: string }).error, /percent-encoding/);
    res = await request(port, 'POST', '/api/purge/', purgeHeaders());
    assert.equal(res.status, 400);
    assert.deepEqual(source.purged, []);
  });

  it('refuses purges a web page could send cross-site', async (t) => {
    const host = `127.0.0.1:${port}`;
    const cases: Array<[string, Record<string, string>, number]> = [
      ['no content type (curl -X POST)', {}, 415],
      ['HTML form', { 'content-type': 'application/x-www-form-urlencoded' }, 415],
      ['multipart form', { 'content-type': 'multipart/form-data; boundary=x' }, 415],
      ['no-cors fetch', { 'content-type': 'text/plain;charset=UTF-8' }, 415],
      ['cross-site fetch', purgeHeaders({ 'sec-fetch-site': 'cross-site' }), 403],
      ['another port of 127.0.0.1', purgeHeaders({ 'sec-fetch-site': 'same-site' }), 403],
      ['foreign Origin', purgeHeaders({ origin: 'http://evil.example' }), 403],
      ['Origin on another port', purgeHeaders({ origin: 'http://127.0.0.1:1' }), 403],
      ['opaque Origin', purgeHeaders({ origin: 'null' }), 403],
      ['https Origin of the same host', purgeHeaders({ origin: `https://${host}` }), 403],
      ['form with a same-origin label', { 'content-type': 'text/plain', 'sec-fetch-site': 'same-origin', origin: `http://${host}` }, 415],
    ];
    for (const [name, headers, status] of cases) {
      await t.test(name, async () => {
        logs.length = 0;
        const res = await request(port, 'POST', '/api/purge/shop', headers, 'resourceId=shop');
        assert.equal(res.status, status);
        assert.equal(typeof (parse(res) as { error: unknown }).error, 'string');
        assert.ok(logs.some((l) => l.msg === 'admin purge refused'), 'the refusal is logged');
      });
    }
    assert.deepEqual(source.purged, []);
  });

  it('accepts a purge from its own page and from scripts', async () => {
    const host = `127.0.0.1:${port}`;
    const allowed = [
      purgeHeaders(),
      purgeHeaders({ 'sec-fetch-site': 'same-origin', origin: `http://${host}` }),
      purgeHeaders({ 'sec-fetch-site': 'none' }),
      purgeHeaders({ origin: `HTTP://${host.toUpperCase()}` }),
    ];
    for (const headers of allowed) {
      const res = await request(port, 'POST', '/api/purge/shop', headers);
      assert.equal(res.status, 200, JSON.stringify(headers));
    }
    assert.equal(source.purged.length, allowed.length);
  });

  it('answers 500 JSON when the source throws, logs it, and stays up', async () => {
    source.fail = new Error('worker 2 did not answer');
    source.isReady = true;
    for (const [method, path, headers] of [
      ['GET', '/api/stats', {}],
      ['GET', '/metrics', {}],
      ['GET', '/readyz', {}],
      ['HEAD', '/api/stats', {}],
      ['POST', '/api/purge/shop', purgeHeaders()],
    ] as const) {
      logs.length = 0;
      const res = await request(port, method, path, headers);
      assert.equal(res.status, 500, `${method} ${path}`);
      if (method !== 'HEAD') assert.deepEqual(parse(res), { error: 'internal error' });
      const line = logs.find((l) => l.msg === 'admin request failed');
      assert.ok(line !== undefined, `${method} ${path} is logged`);
      assert.equal(line.level, 50, 'at error level');
      assert.match(JSON.stringify(line.err), /worker 2 did not answer/);
    }
    const health = await request(port, 'GET', '/healthz');
    assert.equal(health.status, 200, 'liveness does not depend on the source');
    source.fail = null;
    const stats = await request(port, 'GET', '/api/stats');
    assert.equal(stats.status, 200);
  });

  it('keeps a keep-alive connection usable across requests with bodies', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await request(port, 'POST', '/healthz', {}, 'x'.repeat(100_000), agent);
      assert.equal(first.status, 405);
      const second = await request(port, 'GET', '/healthz', {}, undefined, agent);
      assert.equal(second.status, 200);
    } finally {
      agent.destroy();
    }
  });
});

describe('admin server lifecycle', () => {
  it('defaults to 127.0.0.1', async () => {
    const server = createAdminServer(new FakeSource(), { port: 0, log: pino({ level: 'silent' }) });
    const address = await server.listen();
    assert.equal(address.address, '127.0.0.1');
    await server.close();
    assert.equal(server.address, null);
  });

  it('rejects listen() when the port is taken', async () => {
    const first = createAdminServer(new FakeSource(), { host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }) });
    const { port } = await first.listen();
    const second = createAdminServer(new FakeSource(), { host: '127.0.0.1', port, log: pino({ level: 'silent' }) });
    await assert.rejects(second.listen(), { code: 'EADDRINUSE' });
    await first.close();
  });

  it('close() resolves with an idle keep-alive connection open, and the port stops answering', async () => {
    const server = createAdminServer(new FakeSource(), { host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }) });
    const { port } = await server.listen();
    const agent = new http.Agent({ keepAlive: true });
    const res = await request(port, 'GET', '/healthz', {}, undefined, agent);
    assert.equal(res.status, 200);
    assert.equal(Object.values(agent.freeSockets).flat().length, 1, 'the connection is idle in the agent');
    await server.close();
    agent.destroy();
    await assert.rejects(
      new Promise((resolve, reject) => {
        const socket = net.connect({ host: '127.0.0.1', port }, () => {
          socket.destroy();
          resolve(undefined);
        });
        socket.once('error', reject);
      }),
      { code: 'ECONNREFUSED' },
    );
    await server.close(); // idempotent
  });

  it('close() cuts a request the source never answers after the grace period', async () => {
    const source = new FakeSource();
    let called!: () => void;
    const inFlight = new Promise<void>((resolve) => (called = resolve));
    source.stats = () => {
      called();
      return new Promise<ProxyStats>(() => {});
    };
    const server = createAdminServer(source, { host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }) });
    const { port } = await server.listen();
    const hung = request(port, 'GET', '/api/stats');
    await inFlight;
    await server.close();
    await assert.rejects(hung, { code: 'ECONNRESET' });
  });
});

describe('admin server: Host check (DNS rebinding)', () => {
  it('bound to loopback: IP literals and localhost pass, other names get 421 unless allowed', async () => {
    const server = createAdminServer(new FakeSource(), { host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }), allowedHosts: ['admin.internal'] });
    const { port } = await server.listen();
    try {
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, 'admin.internal', `ADMIN.internal:${port}`]) {
        assert.equal((await request(port, 'GET', '/healthz', { host })).status, 200, host);
      }
      const refused = await request(port, 'POST', '/api/purge/shop', { host: `attacker.example:${port}`, 'content-type': 'application/json' }, '{}');
      assert.equal(refused.status, 421);
      assert.match(refused.body, /admin\.allowedHosts/);
      assert.equal((await request(port, 'GET', '/api/stats', { host: 'rebound.example' })).status, 421);
    } finally {
      await server.close();
    }
  });

  it('bound to loopback without a list: only IP literals and localhost', async () => {
    const server = createAdminServer(new FakeSource(), { host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }) });
    const { port } = await server.listen();
    try {
      assert.equal((await request(port, 'GET', '/healthz', { host: 'evil.example' })).status, 421);
      assert.equal((await request(port, 'GET', '/healthz', { host: `localhost:${port}` })).status, 200);
    } finally {
      await server.close();
    }
  });

  it('bound to every address without a list: any name (scrapers use service names)', async () => {
    const server = createAdminServer(new FakeSource(), { host: '0.0.0.0', port: 0, log: pino({ level: 'silent' }) });
    const { port } = await server.listen();
    try {
      assert.equal((await request(port, 'GET', '/healthz', { host: 'polyproxy.default.svc:9900' })).status, 200);
    } finally {
      await server.close();
    }
  });
});
