/**
 * Tenant limits across a fleet (issues 21 and 18): two instances sharing
 * Redis, a tenant limited to 10 concurrent connections. Its sessions are
 * counted fleet-wide, so the 11th is refused (53300) on whichever instance
 * it lands, and a place freed on one instance is usable on the other.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createClient } from 'redis';
import { startInstances, stopAll, waitUntil } from '../helpers/fleet.ts';
import type { Instance } from '../helpers/fleet.ts';
import { REDIS_HOST, REDIS_PORT, redisMissing } from '../helpers/redis.ts';
import { PG_HOST, PG_PORT, PG_USER, ensureDatabases, postgresMissing } from '../helpers/services.ts';

const RUN = `pp-limits-${process.pid}-${Date.now()}`;
const REDIS_URL = `redis://${REDIS_HOST}:${REDIS_PORT}`;
let skip: string | null = null;
let instances: Instance[] = [];

before(async () => {
  skip = (await redisMissing()) ?? (await postgresMissing());
  if (skip !== null) return;
  await ensureDatabases(['pp_alpha', 'pp_beta']);
  instances = await startInstances(2, (_i, name) => ({
    workers: 1,
    logLevel: 'warn',
    security: { allowBackends: ['127.0.0.0/8'] },
    cluster: { redis: { url: REDIS_URL, prefix: `${RUN}:` }, instanceId: `${RUN}-${name}`, commandTimeoutMs: 3000 },
    routes: { pp_alpha: `${PG_HOST}:${PG_PORT}`, pp_beta: `${PG_HOST}:${PG_PORT}` },
    limits: { tenants: { pp_alpha: { maxConnections: 10 } } },
    listeners: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0 }],
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

function portOf(instance: Instance): number {
  return instance.port('pg');
}

async function open(instance: Instance, database: string): Promise<pg.Client> {
  const client = new pg.Client({ host: '127.0.0.1', port: portOf(instance), user: PG_USER, database });
  client.on('error', () => {});
  await client.connect();
  return client;
}

async function refused(instance: Instance, database: string): Promise<{ code?: string; message: string }> {
  const client = new pg.Client({ host: '127.0.0.1', port: portOf(instance), user: PG_USER, database });
  client.on('error', () => {});
  return client.connect().then(
    async () => {
      await client.end();
      return assert.fail(`a connection past the fleet-wide limit was admitted on ${instance.name}`);
    },
    (err: { code?: string; message: string }) => err,
  );
}

test('a tenant limited to 10 connections across two instances gets the 11th refused on either one', async (t) => {
  if (skip !== null) return t.skip(skip);
  const [a, b] = instances;
  assert.ok(a !== undefined && b !== undefined);
  const held: pg.Client[] = [];
  try {
    for (let i = 0; i < 5; i++) held.push(await open(a, 'pp_alpha'));
    for (let i = 0; i < 5; i++) held.push(await open(b, 'pp_alpha'));
    for (const instance of [a, b]) {
      const err = await refused(instance, 'pp_alpha');
      assert.equal(err.code, '53300', `${instance.name}: ${err.message}`);
      assert.match(err.message, /pp_alpha/);
    }
    // Another tenant is not affected.
    const beta = await open(b, 'pp_beta');
    held.push(beta);
    // A place freed on A is usable on B.
    await held.shift()?.end();
    // The release reaches Redis asynchronously: retry until it has.
    await waitUntil('the freed place is usable on the other instance', async () => {
      const admitted = await open(b, 'pp_alpha').catch(() => null);
      if (admitted !== null) held.push(admitted);
      return admitted !== null;
    });
  } finally {
    await Promise.all(held.map((c) => c.end().catch(() => {})));
  }
});
