/**
 * A user resolver module in front of the static routes, with its
 * onConnect/onDisconnect hooks; and the one-line flags start.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { parseConfig } from '../../src/config/load.ts';
import { startProxy } from '../../src/supervisor/proxy.ts';
import type { RunningProxy } from '../../src/supervisor/proxy.ts';
import type { ResolverEvent } from '../fixtures/resolver-module.ts';
import { ROOT, startCli } from '../helpers/cli.ts';
import { PG_HOST, PG_PORT, PG_USER, ensureDatabases, postgresMissing } from '../helpers/services.ts';

let proxy: RunningProxy | undefined;
let port = 0;
let skip: string | null = null;
const events = (): ResolverEvent[] => (globalThis as { __polyproxyResolverEvents?: ResolverEvent[] }).__polyproxyResolverEvents ?? [];

before(async () => {
  skip = await postgresMissing();
  if (skip !== null) return;
  await ensureDatabases(['pp_alpha', 'pp_beta']);
  process.env.PP_TEST_BACKEND = `${PG_HOST}:${PG_PORT}`;
  const config = parseConfig(
    {
      workers: 1,
      logLevel: 'silent',
      security: { allowBackends: ['127.0.0.0/8'] },
      resolver: { module: 'test/fixtures/resolver-module.ts' },
      routes: { pp_beta: `${PG_HOST}:${PG_PORT}` },
      listeners: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0 }],
    },
    ROOT,
  );
  proxy = await startProxy(config);
  port = proxy.bound[0]?.port ?? 0;
});

after(async () => {
  await proxy?.drain(1000);
});

async function query(database: string): Promise<string> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: PG_USER, database });
  await client.connect();
  try {
    const { rows } = await client.query<{ db: string }>('select current_database() as db');
    return rows[0]?.db ?? '';
  } finally {
    await client.end();
  }
}

async function refusal(database: string): Promise<string | undefined> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: PG_USER, database });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  await client.end();
  return undefined;
}

test('the module answers first; ids it does not know fall through to routes', async (t) => {
  if (skip !== null) return t.skip(skip);
  assert.equal(await query('pp_alpha'), 'pp_alpha');
  assert.equal(await query('pp_beta'), 'pp_beta');
  const resolved = events().filter((e) => e.hook === 'resolve').map((e) => e.id);
  assert.deepEqual(resolved.slice(0, 2), ['pp_alpha', 'pp_beta']);
  const ctx = events().find((e) => e.hook === 'resolve')?.data as { protocol: string; listener: string; clientAddress: string };
  assert.equal(ctx.protocol, 'postgres');
  assert.equal(ctx.listener, 'pg');
  assert.equal(ctx.clientAddress, '127.0.0.1');
});

test('answers are cached: a second connection does not call resolve again', async (t) => {
  if (skip !== null) return t.skip(skip);
  const before = events().filter((e) => e.hook === 'resolve' && e.id === 'pp_alpha').length;
  await query('pp_alpha');
  assert.equal(events().filter((e) => e.hook === 'resolve' && e.id === 'pp_alpha').length, before);
  proxy?.router.purge('pp_alpha');
  await query('pp_alpha');
  assert.equal(events().filter((e) => e.hook === 'resolve' && e.id === 'pp_alpha').length, before + 1);
});

test('onConnect and onDisconnect report the endpoint, bytes and duration', async (t) => {
  if (skip !== null) return t.skip(skip);
  const from = events().length;
  await query('pp_alpha');
  let done: ResolverEvent | undefined;
  for (let i = 0; i < 100 && done === undefined; i++) {
    done = events().slice(from).find((e) => e.hook === 'onDisconnect');
    if (done === undefined) await new Promise((resolve) => setImmediate(resolve));
  }
  const connected = events().slice(from).find((e) => e.hook === 'onConnect');
  assert.ok(connected !== undefined && done !== undefined);
  const summary = done.data as { endpoint: string; bytesIn: number; bytesOut: number; durationMs: number; protocol: string };
  assert.equal(summary.endpoint, `${PG_HOST}:${PG_PORT}`);
  assert.equal(summary.protocol, 'postgres');
  assert.ok(summary.bytesIn > 50, `bytesIn ${summary.bytesIn}`); // startup + query + terminate
  assert.ok(summary.bytesOut > 200, `bytesOut ${summary.bytesOut}`); // auth, parameters, row
  assert.ok(summary.durationMs >= 0);
});

test('resolver errors become the matching SQLSTATE', async (t) => {
  if (skip !== null) return t.skip(skip);
  assert.equal(await refusal('pp_suspended'), '28000');
  assert.equal(await refusal('pp_waking'), '57P03');
  assert.equal(await refusal('pp_unknown'), '3D000');
});

test('one-line start: --protocol postgres --port --backend', async (t) => {
  if (skip !== null) return t.skip(skip);
  const cli = await startCli(['--protocol', 'postgres', '--port', '0', '--host', '127.0.0.1', '--backend', `${PG_HOST}:${PG_PORT}`]);
  try {
    const client = new pg.Client({ host: '127.0.0.1', port: cli.port('postgres'), user: PG_USER, database: 'pp_beta' });
    await client.connect();
    const { rows } = await client.query<{ db: string }>('select current_database() as db');
    assert.equal(rows[0]?.db, 'pp_beta');
    await client.end();
  } finally {
    await cli.stop();
  }
});
