/**
 * Redis is not a single point of failure. Three instances share a private
 * redis-server (never the machine's shared one), which the test stops
 * mid-test and starts again: cached tenants and static routes keep
 * working, pushes fall back to local delivery, nothing crashes, each
 * instance logs one warning per link (not one per request), and
 * `polyproxy_redis_up` flips to 0 and back to 1; once Redis is back,
 * purges cross instances again.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { createClient } from 'redis';
import { request } from 'undici';
import { OwnRedis, metricValue, purge, redisServerMissing, startInstances, stopAll, waitUntil } from '../helpers/fleet.ts';
import type { Instance } from '../helpers/fleet.ts';
import { serviceMissing } from '../helpers/services.ts';
import { startApi } from '../helpers/ws-api.ts';
import type { TestApi } from '../helpers/ws-api.ts';
import { connectOk, push } from '../helpers/ws-bridge.ts';

let skip: string | null = null;
let redisServer: OwnRedis;
let instances: Instance[] = [];
let api: TestApi;
const backends: http.Server[] = [];
const addresses: string[] = [];

before(async () => {
  skip = await serviceMissing('redis-server is not installed', async () => (await redisServerMissing()) === null);
  if (skip !== null) return;
  redisServer = await OwnRedis.start();
  for (const name of ['one', 'two']) {
    const server = http.createServer((req, res) => res.end(`${name}:${req.headers.host}`));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    backends.push(server);
    addresses.push(`127.0.0.1:${(server.address() as AddressInfo).port}`);
  }
  const redis = createClient({ url: redisServer.url });
  await redis.connect();
  await redis.set('polyproxy:route:tenant.test', addresses[0] as string);
  await redis.close();
  api = await startApi();
  instances = await startInstances(3, (_i, name) => ({
    workers: 1,
    logLevel: 'info',
    admin: { port: 0 },
    security: { allowBackends: ['127.0.0.0/8'] },
    cache: { ttlSeconds: 3600 },
    // Redis stopped is seen by its connections closing, not by timeouts: commandTimeoutMs need not be short here, and on this
    // shared machine (load 15+ on 2 cores) Redis itself answers later than 200 ms at times, which is an outage of its own.
    cluster: { redis: { url: redisServer.url }, instanceId: `down-${name}`, heartbeatMs: 200, commandTimeoutMs: 2000, connectTimeoutMs: 500 },
    resolver: { redis: { url: redisServer.url } },
    routes: { 'static.test': addresses[1] as string },
    listeners: [
      { name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 },
      { name: 'ws', protocol: 'ws-bridge', host: '127.0.0.1', port: 0, api: api.url },
    ],
  }));
});

after(async () => {
  await stopAll(instances);
  await api?.close();
  for (const b of backends) b.close();
  await redisServer?.stop();
});

async function get(instance: Instance, host: string): Promise<string> {
  const res = await request(`http://127.0.0.1:${instance.port('web')}/`, { headers: { host }, headersTimeout: 5000 });
  const body = await res.body.text();
  return res.statusCode === 200 ? body : `status ${res.statusCode}`;
}

const UP = 'polyproxy_redis_up{link="cluster"}';
const RESOLVER_UP = 'polyproxy_redis_up{link="resolver"}';
const warnings = (i: Instance): number => i.logs.filter((l) => l.msg.startsWith('redis unavailable')).length;
/** Each instance's Redis state changes, for a failure's message. */
const redisLog = (): string => instances.map((i) => `${i.name}: ${JSON.stringify(i.logs.filter((l) => /^redis/.test(l.msg)).map((l) => `${l.msg} ${String((l as { err?: unknown }).err ?? '')}`))}`).join('\n');

test('Redis stopped and restarted: cached tenants keep working, push falls back to local, one warning, the metric flips and recovers', async (t) => {
  if (skip !== null) return t.skip(skip);
  for (const i of instances) {
    await waitUntil(`${i.name} connected to Redis`, async () => (await metricValue(i, UP)) === 1 && (await metricValue(i, RESOLVER_UP)) === 1, 10000);
    assert.equal(await get(i, 'tenant.test'), `one:tenant.test`);
  }
  const alice = await connectOk((instances[0] as Instance).port('ws'), '/alice');
  assert.equal((await push((instances[2] as Instance).port('ws'), 'alice', 'via C while up')).status, 200, redisLog());

  await redisServer.stop();
  for (const i of instances) await waitUntil(`${i.name} sees Redis down`, async () => (await metricValue(i, UP)) === 0 && (await metricValue(i, RESOLVER_UP)) === 0, 5000);

  // Many requests while down: cached and static routes answer; nothing crashes.
  for (let round = 0; round < 10; round++) {
    for (const i of instances) {
      assert.equal(await get(i, 'tenant.test'), 'one:tenant.test');
      assert.equal(await get(i, 'static.test'), 'two:static.test');
    }
  }
  // Not cached and Redis away: passes on to the static routes, which do not know it.
  assert.equal(await get(instances[1] as Instance, 'other.test'), 'status 404');
  // Push: local delivery still works; another instance cannot know where alice is.
  assert.equal((await push((instances[0] as Instance).port('ws'), 'alice', 'local while down')).status, 200);
  assert.equal((await push((instances[2] as Instance).port('ws'), 'alice', 'via C while down')).status, 404);
  // A purge while down stays local and does not fail.
  assert.equal((await fetch(`http://127.0.0.1:${(instances[0] as Instance).adminPort}/api/purge/nothing`, { method: 'POST', headers: { 'content-type': 'application/json' } })).status, 200);
  for (const i of instances) {
    assert.equal(i.child.exitCode, null, `${i.name} is alive`);
    // One per link and outage (cluster, resolver); a stall of this shared machine before the stop may have counted as one more outage.
    assert.ok(warnings(i) >= 1 && warnings(i) <= 4, `${i.name}: a warning per link and outage, not per request: got ${warnings(i)}`);
  }

  await redisServer.start();
  for (const i of instances) await waitUntil(`${i.name} sees Redis back`, async () => (await metricValue(i, UP)) === 1 && (await metricValue(i, RESOLVER_UP)) === 1, 10000);
  for (const i of instances) assert.ok(i.logs.some((l) => l.msg.startsWith('redis is back')), i.name);
  // The restarted Redis lost the registry: A claims alice again when Redis returns (not at the next ping sweep, 30 s away), so C finds her.
  const statuses: number[] = [];
  await waitUntil('a push via C reaches alice again', async () => statuses[statuses.push((await push((instances[2] as Instance).port('ws'), 'alice', 'via C after')).status) - 1] === 200, 10000).catch((err: Error) =>
    assert.fail(`${err.message}; push statuses ${statuses.join(',')}\n${redisLog()}`),
  );
  assert.deepEqual((await alice.received(3)).map((m) => m.data.toString()), ['via C while up', 'local while down', 'via C after']);

  // Shared state again: a new route and a purge through B reach every instance (the subscriptions came back).
  const redis = createClient({ url: redisServer.url });
  await redis.connect();
  await redis.set('polyproxy:route:tenant.test', addresses[1] as string);
  await redis.close();
  await purge(instances[1] as Instance, 'tenant.test');
  for (const i of instances) await waitUntil(`${i.name} routes tenant.test anew`, async () => (await get(i, 'tenant.test')) === 'two:tenant.test', 3000);
  // A client connecting now is found from any instance.
  const bob = await connectOk((instances[0] as Instance).port('ws'), '/bob');
  assert.equal((await push((instances[2] as Instance).port('ws'), 'bob', 'after')).status, 200);
  assert.equal((await bob.received(1))[0]?.data.toString(), 'after');
  await bob.close();
  await alice.close();
});
