/**
 * ws-bridge across a fleet of three instances (separate processes sharing
 * the real Redis): the API's push to any instance reaches the client
 * wherever it is connected, 404 only when no instance holds it; a second
 * connection with the same ClientId on another instance replaces the first
 * (`duplicateClientId: replace`) or is refused (`refuse`).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createClient } from 'redis';
import { startInstances, stopAll } from '../helpers/fleet.ts';
import type { Instance } from '../helpers/fleet.ts';
import { REDIS_HOST, REDIS_PORT, redisMissing } from '../helpers/redis.ts';
import { startApi } from '../helpers/ws-api.ts';
import type { TestApi } from '../helpers/ws-api.ts';
import { connect, connectOk, push } from '../helpers/ws-bridge.ts';

const RUN = `pp-ws-${process.pid}-${Date.now()}`;
const REDIS_URL = `redis://${REDIS_HOST}:${REDIS_PORT}`;
let skip: string | null = null;
let instances: Instance[] = [];
let api: TestApi;

before(async () => {
  skip = await redisMissing();
  if (skip !== null) return;
  api = await startApi();
  instances = await startInstances(3, (_i, name) => ({
    workers: 1,
    logLevel: 'warn',
    security: { allowBackends: ['127.0.0.0/8'] },
    cluster: { redis: { url: REDIS_URL, prefix: `${RUN}:` }, instanceId: `${RUN}-${name}` },
    listeners: [
      { name: 'ws', protocol: 'ws-bridge', host: '127.0.0.1', port: 0, api: api.url, duplicateClientId: 'replace' },
      { name: 'wsr', protocol: 'ws-bridge', host: '127.0.0.1', port: 0, api: api.url, duplicateClientId: 'refuse' },
    ],
  }));
});

after(async () => {
  await stopAll(instances);
  await api?.close();
  const redis = createClient({ url: REDIS_URL });
  await redis.connect().catch(() => {});
  if (redis.isOpen) {
    for (const key of await redis.keys(`${RUN}*`)) await redis.del(key);
    await redis.close();
  }
});

const [A, B, C] = [0, 1, 2];
const at = (i: number): Instance => instances[i] as Instance;

test('a client on instance A receives a push sent to instance C (and to B, and to A)', async (t) => {
  if (skip !== null) return t.skip(skip);
  const client = await connectOk(at(A).port('ws'), '/alice');
  assert.deepEqual(await push(at(C).port('ws'), 'alice', 'hello from C'), { status: 200, text: 'ok' });
  assert.deepEqual(await push(at(B).port('ws'), 'alice', 'hello from B'), { status: 200, text: 'ok' });
  assert.deepEqual(await push(at(A).port('ws'), 'alice', 'hello from A'), { status: 200, text: 'ok' });
  const got = await client.received(3);
  assert.deepEqual(got.map((m) => m.data.toString()), ['hello from C', 'hello from B', 'hello from A']);
  // Binary bodies cross instances intact.
  const bytes = Buffer.from([0, 1, 2, 255, 254]);
  assert.equal((await push(at(C).port('ws'), 'alice', bytes, 'application/octet-stream')).status, 200);
  const [, , , binary] = await client.received(4);
  assert.deepEqual(binary?.data, bytes);
  assert.equal(binary?.isBinary, true);
  await client.close();
});

test('a push for a ClientId no instance holds is 404; a client that left is 404 everywhere', async (t) => {
  if (skip !== null) return t.skip(skip);
  assert.equal((await push(at(C).port('ws'), 'nobody', 'x')).status, 404);
  const client = await connectOk(at(A).port('ws'), '/bob');
  assert.equal((await push(at(B).port('ws'), 'bob', 'x')).status, 200);
  await client.close();
  await api.waitFor((r) => r.method === 'DELETE' && r.path.endsWith('/bob'));
  assert.equal((await push(at(B).port('ws'), 'bob', 'x')).status, 404);
});

test('duplicateClientId replace: the same ClientId on instance B replaces the connection on A', async (t) => {
  if (skip !== null) return t.skip(skip);
  const first = await connectOk(at(A).port('ws'), '/carol');
  const second = await connectOk(at(B).port('ws'), '/carol');
  const closed = await first.closed;
  assert.equal(closed.code, 4409);
  // Pushes now reach the newer connection, from any instance.
  assert.equal((await push(at(C).port('ws'), 'carol', 'to the newer one')).status, 200);
  assert.equal((await second.received(1))[0]?.data.toString(), 'to the newer one');
  assert.equal(first.messages.length, 0);
  await second.close();
});

test('duplicateClientId refuse: the same ClientId on another instance is refused while the first holds it', async (t) => {
  if (skip !== null) return t.skip(skip);
  const first = await connectOk(at(A).port('wsr'), '/dave');
  const second = await connect(at(C).port('wsr'), '/dave');
  assert.equal(second.ok, false);
  assert.equal(second.ok ? 0 : second.status, 409);
  await first.close();
  await api.waitFor((r) => r.method === 'DELETE' && r.path.endsWith('/dave'));
  const third = await connectOk(at(C).port('wsr'), '/dave');
  await third.close();
});
