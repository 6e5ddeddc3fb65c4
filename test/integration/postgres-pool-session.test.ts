/**
 * Session pooling: one server connection per client session, given back
 * with DISCARD ALL (PgBouncer's server_reset_query) so the next session
 * finds none of the last one's state; LISTEN works (it has a session).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startPoolFront } from '../helpers/pg-pool-front.ts';
import type { PoolFront } from '../helpers/pg-pool-front.ts';
import { PG_USER, ensureDatabases, postgresMissing } from '../helpers/services.ts';

const DB = 'pp_pool_session';
let skip: string | null = null;
let front: PoolFront | undefined;

before(async () => {
  skip = await postgresMissing();
  if (skip !== null) return;
  await ensureDatabases([DB]);
  front = await startPoolFront({ mode: 'session', size: 1 });
});

after(async () => {
  await front?.close();
});

function client(options: Partial<pg.ClientConfig> = {}): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port: (front as PoolFront).port, user: PG_USER, database: DB, ...options });
}

test('session mode: the next session gets the same server connection, reset by DISCARD ALL', async (t) => {
  if (skip !== null) return t.skip(skip);
  const a = client({ application_name: 'pp_first' });
  await a.connect();
  const { rows } = await a.query<{ pid: number }>('select pg_backend_pid() as pid');
  await a.query('set search_path = pg_catalog');
  await a.query('prepare pp_stmt as select 1');
  await a.query({ name: 'pp_proto', text: 'select 2' });
  await a.query('create temp table pp_temp (x int)');
  // Many transactions, one server connection: session mode never switches.
  await a.query('begin');
  await a.query('commit');
  assert.equal((await a.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]?.pid, rows[0]?.pid);
  await a.end();

  const b = client();
  await b.connect();
  try {
    const r = await b.query<{ pid: number; sp: string; prepared: string; temps: string; app: string }>(
      "select pg_backend_pid() as pid, current_setting('search_path') as sp, (select count(*) from pg_prepared_statements) as prepared, (select count(*) from pg_class where relname = 'pp_temp') as temps, current_setting('application_name') as app",
    );
    assert.equal(r.rows[0]?.pid, rows[0]?.pid, 'the same server connection (pool size 1)');
    assert.equal(r.rows[0]?.sp, '"$user", public');
    assert.equal(r.rows[0]?.prepared, '0');
    assert.equal(r.rows[0]?.temps, '0');
    assert.equal(r.rows[0]?.app, '');
  } finally {
    await b.end();
  }
});

test('session mode: LISTEN/NOTIFY works', async (t) => {
  if (skip !== null) return t.skip(skip);
  const c = client();
  await c.connect();
  try {
    const heard = new Promise<string | undefined>((resolve) => c.once('notification', (n) => resolve(n.payload)));
    await c.query('listen pp_session_channel');
    await c.query("notify pp_session_channel, 'hello'");
    assert.equal(await heard, 'hello');
  } finally {
    await c.end();
  }
});

test('session mode: a client leaving mid-transaction does not pass its transaction on; its server is rolled back, reset and reused', async (t) => {
  if (skip !== null) return t.skip(skip);
  const a = client();
  await a.connect();
  const pid = (await a.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]?.pid;
  await a.query('begin');
  await a.query('create temp table pp_left (x int)');
  await a.query("set pp.gone = 'yes'");
  await a.end();
  const b = client();
  await b.connect();
  try {
    const r = await b.query<{ pid: number; status: string; gone: string; tx: string }>(
      "select pg_backend_pid() as pid, (select count(*) from pg_class where relname = 'pp_left')::text as status, coalesce(current_setting('pp.gone', true), '') as gone, (now() = statement_timestamp())::text as tx",
    );
    assert.equal(r.rows[0]?.status, '0');
    assert.equal(r.rows[0]?.gone, '');
    assert.equal(r.rows[0]?.tx, 'true', 'not inside the last client\'s transaction');
    assert.equal(r.rows[0]?.pid, pid, 'the server connection was reset (ROLLBACK, DISCARD ALL) and reused, not closed');
  } finally {
    await b.end();
  }
});

test('session mode: a client leaving with a query in flight (in an aborted transaction) gets its server rolled back and reused', async (t) => {
  if (skip !== null) return t.skip(skip);
  const front_ = front as PoolFront;
  const a = client();
  await a.connect();
  a.on('error', () => {});
  const pid = (await a.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]?.pid;
  await a.query('begin');
  await assert.rejects(a.query('select 1/0'));
  // In flight when the client goes: a slow statement of the failed transaction, then a pipelined one.
  const slow = a.query('select pg_sleep(0.3)').catch(() => undefined);
  const opened = front_.manager.pools.values().next().value?.stats.serversOpened ?? 0;
  (a as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
  await slow;
  const b = client();
  await b.connect();
  try {
    const r = await b.query<{ pid: number; one: number }>('select pg_backend_pid() as pid, 1 as one');
    assert.equal(r.rows[0]?.one, 1);
    assert.equal(r.rows[0]?.pid, pid, 'the same server connection');
    assert.equal(front_.manager.pools.values().next().value?.stats.serversOpened ?? 0, opened, 'no new server connection was opened');
  } finally {
    await b.end();
  }
});
