/**
 * Transaction pooling against the real PostgreSQL with the real clients
 * (pg, psql): the pool (src/protocols/postgres/pool/) behind a trust front
 * (test/helpers/pg-pool-front.ts). Server connections change between
 * transactions; what a client relies on must not.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startPoolFront } from '../helpers/pg-pool-front.ts';
import type { PoolFront } from '../helpers/pg-pool-front.ts';
import { PG_USER, ensureDatabases, pgDirect, postgresMissing } from '../helpers/services.ts';

const DB = 'pp_pool_tx';
let skip: string | null = null;
let front: PoolFront | undefined;

before(async () => {
  skip = await postgresMissing();
  if (skip !== null) return;
  await ensureDatabases([DB]);
  await pgDirect('create table if not exists pp_copy (id int, name text)', DB);
  await pgDirect('create schema if not exists pp_other', DB);
  await pgDirect('create table if not exists pp_other.marker (v text)', DB);
  await pgDirect("truncate pp_other.marker; insert into pp_other.marker values ('other schema')", DB);
  front = await startPoolFront({ size: 2 });
});

after(async () => {
  await front?.close();
});

function client(options: Partial<pg.ClientConfig> = {}): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port: (front as PoolFront).port, user: PG_USER, database: DB, ...options });
}

async function pid(c: pg.Client): Promise<number> {
  return (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]?.pid as number;
}

/**
 * Runs `body` while another client holds the server connection `c` used
 * last (BEGIN on a size-2 pool, taken LIFO), so `c`'s next transaction runs
 * on the other one.
 */
async function onAnotherServer<T>(c: pg.Client, body: () => Promise<T>): Promise<{ before: number; after: number; value: T }> {
  const first = await pid(c);
  const holder = client();
  await holder.connect();
  try {
    await holder.query('begin');
    const held = await pid(holder);
    assert.equal(held, first, 'the holder took the connection just given back (LIFO)');
    const value = await body();
    const second = await pid(c);
    await holder.query('commit');
    return { before: first, after: second, value };
  } finally {
    await holder.end();
  }
}

test('named prepared statements are reused across transactions on different server connections', async (t) => {
  if (skip !== null) return t.skip(skip);
  const c = client();
  await c.connect();
  try {
    const q = { name: 'pp_add', text: 'select $1::int + 1 as n' };
    assert.equal((await c.query<{ n: number }>({ ...q, values: [1] })).rows[0]?.n, 2);
    const moved = await onAnotherServer(c, () => c.query<{ n: number }>({ ...q, values: [41] }));
    assert.notEqual(moved.before, moved.after, 'ran on another server connection');
    assert.equal(moved.value.rows[0]?.n, 42);
    // And back on the first one, where it was prepared, still fine.
    assert.equal((await c.query<{ n: number }>({ ...q, values: [9] })).rows[0]?.n, 10);
  } finally {
    await c.end();
  }
});

test('two clients preparing the same text under their own names share one server-side statement', async (t) => {
  if (skip !== null) return t.skip(skip);
  const a = client();
  const b = client();
  await a.connect();
  await b.connect();
  try {
    assert.equal((await a.query<{ n: number }>({ name: 'mine', text: 'select $1::int * 2 as n', values: [2] })).rows[0]?.n, 4);
    assert.equal((await b.query<{ n: number }>({ name: 'yours', text: 'select $1::int * 2 as n', values: [5] })).rows[0]?.n, 10);
    // Same name, other text in another client: no clash.
    assert.equal((await b.query<{ n: number }>({ name: 'mine', text: 'select $1::int * 3 as n', values: [5] })).rows[0]?.n, 15);
    assert.equal((await a.query<{ n: number }>({ name: 'mine', text: 'select $1::int * 2 as n', values: [7] })).rows[0]?.n, 14);
  } finally {
    await a.end();
    await b.end();
  }
});

test('SET search_path and application_name survive a server connection change', async (t) => {
  if (skip !== null) return t.skip(skip);
  const c = client({ application_name: 'pp_pool_app' });
  await c.connect();
  try {
    await c.query('set search_path = pp_other, public');
    await c.query("set application_name = 'pp_pool_renamed'");
    const moved = await onAnotherServer(c, () => c.query<{ v: string; app: string; sp: string }>("select v, current_setting('application_name') as app, current_setting('search_path') as sp from marker"));
    assert.notEqual(moved.before, moved.after);
    assert.equal(moved.value.rows[0]?.v, 'other schema');
    assert.equal(moved.value.rows[0]?.app, 'pp_pool_renamed');
    assert.equal(moved.value.rows[0]?.sp, 'pp_other, public');
  } finally {
    await c.end();
  }
  // A client that set nothing does not inherit those values.
  const d = client();
  await d.connect();
  try {
    const { rows } = await d.query<{ sp: string }>("select current_setting('search_path') as sp");
    assert.equal(rows[0]?.sp, '"$user", public');
  } finally {
    await d.end();
  }
});

test('SET LOCAL does not outlive its transaction', async (t) => {
  if (skip !== null) return t.skip(skip);
  const c = client();
  await c.connect();
  try {
    await c.query('begin');
    await c.query('set local search_path = pp_other');
    await c.query('commit');
    const moved = await onAnotherServer(c, () => c.query<{ sp: string }>("select current_setting('search_path') as sp"));
    assert.equal(moved.value.rows[0]?.sp, '"$user", public');
  } finally {
    await c.end();
  }
});

test('a transaction keeps its server connection until ReadyForQuery says idle', async (t) => {
  if (skip !== null) return t.skip(skip);
  const c = client();
  await c.connect();
  try {
    await c.query('begin');
    const inside = await pid(c);
    // Other clients run meanwhile; the transaction's connection is not theirs.
    const others = Array.from({ length: 4 }, () => client());
    await Promise.all(others.map((o) => o.connect()));
    const pids = await Promise.all(others.map((o) => pid(o)));
    assert.ok(!pids.includes(inside));
    assert.equal(await pid(c), inside);
    await c.query('commit');
    await Promise.all(others.map((o) => o.end()));
  } finally {
    await c.end();
  }
});

test('LISTEN is refused with 0A000 in transaction mode, simple and extended', async (t) => {
  if (skip !== null) return t.skip(skip);
  const c = client();
  await c.connect();
  try {
    await assert.rejects(c.query('listen pp_channel'), (err: { code?: string; message?: string }) => err.code === '0A000' && /LISTEN is not supported in transaction pooling mode/.test(err.message ?? ''));
    await assert.rejects(c.query({ text: '/* hi */ LISTEN pp_channel', values: [] }), (err: { code?: string }) => err.code === '0A000');
    await assert.rejects(c.query({ name: 'pp_listen', text: 'listen pp_channel', values: [] }), (err: { code?: string }) => err.code === '0A000');
    // The session goes on.
    assert.equal((await c.query<{ n: number }>('select 1 as n')).rows[0]?.n, 1);
    // Inside a transaction the refusal aborts it, as an error would.
    await c.query('begin');
    await assert.rejects(c.query('listen pp_channel'), (err: { code?: string }) => err.code === '0A000');
    await assert.rejects(c.query('select 1'), (err: { code?: string }) => err.code === '25P02');
    await c.query('rollback');
  } finally {
    await c.end();
  }
});

async function waitForActive(marker: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const rows = await pgDirect(`select pid from pg_stat_activity where state = 'active' and query like '%${marker}%' and pid <> pg_backend_pid()`);
    if (rows.length > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`query ${marker} never became active`);
}

test('cancel of a running pg_sleep reaches the server connection running it', async (t) => {
  if (skip !== null) return t.skip(skip);
  const c = client();
  await c.connect();
  try {
    const started = Date.now();
    const query = c.query('select pg_sleep(30) /* pp_pool_cancel */');
    await waitForActive('pp_pool_cancel');
    // node-postgres sends a CancelRequest with the proxy's BackendKeyData.
    const canceller = client();
    (canceller as unknown as { cancel(c: pg.Client, q: unknown): void }).cancel(c, (c as unknown as { activeQuery: unknown }).activeQuery);
    await assert.rejects(query, (err: { code?: string }) => err.code === '57014');
    assert.ok(Date.now() - started < 20000);
    assert.equal((await c.query<{ n: number }>('select 3 as n')).rows[0]?.n, 3);
  } finally {
    await c.end();
  }
});

test('the proxy key is not the server key: a cancel with the server key does nothing through the pool', async (t) => {
  if (skip !== null) return t.skip(skip);
  const c = client();
  await c.connect();
  try {
    const key = c as unknown as { processID: number };
    const server = await pid(c);
    assert.notEqual(key.processID, server, 'the client sees the proxy process id, not the server one');
  } finally {
    await c.end();
  }
});

function psql(args: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('psql', ['-X', '-q', '-A', '-t', `host=127.0.0.1 port=${(front as PoolFront).port} user=${PG_USER} dbname=${DB} sslmode=disable`, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

test('COPY in and out through the pool (psql)', async (t) => {
  if (skip !== null) return t.skip(skip);
  await pgDirect('truncate pp_copy', DB);
  const rows = Array.from({ length: 5000 }, (_, i) => `${i}\tname ${i}`).join('\n') + '\n';
  const copyIn = await psql(['-c', 'copy pp_copy from stdin'], rows);
  assert.equal(copyIn.code, 0, copyIn.stderr);
  const [count] = await pgDirect<{ n: string }>('select count(*) as n from pp_copy', DB);
  assert.equal(count?.n, '5000');
  const copyOut = await psql(['-c', 'copy (select * from pp_copy order by id) to stdout']);
  assert.equal(copyOut.code, 0, copyOut.stderr);
  assert.equal(copyOut.stdout, rows);
  // A failed COPY (bad row) fails only itself; the next one works.
  const bad = await psql(['-c', 'copy pp_copy from stdin'], 'not-a-number\tx\n');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /invalid input syntax for type integer/);
  const again = await psql(['-c', 'select count(*) from pp_copy']);
  assert.equal(again.stdout.trim(), '5000');
});

test('a client that sends garbage gets 08P01 and only it is closed', async (t) => {
  if (skip !== null) return t.skip(skip);
  const other = client();
  await other.connect();
  const socket = net.connect((front as PoolFront).port, '127.0.0.1');
  const startup = Buffer.from(`\0\0\0\0\0\x03\0\0user\0${PG_USER}\0database\0${DB}\0\0`, 'latin1');
  startup.writeUInt32BE(startup.length, 0);
  let received = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => (received = Buffer.concat([received, d])));
  socket.write(startup);
  // Wait for ReadyForQuery, then a message whose length is impossible.
  for (let i = 0; i < 500 && !received.includes(Buffer.from([0x5a, 0, 0, 0, 5, 0x49])); i++) await new Promise((r) => setTimeout(r, 10));
  socket.write(Buffer.from([0x51, 0, 0, 0, 2]));
  await new Promise((resolve) => socket.once('close', resolve));
  const text = received.toString('latin1');
  assert.match(text, /C08P01\0/);
  assert.match(text, /invalid message length 2/);
  assert.equal((await other.query<{ n: number }>('select 4 as n')).rows[0]?.n, 4);
  await other.end();
});

test('a client leaving mid-transaction: its server is rolled back and reused, not closed', async (t) => {
  if (skip !== null) return t.skip(skip);
  const pool = () => [...(front as PoolFront).manager.pools.values()][0];
  const a = client();
  await a.connect();
  await a.query('begin');
  await a.query('create table pp_left_behind (x int)');
  const closed = pool()?.stats.serversClosed ?? 0;
  await a.end();
  // The ROLLBACK is one round trip away: wait until the server is back in the pool.
  for (let i = 0; i < 10_000 && (pool()?.active ?? 0) > 0; i++) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(pool()?.active, 0, 'the server came back');
  assert.equal(pool()?.stats.serversClosed, closed, 'no server connection was closed');
  const b = client();
  await b.connect();
  try {
    const r = await b.query<{ n: string }>("select count(*)::text as n from pg_class where relname = 'pp_left_behind'");
    assert.equal(r.rows[0]?.n, '0', 'the transaction was rolled back');
  } finally {
    await b.end();
  }
});

test('a client leaving right after a SET: its server comes back once the read-back answers, not closed', async (t) => {
  if (skip !== null) return t.skip(skip);
  const pool = () => [...(front as PoolFront).manager.pools.values()][0];
  const closed = pool()?.stats.serversClosed ?? 0;
  for (let i = 0; i < 5; i++) {
    const a = client();
    await a.connect();
    await a.query("set statement_timeout = '5s'");
    // The Terminate follows the SET's ReadyForQuery at once: it arrives while the pool reads the parameters back.
    await a.end();
  }
  for (let i = 0; i < 10_000 && (pool()?.active ?? 0) > 0; i++) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(pool()?.active, 0, 'the server came back');
  assert.equal(pool()?.stats.serversClosed, closed, 'no server connection was closed');
});
