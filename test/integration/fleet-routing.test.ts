/**
 * Three polyproxy instances (separate processes, the built CLI) sharing the
 * real Redis: a route written to Redis routes on all three; a purge through
 * one instance's admin API, and a control plane's `PUBLISH <prefix>purge`,
 * drop the id from every instance's cache within a second; every instance
 * heartbeats and sees the fleet in /api/stats, and one that stops is marked
 * stale.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { createClient } from 'redis';
import { request } from 'undici';
import { startInstances, stats, stopAll, purge, waitUntil } from '../helpers/fleet.ts';
import type { Instance } from '../helpers/fleet.ts';
import { REDIS_HOST, REDIS_PORT, redisMissing } from '../helpers/redis.ts';

const RUN = `pp-fleet-${process.pid}-${Date.now()}`;
const CLUSTER_PREFIX = `${RUN}:`;
const ROUTE_PREFIX = `${RUN}:route:`;
const REDIS_URL = `redis://${REDIS_HOST}:${REDIS_PORT}`;
let skip: string | null = null;
let instances: Instance[] = [];
const backends: http.Server[] = [];
const backendAddress: string[] = [];
const redis = createClient({ url: REDIS_URL });

before(async () => {
  skip = await redisMissing();
  if (skip !== null) return;
  await redis.connect();
  for (const name of ['one', 'two']) {
    const server = http.createServer((req, res) => res.end(name));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    backends.push(server);
    backendAddress.push(`127.0.0.1:${(server.address() as AddressInfo).port}`);
  }
  instances = await startInstances(3, (_i, name) => ({
    workers: 1,
    logLevel: 'info',
    admin: { port: 0 },
    security: { allowBackends: ['127.0.0.0/8'] },
    cache: { ttlSeconds: 3600 },
    cluster: { redis: { url: REDIS_URL, prefix: CLUSTER_PREFIX }, instanceId: `${RUN}-${name}`, heartbeatMs: 200 },
    resolver: { redis: { url: REDIS_URL, prefix: ROUTE_PREFIX } },
    listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 }],
  }));
});

after(async () => {
  await stopAll(instances);
  for (const b of backends) b.close();
  if (redis.isOpen) {
    for (const key of await redis.keys(`${RUN}*`)) await redis.del(key);
    await redis.close();
  }
});

async function get(instance: Instance, host: string): Promise<string> {
  const res = await request(`http://127.0.0.1:${instance.port('web')}/`, { headers: { host } });
  const body = await res.body.text();
  return res.statusCode === 200 ? body : `status ${res.statusCode}`;
}

test('a route written to Redis routes on all three instances', async (t) => {
  if (skip !== null) return t.skip(skip);
  await redis.set(`${ROUTE_PREFIX}shop.test`, backendAddress[0] as string);
  for (const instance of instances) assert.equal(await get(instance, 'shop.test'), 'one', instance.name);
});

test('a purge through instance A\'s admin API reaches B and C within a second', async (t) => {
  if (skip !== null) return t.skip(skip);
  await redis.set(`${ROUTE_PREFIX}shop.test`, backendAddress[1] as string);
  // Cached everywhere: the change is not seen yet.
  for (const instance of instances) assert.equal(await get(instance, 'shop.test'), 'one', instance.name);
  await purge(instances[0] as Instance, 'shop.test');
  for (const instance of instances) {
    const took = await waitUntil(`${instance.name} routes shop.test to the new backend`, async () => (await get(instance, 'shop.test')) === 'two', 1000);
    assert.ok(took <= 1000);
  }
});

test('a control plane\'s PUBLISH <prefix>purge <id> purges every instance', async (t) => {
  if (skip !== null) return t.skip(skip);
  await redis.set(`${ROUTE_PREFIX}blog.test`, backendAddress[0] as string);
  for (const instance of instances) assert.equal(await get(instance, 'blog.test'), 'one');
  await redis.set(`${ROUTE_PREFIX}blog.test`, JSON.stringify({ endpoint: backendAddress[1] }));
  const receivers = await redis.publish(`${CLUSTER_PREFIX}purge`, 'blog.test');
  assert.equal(receivers, 3, 'every instance subscribes to the purge channel');
  for (const instance of instances) await waitUntil(`${instance.name} sees the purge`, async () => (await get(instance, 'blog.test')) === 'two', 1000);
  // A route removed from Redis is gone after the next purge.
  await redis.del(`${ROUTE_PREFIX}blog.test`);
  await redis.publish(`${CLUSTER_PREFIX}purge`, 'blog.test');
  for (const instance of instances) await waitUntil(`${instance.name} forgets blog.test`, async () => (await get(instance, 'blog.test')) === 'status 404', 1000);
});

test('every instance heartbeats; /api/stats lists the fleet and marks a stopped instance stale', async (t) => {
  if (skip !== null) return t.skip(skip);
  type Fleet = { instanceId: string; redisUp: boolean; instances: Array<{ instanceId: string; stale: boolean; self: boolean; version: string; connections: number; address: string }> };
  const fleetOf = async (i: Instance): Promise<Fleet> => (await stats(i)).fleet as Fleet;
  await waitUntil('A sees three live instances', async () => (await fleetOf(instances[0] as Instance)).instances.filter((i) => !i.stale).length === 3);
  const view = await fleetOf(instances[0] as Instance);
  assert.equal(view.redisUp, true);
  assert.equal(view.instanceId, `${RUN}-A`);
  assert.deepEqual(view.instances.map((i) => i.instanceId), [`${RUN}-A`, `${RUN}-B`, `${RUN}-C`]);
  assert.deepEqual(view.instances.map((i) => i.self), [true, false, false]);
  assert.ok(view.instances.every((i) => i.version !== '' && typeof i.connections === 'number' && i.address !== ''));
  // C dies without leaving (SIGKILL): it stops heartbeating and is shown stale.
  (instances[2] as Instance).child.kill('SIGKILL');
  await waitUntil('A marks C stale', async () => (await fleetOf(instances[0] as Instance)).instances.find((i) => i.instanceId === `${RUN}-C`)?.stale === true, 5000);
  const dashboard = await (await fetch(`http://127.0.0.1:${(instances[0] as Instance).adminPort}/`)).text();
  assert.match(dashboard, /fleet/i);
});
