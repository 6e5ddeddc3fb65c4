/**
 * Cold start once per fleet: 30 requests for a sleeping backend spread
 * over three instances (separate processes sharing the real Redis): the
 * resolver's wake() is called exactly once across the fleet (the SET NX PX
 * lock), the other instances wait for the endpoint, and every request
 * succeeds.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import path from 'node:path';
import { createClient } from 'redis';
import { request } from 'undici';
import { ROOT } from '../helpers/cli.ts';
import { freePort, startInstances, stopAll } from '../helpers/fleet.ts';
import type { Instance } from '../helpers/fleet.ts';
import { REDIS_HOST, REDIS_PORT, redisMissing } from '../helpers/redis.ts';

const RUN = `pp-cold-${process.pid}-${Date.now()}`;
const REDIS_URL = `redis://${REDIS_HOST}:${REDIS_PORT}`;
let skip: string | null = null;
let instances: Instance[] = [];
let wakeServer: http.Server;
let backend: http.Server | null = null;
let backendPort = 0;
let wakes = 0;

before(async () => {
  skip = await redisMissing();
  if (skip !== null) return;
  backendPort = await freePort();
  wakeServer = http.createServer((req, res) => {
    wakes++;
    // The backend comes up a moment after the wake call, as a real one would.
    setTimeout(() => {
      if (backend === null) {
        backend = http.createServer((r, s) => s.end(`awake for ${r.headers.host}`));
        backend.listen(backendPort, '127.0.0.1');
      }
    }, 500);
    res.end('waking');
  });
  await new Promise<void>((resolve) => wakeServer.listen(0, '127.0.0.1', resolve));
  process.env.PP_COLD_BACKEND = `127.0.0.1:${backendPort}`;
  process.env.PP_WAKE_URL = `http://127.0.0.1:${(wakeServer.address() as AddressInfo).port}/wake`;
  instances = await startInstances(3, (_i, name) => ({
    workers: 1,
    logLevel: 'info',
    security: { allowBackends: ['127.0.0.0/8'] },
    // commandTimeoutMs above the default: this shared test machine stalls for longer than 500 ms at times, which would count as Redis down (and every instance would wake its own).
    cluster: { redis: { url: REDIS_URL, prefix: `${RUN}:` }, instanceId: `${RUN}-${name}`, commandTimeoutMs: 3000 },
    resolver: { module: path.join(ROOT, 'test/fixtures/fleet-cold-resolver.ts') },
    coldStart: { timeoutMs: 20000, pollIntervalMs: 50 },
    health: { intervalMs: 0 },
    listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 }],
  }));
});

after(async () => {
  await stopAll(instances);
  wakeServer?.close();
  (backend as http.Server | null)?.close();
  const redis = createClient({ url: REDIS_URL });
  await redis.connect().catch(() => {});
  if (redis.isOpen) {
    for (const key of await redis.keys(`${RUN}*`)) await redis.del(key);
    await redis.close();
  }
});

test('30 requests for a cold resource over three instances: wake() once, all succeed', async (t) => {
  if (skip !== null) return t.skip(skip);
  for (const i of instances) await i.waitForLog((l) => l.msg === 'redis connected' || l.msg === 'redis is back', 10000);
  const requests = Array.from({ length: 30 }, async (_, i) => {
    const instance = instances[i % 3] as Instance;
    const res = await request(`http://127.0.0.1:${instance.port('web')}/`, { headers: { host: 'cold.test' }, headersTimeout: 30000 });
    return { status: res.statusCode, body: await res.body.text() };
  });
  const results = await Promise.all(requests);
  assert.deepEqual(
    results.map((r) => r.status),
    Array.from({ length: 30 }, () => 200),
  );
  assert.ok(results.every((r) => r.body === 'awake for cold.test'));
  assert.equal(wakes, 1, 'wake() was called once across the fleet');
});
