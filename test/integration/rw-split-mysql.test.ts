/**
 * The MySQL read/write split against a real MariaDB primary and replica
 * started by the test (test/helpers/mariadb-replica.ts): reads outside
 * transactions run on the replica (@@server_id 2), writes, transactions,
 * FOR UPDATE, pinned sessions and the binary protocol on the primary
 * (@@server_id 1); a replica past maxReplicaLagMs (MASTER_DELAY) or stopped
 * is skipped with no client error; read-your-writes. Driven by mysql2
 * (query and execute), the mariadb CLI and sysbench oltp_read_write.
 * Under CI=true a missing mariadbd / mariadb / sysbench fails.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import mariadb from 'mariadb';
import mysql from 'mysql2/promise';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { startMariadbReplicaPair } from '../helpers/mariadb-replica.ts';
import type { MariadbReplicaPair } from '../helpers/mariadb-replica.ts';

const run = promisify(execFile);
const DB = 'pp_rw';
const BACKEND = 'pp_rw_backend';
const BACKEND_PASSWORD = 'pp-rw-backend-secret';
const APP = 'app';
const APP_PASSWORD = 'app-secret';
/** A route without replicas on the same listeners: the usual relay. */
const PLAIN_DB = 'pp_rw_plain';
/** A split route whose tenant is limited to 1 connection (limits.tenants). */
const LIMITED_DB = 'pp_rw_limited';
const PRIMARY_ID = 1;
const REPLICA_ID = 2;

let pair: MariadbReplicaPair | null = null;
let proxy: RunningCli | undefined;
let skip: string | null = null;

async function binaryMissing(name: string): Promise<string | null> {
  try {
    await run(name, ['--version']);
    return null;
  } catch {
    const why = `${name} is not installed`;
    if (process.env.CI === 'true') throw new Error(`${why} (CI=true: this test needs it)`);
    return why;
  }
}

before(async () => {
  pair = await startMariadbReplicaPair();
  if (pair === null) {
    skip = 'no throwaway MariaDB primary + replica';
    return;
  }
  await pair.createUser(BACKEND, BACKEND_PASSWORD, DB);
  await pair.createUser(BACKEND, BACKEND_PASSWORD, PLAIN_DB);
  await pair.createUser(BACKEND, BACKEND_PASSWORD, LIMITED_DB);
  // The lag probe runs SHOW REPLICA STATUS as backendUser.
  await pair.primary.query(`GRANT SLAVE MONITOR ON *.* TO '${BACKEND}'@'%'`);
  await pair.primary.query(`CREATE TABLE ${DB}.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64))`);
  await pair.waitReplicated();
  const auth = { users: { [APP]: { password: APP_PASSWORD } }, backendUser: { user: BACKEND, password: BACKEND_PASSWORD } };
  const file = await writeConfig({
    workers: 1,
    security: { allowBackends: ['127.0.0.0/8'] },
    routes: { [DB]: { primary: pair.primary.endpoint, replicas: [pair.replica.endpoint] }, [PLAIN_DB]: pair.primary.endpoint, [LIMITED_DB]: { primary: pair.primary.endpoint, replicas: [pair.replica.endpoint] } },
    limits: { tenants: { [LIMITED_DB]: { maxConnections: 1 } } },
    listeners: [
      { name: 'split', protocol: 'mysql', host: '127.0.0.1', port: 0, auth, readWriteSplit: { maxReplicaLagMs: 1000, lagProbeIntervalMs: 200 } },
      { name: 'ryw', protocol: 'mysql', host: '127.0.0.1', port: 0, auth, readWriteSplit: { maxReplicaLagMs: 1000, lagProbeIntervalMs: 200, readAfterWriteMs: 1500 } },
    ],
  });
  proxy = await startCli(['--config', file]);
  // Ready once the probes found the replica healthy.
  for (const listener of ['split', 'ryw']) await untilServer(listener, REPLICA_ID, 15_000);
});

after(async () => {
  await proxy?.stop();
  await pair?.stop();
});

function connect(listener = 'split'): Promise<mysql.Connection> {
  if (proxy === undefined) throw new Error('proxy not started');
  return mysql.createConnection({ host: '127.0.0.1', port: proxy.port(listener), user: APP, password: APP_PASSWORD, database: DB });
}

async function serverId(conn: mysql.Connection, how: 'query' | 'execute' = 'query'): Promise<number> {
  const [rows] = how === 'query' ? await conn.query<mysql.RowDataPacket[]>('SELECT @@server_id AS s') : await conn.execute<mysql.RowDataPacket[]>('SELECT @@server_id AS s');
  return Number((rows[0] as { s: number }).s);
}

/** Polls new sessions until a read runs on `id`. */
async function untilServer(listener: string, id: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const conn = await connect(listener);
    try {
      if ((await serverId(conn)) === id) return;
    } finally {
      await conn.end();
    }
    if (Date.now() > until) throw new Error(`reads on ${listener} did not reach server_id ${id} within ${timeoutMs} ms`);
    await delay(100);
  }
}

test('reads outside a transaction run on the replica, writes on the primary', async (t) => {
  if (skip !== null) return t.skip(skip);
  const conn = await connect();
  try {
    assert.equal(await serverId(conn), REPLICA_ID);
    const [result] = await conn.query<mysql.ResultSetHeader>("INSERT INTO t (v) VALUES ('w1')");
    // On the primary at once (the replica may follow later).
    const rows = await pair!.primary.query<{ v: string }>(`SELECT v FROM ${DB}.t WHERE id = ?`, [result.insertId]);
    assert.equal(rows[0]?.v, 'w1');
    assert.equal(await serverId(conn), REPLICA_ID);
    const [ro] = await conn.query<mysql.RowDataPacket[]>('SELECT @@read_only AS r, @@server_id AS s, 1 + 1 AS two');
    assert.equal(Number((ro[0] as { s: number }).s), REPLICA_ID);
  } finally {
    await conn.end();
  }
});

test('every statement of BEGIN ... COMMIT runs on the primary; a SELECT inside sees the uncommitted insert', async (t) => {
  if (skip !== null) return t.skip(skip);
  const conn = await connect();
  try {
    await conn.query('BEGIN');
    assert.equal(await serverId(conn), PRIMARY_ID);
    const [result] = await conn.query<mysql.ResultSetHeader>("INSERT INTO t (v) VALUES ('in-tx')");
    const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT v FROM t WHERE id = ?', [result.insertId]);
    assert.equal((rows[0] as { v: string } | undefined)?.v, 'in-tx');
    // Nobody else sees it yet.
    assert.equal((await pair!.primary.query(`SELECT v FROM ${DB}.t WHERE id = ?`, [result.insertId])).length, 0);
    await conn.query('COMMIT');
    assert.equal(await serverId(conn), REPLICA_ID);
    // START TRANSACTION READ ONLY may run on a replica as a whole.
    await conn.query('START TRANSACTION READ ONLY');
    assert.equal(await serverId(conn), REPLICA_ID);
    await conn.query('COMMIT');
  } finally {
    await conn.end();
  }
});

test('SELECT ... FOR UPDATE and SELECTs of functions not known read-only run on the primary', async (t) => {
  if (skip !== null) return t.skip(skip);
  const conn = await connect();
  try {
    const [a] = await conn.query<mysql.RowDataPacket[]>('SELECT @@server_id AS s FROM t LIMIT 1 FOR UPDATE');
    assert.equal(Number((a[0] as { s: number }).s), PRIMARY_ID);
    const [b] = await conn.query<mysql.RowDataPacket[]>('SELECT @@server_id AS s, LAST_INSERT_ID() AS l');
    assert.equal(Number((b[0] as { s: number }).s), PRIMARY_ID);
    assert.equal(await serverId(conn), REPLICA_ID);
  } finally {
    await conn.end();
  }
});

test('a temporary table pins the session to the primary', async (t) => {
  if (skip !== null) return t.skip(skip);
  const conn = await connect();
  try {
    assert.equal(await serverId(conn), REPLICA_ID);
    await conn.query('CREATE TEMPORARY TABLE tmp (x INT)');
    await conn.query('INSERT INTO tmp VALUES (7)');
    const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT x FROM tmp');
    assert.equal(Number((rows[0] as { x: number }).x), 7);
    assert.equal(await serverId(conn), PRIMARY_ID);
  } finally {
    await conn.end();
  }
});

test('autocommit=0 keeps the session on the primary until autocommit is back; session SETs are replayed on the replica', async (t) => {
  if (skip !== null) return t.skip(skip);
  const conn = await connect();
  try {
    await conn.query('SET autocommit = 0');
    assert.equal(await serverId(conn), PRIMARY_ID);
    await conn.query("INSERT INTO t (v) VALUES ('ac0')");
    assert.equal(await serverId(conn), PRIMARY_ID);
    await conn.query('SET autocommit = 1');
    assert.equal(await serverId(conn), REPLICA_ID);
    await conn.query("SET SESSION sql_mode = 'ANSI_QUOTES'");
    const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT @@server_id AS s, @@sql_mode AS m');
    assert.deepEqual({ s: Number((rows[0] as { s: number }).s), m: (rows[0] as { m: string }).m }, { s: REPLICA_ID, m: 'ANSI_QUOTES' });
    // A user variable pins.
    await conn.query('SET @x = 5');
    const [v] = await conn.query<mysql.RowDataPacket[]>('SELECT @x AS x, @@server_id AS s');
    assert.deepEqual({ x: Number((v[0] as { x: number }).x), s: Number((v[0] as { s: number }).s) }, { x: 5, s: PRIMARY_ID });
    assert.equal(await serverId(conn), PRIMARY_ID);
  } finally {
    await conn.end();
  }
});

test('mysql2 execute (binary protocol) runs on the primary; USE of the same route applies to both connections', async (t) => {
  if (skip !== null) return t.skip(skip);
  const conn = await connect();
  try {
    assert.equal(await serverId(conn, 'execute'), PRIMARY_ID);
    const [result] = await conn.execute<mysql.ResultSetHeader>('INSERT INTO t (v) VALUES (?)', ['prepared']);
    const [rows] = await conn.execute<mysql.RowDataPacket[]>('SELECT v FROM t WHERE id = ?', [result.insertId]);
    assert.equal((rows[0] as { v: string }).v, 'prepared');
    assert.equal(await serverId(conn), REPLICA_ID);
    await conn.query(`USE ${DB}`);
    const [d] = await conn.query<mysql.RowDataPacket[]>('SELECT DATABASE() AS d, @@server_id AS s');
    assert.deepEqual({ d: (d[0] as { d: string }).d, s: Number((d[0] as { s: number }).s) }, { d: DB, s: REPLICA_ID });
    // A database routed nowhere (or elsewhere) is refused as by the use guard.
    await assert.rejects(conn.query('USE mysql'), (err: { errno?: number }) => err.errno === 1044 || err.errno === 1049);
    assert.equal(await serverId(conn), REPLICA_ID);
  } finally {
    await conn.end();
  }
});

test('a route without replicas on a split listener is relayed to its primary as usual', async (t) => {
  if (skip !== null) return t.skip(skip);
  const conn = await mysql.createConnection({ host: '127.0.0.1', port: proxy!.port('split'), user: APP, password: APP_PASSWORD, database: PLAIN_DB });
  try {
    const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT @@server_id AS s, DATABASE() AS d, CURRENT_USER() AS u');
    assert.deepEqual(rows[0], { s: PRIMARY_ID, d: PLAIN_DB, u: `${BACKEND}@%` });
  } finally {
    await conn.end();
  }
});

test('tenant limits hold on split sessions: a tenant limited to 1 connection gets ER_CON_COUNT_ERROR on its 2nd, and its place frees when the first leaves', async (t) => {
  if (skip !== null) return t.skip(skip);
  if (proxy === undefined) throw new Error('proxy not started');
  const open = (): Promise<mysql.Connection> => mysql.createConnection({ host: '127.0.0.1', port: proxy?.port('split') ?? 0, user: APP, password: APP_PASSWORD, database: LIMITED_DB });
  const first = await open();
  let firstOpen = true;
  try {
    await assert.rejects(open(), (err: { errno?: number; message?: string }) => err.errno === 1040 && /too many connections for tenant/i.test(err.message ?? ''));
    await first.end();
    firstOpen = false;
    const until = Date.now() + 5000;
    for (;;) {
      try {
        const again = await open();
        await again.end();
        break;
      } catch (err) {
        if (Date.now() > until) throw err;
        await delay(50);
      }
    }
  } finally {
    if (firstOpen) await first.end();
  }
});

test('the mariadb CLI: a read on the replica, a transaction on the primary', async (t) => {
  if (skip !== null) return t.skip(skip);
  const missing = await binaryMissing('mariadb');
  if (missing !== null) return t.skip(missing);
  const { stdout } = await run('mariadb', ['-h', '127.0.0.1', '-P', String(proxy!.port('split')), '-u', APP, `-p${APP_PASSWORD}`, DB, '-N', '-B', '-e', 'SELECT @@server_id; BEGIN; SELECT @@server_id; COMMIT; SELECT COUNT(*) > 0 FROM t']);
  assert.deepEqual(stdout.trim().split('\n'), [String(REPLICA_ID), String(PRIMARY_ID), '1']);
});

test('the mariadb npm driver, pipelining: commands queued behind each other each go where they belong', async (t) => {
  if (skip !== null) return t.skip(skip);
  const conn = await mariadb.createConnection({ host: '127.0.0.1', port: proxy!.port('split'), user: APP, password: APP_PASSWORD, database: DB, pipelining: true });
  try {
    const id = (rows: Array<{ s: unknown }>): number => Number(rows[0]?.s);
    const [a, , b, c, d] = await Promise.all([
      conn.query('SELECT @@server_id AS s'),
      conn.query("INSERT INTO t (v) VALUES ('pipelined')"),
      conn.query('SELECT @@server_id AS s'),
      conn.query('SELECT @@server_id AS s FROM t LIMIT 1 FOR UPDATE'),
      conn.execute('SELECT @@server_id AS s'),
    ]);
    assert.deepEqual([id(a), id(b), id(c), id(d)], [REPLICA_ID, REPLICA_ID, PRIMARY_ID, PRIMARY_ID]);
    await conn.beginTransaction();
    assert.equal(id(await conn.query('SELECT @@server_id AS s')), PRIMARY_ID);
    await conn.commit();
  } finally {
    await conn.end();
  }
});

test('read-your-writes: after a committed write, reads go to the primary for readAfterWriteMs', async (t) => {
  if (skip !== null) return t.skip(skip);
  const conn = await connect('ryw');
  try {
    assert.equal(await serverId(conn), REPLICA_ID);
    const [result] = await conn.query<mysql.ResultSetHeader>("INSERT INTO t (v) VALUES ('ryw')");
    const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT v, @@server_id AS s FROM t WHERE id = ?', [result.insertId]);
    assert.deepEqual({ v: (rows[0] as { v: string }).v, s: Number((rows[0] as { s: number }).s) }, { v: 'ryw', s: PRIMARY_ID });
    await delay(1600);
    assert.equal(await serverId(conn), REPLICA_ID);
  } finally {
    await conn.end();
  }
});

test('sysbench oltp_read_write through the split: zero errors', async (t) => {
  if (skip !== null) return t.skip(skip);
  const missing = await binaryMissing('sysbench');
  if (missing !== null) return t.skip(missing);
  const common = ['--db-driver=mysql', '--mysql-host=127.0.0.1', `--mysql-port=${proxy!.port('split')}`, `--mysql-user=${APP}`, `--mysql-password=${APP_PASSWORD}`, `--mysql-db=${DB}`, '--tables=1', '--table-size=10000'];
  await run('sysbench', ['oltp_read_write', ...common, 'prepare'], { timeout: 60_000 });
  // Transactions (every statement on the primary) with text and prepared statements; then without
  // transactions, so its reads run on the replica (one thread: sysbench's DELETE + INSERT of one id race between threads outside transactions).
  for (const options of [['--threads=2', '--db-ps-mode=disable'], ['--threads=2', '--db-ps-mode=auto'], ['--threads=1', '--db-ps-mode=disable', '--skip_trx=on']]) {
    const { stdout } = await run('sysbench', ['oltp_read_write', ...common, '--time=3', ...options, 'run'], { timeout: 60_000 });
    const errors = /ignored errors:\s+(\d+)/.exec(stdout);
    const reconnects = /reconnects:\s+(\d+)/.exec(stdout);
    const transactions = /transactions:\s+(\d+)/.exec(stdout);
    assert.equal(errors?.[1], '0', stdout);
    assert.equal(reconnects?.[1], '0', stdout);
    assert.ok(Number(transactions?.[1]) > 0, stdout);
  }
  await run('sysbench', ['oltp_read_write', ...common, 'cleanup'], { timeout: 60_000 });
});

test('a replica past maxReplicaLagMs (MASTER_DELAY) is skipped: reads go to the primary', async (t) => {
  if (skip !== null) return t.skip(skip);
  const replica = pair!.replica;
  await replica.query('STOP SLAVE');
  await replica.query('CHANGE MASTER TO MASTER_DELAY = 5');
  await replica.query('START SLAVE');
  try {
    // Healthy and caught up first; then a write the replica holds back for 5 s.
    await untilServer('split', REPLICA_ID, 10_000);
    await pair!.primary.query(`INSERT INTO ${DB}.t (v) VALUES ('lagging')`);
    await untilServer('split', PRIMARY_ID, 10_000);
    // Skipped for its lag: replication runs, it is behind.
    const status = await pair!.replicaStatus();
    assert.equal(status.sqlRunning, 'Yes');
    assert.ok(status.secondsBehind !== null && status.secondsBehind >= 1, JSON.stringify(status));
  } finally {
    await replica.query('STOP SLAVE');
    await replica.query('CHANGE MASTER TO MASTER_DELAY = 0');
    await replica.query('START SLAVE');
  }
  await pair!.waitReplicated();
  await untilServer('split', REPLICA_ID, 10_000);
});

test('a stopped replica: reads fall back to the primary with no client error', async (t) => {
  if (skip !== null) return t.skip(skip);
  const conn = await connect();
  try {
    assert.equal(await serverId(conn), REPLICA_ID);
    await pair!.replica.stop();
    assert.equal(await serverId(conn), PRIMARY_ID);
    assert.equal(await serverId(conn), PRIMARY_ID);
    const fresh = await connect();
    try {
      assert.equal(await serverId(fresh), PRIMARY_ID);
    } finally {
      await fresh.end();
    }
  } finally {
    await conn.end();
  }
});
