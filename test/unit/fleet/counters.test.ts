/**
 * The shared counters (the tenant-limits API) on the real Redis: two
 * fleet members count one tenant's connections together, `max` holds
 * across them, releases and a dead member's counts come off, the token
 * bucket is shared; without Redis every call answers from local state.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createClient } from 'redis';
import { pino } from 'pino';
import { FleetCounters, reapNode } from '../../../src/fleet/counters.ts';
import { Fleet } from '../../../src/fleet/fleet.ts';
import { freePort, waitUntil } from '../../helpers/fleet.ts';
import { REDIS_HOST, REDIS_PORT, redisMissing } from '../../helpers/redis.ts';

const PREFIX = `pp-counters-${process.pid}-${Date.now()}:`;
const URL = `redis://${REDIS_HOST}:${REDIS_PORT}`;
const silent = pino({ level: 'silent' });
let skip: string | null = null;
const fleets: Fleet[] = [];

function member(node: string, url = URL): Fleet {
  const fleet = new Fleet({ url, prefix: PREFIX, nodeId: node, instanceId: node, heartbeatMs: 60000, commandTimeoutMs: 500, connectTimeoutMs: url === URL ? 5000 : 300, version: 'test', address: 'test', log: silent });
  fleets.push(fleet);
  return fleet;
}

before(async () => {
  skip = await redisMissing();
});

after(async () => {
  await Promise.all(fleets.map((f) => f.stop()));
  if (skip !== null) return;
  const redis = createClient({ url: URL });
  await redis.connect();
  for (const key of await redis.keys(`${PREFIX}*`)) await redis.del(key);
  await redis.close();
});

test('acquire counts a tenant across members and refuses at max; release frees a slot', async (t) => {
  if (skip !== null) return t.skip(skip);
  const a = member('a');
  const b = member('b');
  await waitUntil('both members connected', () => a.up && b.up);
  const ca = new FleetCounters(a);
  const cb = new FleetCounters(b);
  assert.deepEqual(await ca.acquire('shop', 3), { allowed: true, count: 1, shared: true });
  assert.deepEqual(await cb.acquire('shop', 3), { allowed: true, count: 2, shared: true });
  assert.deepEqual(await cb.acquire('shop', 3), { allowed: true, count: 3, shared: true });
  assert.deepEqual(await ca.acquire('shop', 3), { allowed: false, count: 3, shared: true });
  assert.equal(ca.local('shop'), 1);
  assert.equal(cb.local('shop'), 2);
  await cb.release('shop');
  assert.equal((await ca.acquire('shop', 3)).allowed, true);
  // No limit (0): always counted.
  assert.equal((await ca.acquire('blog', 0)).count, 1);
});

test('a dead member\'s connections come off (reapNode); sync writes the true local counts back', async (t) => {
  if (skip !== null) return t.skip(skip);
  const c = member('c');
  const d = member('d');
  await waitUntil('both members connected', () => c.up && d.up);
  const cc = new FleetCounters(c);
  const cd = new FleetCounters(d);
  for (let i = 0; i < 4; i++) await cd.acquire('wiki', 5);
  assert.equal((await cc.acquire('wiki', 5)).count, 5);
  await reapNode(c, 'd');
  assert.equal((await cc.acquire('wiki', 5)).count, 2);
  // A count that drifted (a release lost while Redis was away) is repaired by sync.
  const redis = createClient({ url: URL });
  await redis.connect();
  await redis.hSet(`${PREFIX}conn:wiki`, 'c', '40');
  await cc.sync();
  assert.equal(await redis.hGet(`${PREFIX}conn:wiki`, 'c'), '2');
  await redis.close();
});

test('take: one token bucket shared by members', async (t) => {
  if (skip !== null) return t.skip(skip);
  const e = member('e');
  const f = member('f');
  await waitUntil('both members connected', () => e.up && f.up);
  const ce = new FleetCounters(e);
  const cf = new FleetCounters(f);
  // 0.001 tokens/s: no refill during the test.
  const taken = [await ce.take('shop:rps', 0.001, 3), await cf.take('shop:rps', 0.001, 3), await ce.take('shop:rps', 0.001, 3), await cf.take('shop:rps', 0.001, 3)];
  assert.deepEqual(taken, [true, true, true, false]);
  assert.equal(await ce.take('shop:big', 0.001, 5, 6), false);
  assert.equal(await ce.take('shop:big', 0.001, 5, 5), true);
});

test('Redis unreachable: local counts and buckets answer (shared: false)', async () => {
  const g = member('g', `redis://127.0.0.1:${await freePort()}`);
  await g.link.ready();
  const cg = new FleetCounters(g);
  assert.deepEqual(await cg.acquire('shop', 2), { allowed: true, count: 1, shared: false });
  assert.deepEqual(await cg.acquire('shop', 2), { allowed: true, count: 2, shared: false });
  assert.deepEqual(await cg.acquire('shop', 2), { allowed: false, count: 2, shared: false });
  await cg.release('shop');
  assert.equal(cg.local('shop'), 1);
  assert.equal(await cg.take('k', 0.001, 1), true);
  assert.equal(await cg.take('k', 0.001, 1), false);
  // Without a fleet at all: the same local answers.
  const none = new FleetCounters(null);
  assert.deepEqual(await none.acquire('shop', 1), { allowed: true, count: 1, shared: false });
  assert.equal((await none.acquire('shop', 1)).allowed, false);
});
