/**
 * PostgreSQL cancel across a fleet: a query runs through instance A; the
 * CancelRequest (a new connection carrying only the BackendKeyData, as
 * psql and pg send it) lands on instance B, which finds the key's owner in
 * Redis and hands it over; A forwards it to the backend and the query is
 * cancelled (SQLSTATE 57014). The same for a pooled client (`auth` +
 * `pool`), whose BackendKeyData is the proxy's own: A maps it to the server
 * connection running the query now.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createClient } from 'redis';
import { startInstances, stopAll, waitUntil } from '../helpers/fleet.ts';
import type { Instance } from '../helpers/fleet.ts';
import { REDIS_HOST, REDIS_PORT, redisMissing } from '../helpers/redis.ts';
import { PG_HOST, PG_PORT, PG_USER, pgDirect, postgresMissing } from '../helpers/services.ts';

const RUN = `pp-cancel-${process.pid}-${Date.now()}`;
const PASSWORD = 'fleet pool secret';
const REDIS_URL = `redis://${REDIS_HOST}:${REDIS_PORT}`;
let skip: string | null = null;
let instances: Instance[] = [];

before(async () => {
  skip = (await redisMissing()) ?? (await postgresMissing());
  if (skip !== null) return;
  instances = await startInstances(3, (_i, name) => ({
    workers: 1,
    logLevel: 'warn',
    security: { allowBackends: ['127.0.0.0/8'] },
    cluster: { redis: { url: REDIS_URL, prefix: `${RUN}:` }, instanceId: `${RUN}-${name}` },
    routes: { postgres: `${PG_HOST}:${PG_PORT}` },
    listeners: [
      { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0 },
      // The machine's PostgreSQL trusts loopback: the proxy logs in with the password, the server does not ask.
      { name: 'pooled', protocol: 'postgres', host: '127.0.0.1', port: 0, auth: { users: { [PG_USER]: { password: PASSWORD } } }, pool: { mode: 'transaction', size: 2 } },
    ],
  }));
});

after(async () => {
  await stopAll(instances);
  const redis = createClient({ url: REDIS_URL });
  await redis.connect().catch(() => {});
  if (redis.isOpen) {
    for (const key of await redis.keys(`${RUN}*`)) await redis.del(key);
    await redis.close();
  }
});

/** A CancelRequest on a new connection, as libpq sends it; PostgreSQL (and the proxy) answer nothing and close. */
function sendCancel(port: number, processId: number, secretKey: number): Promise<void> {
  const packet = Buffer.alloc(16);
  packet.writeInt32BE(16, 0);
  packet.writeInt32BE(80877102, 4);
  packet.writeInt32BE(processId, 8);
  packet.writeInt32BE(secretKey, 12);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.end(packet));
    socket.on('data', () => {});
    socket.once('close', () => resolve());
    socket.once('error', reject);
  });
}

test('a cancel that lands on instance B cancels the query running through instance A', async (t) => {
  if (skip !== null) return t.skip(skip);
  const client = new pg.Client({ host: '127.0.0.1', port: (instances[0] as Instance).port('pg'), user: PG_USER, database: 'postgres' });
  await client.connect();
  try {
    const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
    const started = Date.now();
    const running = client.query('select pg_sleep(30)').then(() => null, (err: unknown) => err as { code?: string });
    // Wait until the backend runs the query, then cancel through B.
    await waitUntil('the query runs', async () => (await pgDirect(`select 1 from pg_stat_activity where pid = ${Number(processID)} and state = 'active'`)).length === 1, 10000, 50);
    await sendCancel((instances[1] as Instance).port('pg'), processID, secretKey);
    const err = await running;
    assert.equal(err?.code, '57014', 'query_canceled');
    assert.ok(Date.now() - started < 10000);
  } finally {
    await client.end();
  }
});

test('a pooled client (auth + pool) on A: its cancel sent to B cancels the query on the server running it', async (t) => {
  if (skip !== null) return t.skip(skip);
  const tag = `pp_fleet_pool_cancel_${process.pid}`;
  const client = new pg.Client({ host: '127.0.0.1', port: (instances[0] as Instance).port('pooled'), user: PG_USER, password: PASSWORD, database: 'postgres' });
  await client.connect();
  try {
    const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
    const running = client.query(`select pg_sleep(30) /* ${tag} */`).then(() => null, (err: unknown) => err as { code?: string });
    await waitUntil('the pooled query runs', async () => (await pgDirect(`select 1 from pg_stat_activity where state = 'active' and query like '%${tag}%' and pid <> pg_backend_pid()`)).length === 1, 10000, 50);
    // The proxy's key, not a server's: no backend pid matches it.
    assert.equal((await pgDirect(`select 1 from pg_stat_activity where pid = ${Number(processID)}`)).length, 0);
    await sendCancel((instances[1] as Instance).port('pooled'), processID, secretKey);
    const err = await running;
    assert.equal(err?.code, '57014', 'query_canceled');
    // The pooled client goes on with another query on whichever server the pool gives it.
    assert.equal((await client.query<{ one: number }>('select 1 as one')).rows[0]?.one, 1);
  } finally {
    await client.end();
  }
});

test('a cancel with a key no instance issued is dropped quietly (no crash, the instances keep serving)', async (t) => {
  if (skip !== null) return t.skip(skip);
  await sendCancel((instances[2] as Instance).port('pg'), 12345, 67890);
  const client = new pg.Client({ host: '127.0.0.1', port: (instances[2] as Instance).port('pg'), user: PG_USER, database: 'postgres' });
  await client.connect();
  assert.equal((await client.query<{ one: number }>('select 1 as one')).rows[0]?.one, 1);
  await client.end();
});
