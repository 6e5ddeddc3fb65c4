/**
 * The fleet on a real Redis Cluster (`cluster.redis.cluster.nodes`): a
 * cluster of three masters of the test's own (test/helpers/redis-cluster.ts)
 * and three polyproxy processes. Keys and channels spread over the
 * masters, so this is what breaks when a feature assumes one server: a
 * script touching keys of two slots (CROSSSLOT), or the inbox request
 * trusting PUBLISH's receiver count, which in a cluster counts only the
 * receiving node's subscribers (the inbox is a sharded channel there).
 * Routes from Redis and purges, ws-bridge pushes and ClientId replacement
 * across instances, the cold-start lock, the shared connection counters
 * and PostgreSQL cancel all run against it.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createCluster } from 'redis';
import type { RedisClusterType } from 'redis';
import { request } from 'undici';
import { ROOT } from '../helpers/cli.ts';
import { freePort, metricValue, purge, startInstances, stopAll, waitUntil } from '../helpers/fleet.ts';
import type { Instance } from '../helpers/fleet.ts';
import { startRedisCluster } from '../helpers/redis-cluster.ts';
import type { OwnRedisCluster } from '../helpers/redis-cluster.ts';
import { redisServerMissing } from '../helpers/redis-server.ts';
import { PG_HOST, PG_PORT, PG_USER, ensureDatabases, pgDirect, postgresMissing } from '../helpers/services.ts';
import { startApi } from '../helpers/ws-api.ts';
import type { TestApi } from '../helpers/ws-api.ts';
import { connectOk, push } from '../helpers/ws-bridge.ts';

const CLUSTER_PREFIX = 'ppc:';
const ROUTE_PREFIX = 'ppc:route:';
const LIMITED_DB = 'pp_cluster_limited';
let skip: string | null = null;
let redisCluster: OwnRedisCluster;
let redis: RedisClusterType;
let instances: Instance[] = [];
let api: TestApi;
const backends: http.Server[] = [];
const backendAddress: string[] = [];
let wakeServer: http.Server;
let coldBackend: http.Server | null = null;
let wakes = 0;

before(async () => {
  skip = (await redisServerMissing()) ?? (await postgresMissing());
  if (skip !== null) return;
  await ensureDatabases([LIMITED_DB]);
  redisCluster = await startRedisCluster(3);
  redis = createCluster({ rootNodes: redisCluster.nodes.map((n) => ({ url: `redis://${n}` })) });
  await redis.connect();
  for (const name of ['one', 'two']) {
    const server = http.createServer((_req, res) => res.end(name));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    backends.push(server);
    backendAddress.push(`127.0.0.1:${(server.address() as AddressInfo).port}`);
  }
  const coldPort = await freePort();
  wakeServer = http.createServer((_req, res) => {
    wakes++;
    setTimeout(() => {
      if (coldBackend === null) {
        coldBackend = http.createServer((r, s) => s.end(`awake for ${r.headers.host}`));
        coldBackend.listen(coldPort, '127.0.0.1');
      }
    }, 500);
    res.end('waking');
  });
  await new Promise<void>((resolve) => wakeServer.listen(0, '127.0.0.1', resolve));
  process.env.PP_COLD_BACKEND = `127.0.0.1:${coldPort}`;
  process.env.PP_WAKE_URL = `http://127.0.0.1:${(wakeServer.address() as AddressInfo).port}/wake`;
  api = await startApi();
  const target = { cluster: { nodes: redisCluster.nodes } };
  instances = await startInstances(3, (_i, name) => ({
    workers: 1,
    logLevel: 'info',
    admin: { port: 0 },
    security: { allowBackends: ['127.0.0.0/8'] },
    cache: { ttlSeconds: 3600 },
    // commandTimeoutMs above the default: this shared machine stalls for longer than 500 ms at times.
    cluster: { redis: { ...target, prefix: CLUSTER_PREFIX }, instanceId: `cl-${name}`, heartbeatMs: 500, commandTimeoutMs: 3000 },
    resolver: { module: path.join(ROOT, 'test/fixtures/fleet-cold-resolver.ts'), redis: { ...target, prefix: ROUTE_PREFIX } },
    coldStart: { timeoutMs: 20000, pollIntervalMs: 50 },
    health: { intervalMs: 0 },
    routes: { postgres: `${PG_HOST}:${PG_PORT}`, [LIMITED_DB]: `${PG_HOST}:${PG_PORT}` },
    limits: { tenants: { [LIMITED_DB]: { maxConnections: 4 } } },
    listeners: [
      { name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 },
      { name: 'ws', protocol: 'ws-bridge', host: '127.0.0.1', port: 0, api: api.url, duplicateClientId: 'replace' },
      { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0 },
    ],
  }));
  for (const i of instances) await waitUntil(`${i.name} connected to the cluster`, async () => (await metricValue(i, 'polyproxy_redis_up{link="cluster"}')) === 1 && (await metricValue(i, 'polyproxy_redis_up{link="resolver"}')) === 1, 15000);
});

after(async () => {
  await stopAll(instances);
  await api?.close();
  for (const b of backends) b.close();
  wakeServer?.close();
  (coldBackend as http.Server | null)?.close();
  if (redis?.isOpen) await redis.close();
  await redisCluster?.stop();
});

const [A, B, C] = [0, 1, 2];
const at = (i: number): Instance => instances[i] as Instance;

async function get(instance: Instance, host: string): Promise<string> {
  const res = await request(`http://127.0.0.1:${instance.port('web')}/`, { headers: { host }, headersTimeout: 30000 });
  const body = await res.body.text();
  return res.statusCode === 200 ? body : `status ${res.statusCode}`;
}

test('the cluster spreads the fleet over its masters: inboxes and counters sit on different nodes', async (t) => {
  if (skip !== null) return t.skip(skip);
  const slotOwner = async (key: string): Promise<number> => {
    const slot = await redis.clusterKeySlot(key);
    const shard = (await redis.clusterSlots()).find((s) => slot >= s.from && slot <= s.to);
    return shard?.master.port ?? 0;
  };
  const owners = new Set(await Promise.all(['inbox:cl-A', 'inbox:cl-B', 'inbox:cl-C', `conn:${LIMITED_DB}`, 'conntenants:cl-A', 'wake:cold.test'].map((k) => slotOwner(CLUSTER_PREFIX + k))));
  assert.ok(owners.size >= 2, 'the keys this test uses live on more than one master');
});

test('a route written to the cluster routes everywhere; a purge through A and a control-plane PUBLISH reach every instance', async (t) => {
  if (skip !== null) return t.skip(skip);
  await redis.set(`${ROUTE_PREFIX}shop.test`, backendAddress[0] as string);
  for (const i of instances) assert.equal(await get(i, 'shop.test'), 'one', i.name);
  await redis.set(`${ROUTE_PREFIX}shop.test`, backendAddress[1] as string);
  for (const i of instances) assert.equal(await get(i, 'shop.test'), 'one', `${i.name} cached`);
  await purge(at(A), 'shop.test');
  for (const i of instances) await waitUntil(`${i.name} routes shop.test anew`, async () => (await get(i, 'shop.test')) === 'two', 3000);
  // The control plane publishes on any node: the cluster bus carries it to every instance's subscription.
  await redis.set(`${ROUTE_PREFIX}shop.test`, backendAddress[0] as string);
  await redis.publish(`${CLUSTER_PREFIX}purge`, 'shop.test');
  for (const i of instances) await waitUntil(`${i.name} sees the published purge`, async () => (await get(i, 'shop.test')) === 'one', 3000);
});

test('ws-bridge: a client on A gets a push sent to C; the same ClientId on B replaces it; an unknown one is 404', async (t) => {
  if (skip !== null) return t.skip(skip);
  const alice = await connectOk(at(A).port('ws'), '/alice');
  assert.deepEqual(await push(at(C).port('ws'), 'alice', 'via C'), { status: 200, text: 'ok' });
  assert.deepEqual(await push(at(B).port('ws'), 'alice', 'via B'), { status: 200, text: 'ok' });
  assert.deepEqual((await alice.received(2)).map((m) => m.data.toString()), ['via C', 'via B']);
  const newer = await connectOk(at(B).port('ws'), '/alice');
  assert.equal((await alice.closed).code, 4409);
  assert.equal((await push(at(C).port('ws'), 'alice', 'to the newer one')).status, 200);
  assert.equal((await newer.received(1))[0]?.data.toString(), 'to the newer one');
  assert.equal((await push(at(A).port('ws'), 'nobody', 'x')).status, 404);
  await newer.close();
});

test('cold start: 30 requests over three instances wake the backend once', async (t) => {
  if (skip !== null) return t.skip(skip);
  const results = await Promise.all(
    Array.from({ length: 30 }, async (_, i) => {
      const res = await request(`http://127.0.0.1:${at(i % 3).port('web')}/`, { headers: { host: 'cold.test' }, headersTimeout: 30000 });
      return { status: res.statusCode, body: await res.body.text() };
    }),
  );
  assert.deepEqual(
    results.map((r) => r.status),
    Array.from({ length: 30 }, () => 200),
  );
  assert.ok(results.every((r) => r.body === 'awake for cold.test'));
  assert.equal(wakes, 1, 'wake() was called once across the fleet');
});

function pgClient(instance: Instance, database: string): pg.Client {
  const client = new pg.Client({ host: '127.0.0.1', port: instance.port('pg'), user: PG_USER, database });
  client.on('error', () => {});
  return client;
}

test('shared counters: a tenant limited to 4 connections across instances gets the 5th refused on any of them', async (t) => {
  if (skip !== null) return t.skip(skip);
  const held: pg.Client[] = [];
  try {
    for (const i of [A, A, B, C]) {
      const c = pgClient(at(i), LIMITED_DB);
      await c.connect();
      held.push(c);
    }
    for (const i of [A, B, C]) {
      const c = pgClient(at(i), LIMITED_DB);
      await assert.rejects(c.connect(), (err: { code?: string }) => err.code === '53300', `${at(i).name} refuses the 5th`);
    }
    await held.shift()?.end();
    await waitUntil('the freed place is usable on C', async () => {
      const c = pgClient(at(C), LIMITED_DB);
      const ok = await c.connect().then(
        () => true,
        () => false,
      );
      if (ok) held.push(c);
      return ok;
    });
  } finally {
    await Promise.all(held.map((c) => c.end().catch(() => {})));
  }
});

test('PostgreSQL cancel: a CancelRequest landing on B cancels the query running through A', async (t) => {
  if (skip !== null) return t.skip(skip);
  const client = pgClient(at(A), 'postgres');
  await client.connect();
  try {
    const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
    const running = client.query('select pg_sleep(30)').then(
      () => null,
      (err: unknown) => err as { code?: string },
    );
    await waitUntil('the query runs', async () => (await pgDirect(`select 1 from pg_stat_activity where pid = ${Number(processID)} and state = 'active'`)).length === 1, 10000, 50);
    const packet = Buffer.alloc(16);
    packet.writeInt32BE(16, 0);
    packet.writeInt32BE(80877102, 4);
    packet.writeInt32BE(processID, 8);
    packet.writeInt32BE(secretKey, 12);
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: at(B).port('pg') }, () => socket.end(packet));
      socket.on('data', () => {});
      socket.once('close', () => resolve());
      socket.once('error', reject);
    });
    assert.equal((await running)?.code, '57014');
  } finally {
    await client.end();
  }
});
