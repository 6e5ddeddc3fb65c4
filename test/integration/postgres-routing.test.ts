/**
 * PostgreSQL routing end to end: the real `polyproxy` command in front of
 * the real PostgreSQL, driven by `pg` and `psql`.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { PG_HOST, PG_PORT, PG_USER, ensureDatabases, postgresMissing } from '../helpers/services.ts';

const run = promisify(execFile);
let proxy: RunningCli | undefined;
let port = 0;
let skip: string | null = null;

before(async () => {
  skip = await postgresMissing();
  if (skip !== null) return;
  await ensureDatabases(['pp_alpha', 'pp_beta']);
  const file = await writeConfig({
    workers: 1,
    security: { allowBackends: ['127.0.0.0/8'] },
    routes: {
      pp_alpha: `${PG_HOST}:${PG_PORT}`,
      // A list: balanced, and the dead first entry is skipped by the connect loop.
      pp_beta: [`${PG_HOST}:${PG_PORT}`, '127.0.0.1:1'],
      '*.tenants': `${PG_HOST}:${PG_PORT}`,
      pp_forbidden: '10.1.2.3:5432',
      // Its own dead endpoint: 127.0.0.1:1 above opens its circuit breaker (57P03, not 08006).
      pp_down: '127.0.0.1:2',
    },
    listeners: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0, connectTimeoutMs: 2000 }],
  });
  proxy = await startCli(['--config', file]);
  port = proxy.port('pg');
});

after(async () => {
  await proxy?.stop();
});

function client(database: string): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port, user: PG_USER, database });
}

async function currentDatabase(database: string): Promise<string> {
  const c = client(database);
  await c.connect();
  try {
    const { rows } = await c.query<{ db: string }>('select current_database() as db');
    return rows[0]?.db ?? '';
  } finally {
    await c.end();
  }
}

async function connectError(database: string): Promise<{ code?: string; message: string }> {
  const c = client(database);
  c.on('error', () => {});
  try {
    await c.connect();
  } catch (err) {
    return err as { code?: string; message: string };
  } finally {
    await c.end().catch(() => {});
  }
  assert.fail(`connecting to ${database} through the proxy should fail`);
}

test('two routes each reach their own database (pg)', async (t) => {
  if (skip !== null) return t.skip(skip);
  assert.equal(await currentDatabase('pp_alpha'), 'pp_alpha');
  assert.equal(await currentDatabase('pp_beta'), 'pp_beta');
  // pp_beta's list has a dead second endpoint: every connection still succeeds.
  for (let i = 0; i < 4; i++) assert.equal(await currentDatabase('pp_beta'), 'pp_beta');
});

test('two routes each reach their own database (psql)', async (t) => {
  if (skip !== null) return t.skip(skip);
  for (const db of ['pp_alpha', 'pp_beta']) {
    const { stdout } = await run('psql', ['-X', '-At', `host=127.0.0.1 port=${port} user=${PG_USER} dbname=${db} sslmode=prefer`, '-c', 'select current_database()']);
    assert.equal(stdout.trim(), db);
  }
});

test('the database defaults to the user name', async (t) => {
  if (skip !== null) return t.skip(skip);
  // pg sends database=user when none is given; "postgres" is not routed, so the error names it.
  const c = new pg.Client({ host: '127.0.0.1', port, user: PG_USER });
  c.on('error', () => {});
  await assert.rejects(c.connect(), (err: { code?: string; message: string }) => err.code === '3D000' && err.message.includes(`"${PG_USER}"`));
});

test('wildcard route', async (t) => {
  if (skip !== null) return t.skip(skip);
  // "*.tenants" routes to the server, which has no such database: the server's own error comes back through the proxy.
  const err = await connectError('shop.tenants');
  assert.equal(err.code, '3D000');
  assert.match(err.message, /database "shop.tenants" does not exist/);
});

test('an unrouted database gets ErrorResponse 3D000 naming it', async (t) => {
  if (skip !== null) return t.skip(skip);
  const err = await connectError('pp_nowhere');
  assert.equal(err.code, '3D000');
  assert.match(err.message, /database "pp_nowhere" is not routed/);
  await assert.rejects(
    run('psql', ['-X', '-At', `host=127.0.0.1 port=${port} user=${PG_USER} dbname=pp_nowhere sslmode=disable`, '-c', 'select 1']),
    (e: { stderr: string; code: number }) => e.code === 2 && /FATAL: +database "pp_nowhere" is not routed by this proxy/.test(e.stderr),
  );
});

test('a route to a private address is refused by the SSRF guard with 28000', async (t) => {
  if (skip !== null) return t.skip(skip);
  const err = await connectError('pp_forbidden');
  assert.equal(err.code, '28000');
  assert.match(err.message, /pp_forbidden/);
});

test('an unreachable backend gets 08006 naming the database', async (t) => {
  if (skip !== null) return t.skip(skip);
  const err = await connectError('pp_down');
  assert.equal(err.code, '08006');
  assert.match(err.message, /pp_down/);
});

test('authentication runs against the real server: a wrong user fails with its own error', async (t) => {
  if (skip !== null) return t.skip(skip);
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'pp_no_such_role', database: 'pp_alpha' });
  c.on('error', () => {});
  await assert.rejects(c.connect(), (err: { code?: string }) => err.code === '28000');
});

test('each closed session is logged with bytes and duration', async (t) => {
  if (skip !== null) return t.skip(skip);
  await currentDatabase('pp_alpha');
  const line = await proxy!.waitForLog((l) => l.msg === 'session closed' && l.resource === 'pp_alpha');
  assert.ok((line.bytesIn as number) > 0);
  assert.ok((line.bytesOut as number) > 0);
  assert.equal(typeof line.durationMs, 'number');
});
