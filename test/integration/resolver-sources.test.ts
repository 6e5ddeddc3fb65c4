/**
 * resolver.redis and resolver.http in the source chain (module → redis →
 * http → routes) with the real Redis and a real node:http control plane:
 * routes, 404 passing on, 5xx and timeouts answered as the protocol's
 * "unavailable" error; track() with the right counts at the interval and
 * stats() in /api/stats.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createClient } from 'redis';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.ts';
import { localAdminSource } from '../../src/supervisor/admin-source.ts';
import { startProxy } from '../../src/supervisor/proxy.ts';
import type { RunningProxy } from '../../src/supervisor/proxy.ts';
import type { Tracking } from '../fixtures/tracking-resolver.ts';
import { ROOT } from '../helpers/cli.ts';
import { REDIS_HOST, REDIS_PORT, redisMissing } from '../helpers/redis.ts';
import { PG_HOST, PG_PORT, PG_USER, postgresMissing } from '../helpers/services.ts';

const PREFIX = `pp-test-${process.pid}-${Date.now()}:route:`;
let skip: string | null = null;
let proxy: RunningProxy | undefined;
let webPort = 0;
let pgPort = 0;
let backend: http.Server;
let controlPlane: http.Server;
let backendAddress = '';
const lookups: string[] = [];
const tracked: Array<Record<string, unknown>> = [];
const redis = createClient({ url: `redis://${REDIS_HOST}:${REDIS_PORT}` });
const tracking = (): Tracking => (globalThis as { __polyproxyTracking?: Tracking }).__polyproxyTracking as Tracking;

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

before(async () => {
  skip = (await redisMissing()) ?? (await postgresMissing());
  if (skip !== null) return;
  await redis.connect();
  backend = http.createServer((req, res) => res.end(`backend saw ${req.headers.host}`));
  backendAddress = `127.0.0.1:${await listen(backend)}`;
  controlPlane = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'POST' && url.pathname === '/resolve/track') {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        tracked.push(JSON.parse(body) as Record<string, unknown>);
        res.end();
      });
      return;
    }
    const id = url.searchParams.get('id') ?? '';
    lookups.push(`${id}|${url.searchParams.get('protocol')}|${url.searchParams.get('listener')}`);
    if (id === 'http.test' || id === 'both.test') res.end(JSON.stringify({ endpoint: backendAddress, metadata: { from: 'http' } }));
    else if (id === 'postgres') res.end(JSON.stringify({ endpoint: `${PG_HOST}:${PG_PORT}` }));
    else if (id === 'broken.test') res.writeHead(502).end('bad gateway');
    else if (id === 'slow.test') setTimeout(() => res.end(JSON.stringify({ endpoint: backendAddress })), 3000).unref();
    else if (id === 'garbage.test') res.end('not json');
    else res.writeHead(404).end();
  });
  const cpPort = await listen(controlPlane);
  await redis.set(`${PREFIX}redis.test`, backendAddress);
  await redis.set(`${PREFIX}both.test`, JSON.stringify({ endpoint: backendAddress, ttlMs: 60000 }));
  const config = parseConfig(
    {
      workers: 1,
      logLevel: 'silent',
      security: { allowBackends: ['127.0.0.0/8'] },
      resolver: {
        module: 'test/fixtures/tracking-resolver.ts',
        redis: { url: `redis://${REDIS_HOST}:${REDIS_PORT}`, prefix: PREFIX },
        http: { url: `http://127.0.0.1:${cpPort}/resolve`, timeoutMs: 300, track: true },
        trackIntervalMs: 200,
      },
      routes: { 'static.test': backendAddress },
      listeners: [
        { name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 },
        { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0 },
      ],
    },
    ROOT,
  );
  proxy = await startProxy(config);
  webPort = proxy.bound.find((b) => b.name === 'web')?.port ?? 0;
  pgPort = proxy.bound.find((b) => b.name === 'pg')?.port ?? 0;
});

after(async () => {
  await proxy?.drain(1000);
  if (redis.isOpen) {
    for (const key of await redis.keys(`${PREFIX}*`)) await redis.del(key);
    await redis.close();
  }
  backend?.close();
  controlPlane?.closeAllConnections();
  controlPlane?.close();
});

async function get(host: string): Promise<{ status: number; body: string }> {
  const res = await request(`http://127.0.0.1:${webPort}/`, { headers: { host } });
  return { status: res.statusCode, body: await res.body.text() };
}

test('a route in Redis ("host:port" or JSON) is answered before the http source and the static routes', async (t) => {
  if (skip !== null) return t.skip(skip);
  assert.deepEqual(await get('redis.test'), { status: 200, body: 'backend saw redis.test' });
  assert.deepEqual(await get('both.test'), { status: 200, body: 'backend saw both.test' });
  assert.equal(lookups.filter((l) => l.startsWith('redis.test|') || l.startsWith('both.test|')).length, 0, 'the control plane was not asked for ids Redis knows');
});

test('the http control plane answers ids Redis does not know, with id, protocol and listener', async (t) => {
  if (skip !== null) return t.skip(skip);
  assert.deepEqual(await get('http.test'), { status: 200, body: 'backend saw http.test' });
  assert.ok(lookups.includes('http.test|http|web'), lookups.join(','));
});

test('a 404 from the control plane passes the id on to the static routes; unknown everywhere is 404', async (t) => {
  if (skip !== null) return t.skip(skip);
  assert.deepEqual(await get('static.test'), { status: 200, body: 'backend saw static.test' });
  assert.ok(lookups.some((l) => l.startsWith('static.test|')));
  assert.equal((await get('nowhere.test')).status, 404);
});

test('5xx, a body that is not JSON and a timeout from the control plane are 503 (UNAVAILABLE)', async (t) => {
  if (skip !== null) return t.skip(skip);
  assert.equal((await get('broken.test')).status, 503);
  assert.equal((await get('garbage.test')).status, 503);
  const started = Date.now();
  assert.equal((await get('slow.test')).status, 503);
  assert.ok(Date.now() - started < 2500, 'answered at the resolver timeout, not when the control plane answered');
});

test('postgres: a control-plane timeout is the protocol\'s own "unavailable" error (SQLSTATE 57P03)', async (t) => {
  if (skip !== null) return t.skip(skip);
  const client = new pg.Client({ host: '127.0.0.1', port: pgPort, user: PG_USER, database: 'slow.test' });
  client.on('error', () => {});
  const err = await client.connect().then(() => null, (e: unknown) => e as { code?: string });
  assert.equal(err?.code, '57P03');
});

test('track(): at most once per resource per interval, with the bytes and sessions since the last call; passed to the http source', async (t) => {
  if (skip !== null) return t.skip(skip);
  const before = tracking().track.length;
  const pgListener = (proxy as RunningProxy).listeners.find((l) => l.name === 'pg');
  const bytesBefore = { in: pgListener?.counters.bytesIn ?? 0, out: pgListener?.counters.bytesOut ?? 0 };
  const closedBytes = (): { bytesIn: number; bytesOut: number } => ({ bytesIn: (pgListener?.counters.bytesIn ?? 0) - bytesBefore.in, bytesOut: (pgListener?.counters.bytesOut ?? 0) - bytesBefore.out });
  for (let i = 0; i < 3; i++) {
    const client = new pg.Client({ host: '127.0.0.1', port: pgPort, user: PG_USER, database: 'postgres' });
    await client.connect();
    await client.query('select 1');
    await client.end();
  }
  // Wait until every session is accounted and a tick ran after that.
  const deadline = Date.now() + 5000;
  const sum = (): { bytesIn: number; bytesOut: number; connections: number } => {
    const calls = tracking().track.slice(before).filter((c) => c.id === 'postgres');
    return calls.reduce((a, c) => ({ bytesIn: a.bytesIn + c.activity.bytesIn, bytesOut: a.bytesOut + c.activity.bytesOut, connections: a.connections + c.activity.connections }), { bytesIn: 0, bytesOut: 0, connections: 0 });
  };
  while (Date.now() < deadline && (pgListener?.counters.open !== 0 || sum().connections < 3 || sum().bytesIn < closedBytes().bytesIn || sum().bytesOut < closedBytes().bytesOut)) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const expected = { ...closedBytes(), connections: 3 };
  assert.ok(expected.bytesIn > 0 && expected.bytesOut > 0);
  assert.deepEqual(sum(), expected);
  const calls = tracking().track.filter((c) => c.id === 'postgres');
  for (let i = 1; i < calls.length; i++) assert.ok((calls[i]?.at ?? 0) - (calls[i - 1]?.at ?? 0) >= 150, 'no two calls for one resource within the interval');
  // The http source POSTed the same activity to <url>/track.
  const postedIn = (): number => tracked.filter((b) => b.id === 'postgres').reduce((n, b) => n + Number(b.bytesIn), 0);
  const stored = async (): Promise<Record<string, string>> => redis.hGetAll(`${PREFIX}activity:postgres`);
  while (Date.now() < deadline && (postedIn() < expected.bytesIn || Number((await stored()).bytesIn ?? 0) < expected.bytesIn)) await new Promise((r) => setTimeout(r, 50));
  const posted = tracked.filter((b) => b.id === 'postgres');
  assert.equal(posted.reduce((n, b) => n + Number(b.bytesIn), 0), expected.bytesIn);
  assert.equal(posted.reduce((n, b) => n + Number(b.connections), 0), 3);
  // The redis source kept the activity in <prefix>activity:<id>.
  const activity = await stored();
  assert.equal(Number(activity.connections), 3);
  assert.equal(Number(activity.bytesIn), expected.bytesIn);
});

test('stats() of every source, and track settings, in /api/stats', async (t) => {
  if (skip !== null) return t.skip(skip);
  const running = proxy as RunningProxy;
  const stats = await localAdminSource(running, () => true).stats();
  const resolvers = stats.resolvers ?? {};
  assert.equal((resolvers.redis as { redisUp: boolean }).redisUp, true);
  assert.ok(Number((resolvers.redis as { found: number }).found) >= 2);
  assert.ok(Number((resolvers.http as { found: number }).found) >= 1);
  assert.ok(Number((resolvers.http as { failures: number }).failures) >= 3);
  assert.ok(Number((resolvers.module as { tracked: number }).tracked) >= 1);
  assert.equal((resolvers.track as { intervalMs: number }).intervalMs, 200);
});
