/**
 * A fleet whose instances run several workers: each worker process is a
 * member of its own (`<instanceId>/<pid>`). A purge through instance B
 * reaches every worker of instance A, a push to B reaches a client held by
 * one of A's workers, and A's /api/stats (merged by its supervisor) lists
 * every member.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { createClient } from 'redis';
import { request } from 'undici';
import { purge, startInstances, stats, stopAll, waitUntil } from '../helpers/fleet.ts';
import type { Instance } from '../helpers/fleet.ts';
import { REDIS_HOST, REDIS_PORT, redisMissing } from '../helpers/redis.ts';
import { startApi } from '../helpers/ws-api.ts';
import type { TestApi } from '../helpers/ws-api.ts';
import { connectOk, push } from '../helpers/ws-bridge.ts';

const RUN = `pp-fleetw-${process.pid}-${Date.now()}`;
const REDIS_URL = `redis://${REDIS_HOST}:${REDIS_PORT}`;
let skip: string | null = null;
let instances: Instance[] = [];
let api: TestApi;
const backends: http.Server[] = [];
const addresses: string[] = [];
const redis = createClient({ url: REDIS_URL });

before(async () => {
  skip = await redisMissing();
  if (skip !== null) return;
  await redis.connect();
  for (const name of ['one', 'two']) {
    const server = http.createServer((req, res) => res.end(name));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    backends.push(server);
    addresses.push(`127.0.0.1:${(server.address() as AddressInfo).port}`);
  }
  await redis.set(`${RUN}:route:w.test`, addresses[0] as string);
  api = await startApi();
  instances = await startInstances(2, (i, name) => ({
    workers: i === 0 ? 2 : 1,
    logLevel: 'warn',
    admin: { port: 0 },
    security: { allowBackends: ['127.0.0.0/8'] },
    cache: { ttlSeconds: 3600 },
    cluster: { redis: { url: REDIS_URL, prefix: `${RUN}:` }, instanceId: `${RUN}-${name}`, heartbeatMs: 200 },
    resolver: { redis: { url: REDIS_URL, prefix: `${RUN}:route:` } },
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
  if (redis.isOpen) {
    for (const key of await redis.keys(`${RUN}*`)) await redis.del(key);
    await redis.close();
  }
});

async function get(instance: Instance, host: string): Promise<string> {
  // A new connection each time, so the kernel spreads them over the workers.
  const res = await request(`http://127.0.0.1:${instance.port('web')}/`, { headers: { host, connection: 'close' } });
  return res.body.text();
}

test('every worker of A is a member; a purge through B reaches all of them; a push to B reaches a client on A', async (t) => {
  if (skip !== null) return t.skip(skip);
  const A = instances[0] as Instance;
  const B = instances[1] as Instance;
  type View = { instances: Array<{ id: string; instanceId: string; stale: boolean }> };
  await waitUntil('A sees three members', async () => ((await stats(A)).fleet as View).instances.filter((i) => !i.stale).length === 3, 10000);
  const view = (await stats(A)).fleet as View;
  assert.deepEqual(view.instances.map((i) => i.instanceId).sort(), [`${RUN}-A`, `${RUN}-A`, `${RUN}-B`]);
  assert.ok(view.instances.filter((i) => i.instanceId === `${RUN}-A`).every((i) => i.id.startsWith(`${RUN}-A/`)));

  // Fill every worker's cache (many connections), then change the route and purge through B.
  for (let i = 0; i < 20; i++) assert.equal(await get(A, 'w.test'), 'one');
  await redis.set(`${RUN}:route:w.test`, addresses[1] as string);
  await purge(B, 'w.test');
  await waitUntil('A routes to the new backend', async () => (await get(A, 'w.test')) === 'two', 2000);
  for (let i = 0; i < 20; i++) assert.equal(await get(A, 'w.test'), 'two', 'no worker of A kept the stale route');

  const client = await connectOk(A.port('ws'), '/wendy');
  assert.equal((await push(B.port('ws'), 'wendy', 'from B')).status, 200);
  assert.equal((await client.received(1))[0]?.data.toString(), 'from B');
  await client.close();
});
