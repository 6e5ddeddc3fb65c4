/**
 * The read/write split on a pooled postgres listener (issue 17), through
 * the real CLI, against a real primary and a real streaming standby
 * (test/helpers/postgres-replica.ts: its own primary and standby in temp
 * directories, never the machine's shared server). Which server ran a
 * statement is the server's own answer: pg_is_in_recovery() is true only
 * on the standby.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { request } from 'undici';
import type { ProxyStats } from '../../src/admin/source.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { parsePrometheus, sample } from '../helpers/prometheus.ts';
import { startPostgresReplica, waitUntil, type PostgresReplicaPair } from '../helpers/postgres-replica.ts';

const run = promisify(execFile);
const USER = 'app';
const PASSWORD = 'rw secret';
const DB = 'shop';

let pair: PostgresReplicaPair | null = null;
let proxy: RunningCli | undefined;
let admin = '';
let skip: string | null = null;

/** psql and pgbench must be there; under CI=true their absence fails. */
async function binariesMissing(): Promise<string | null> {
  for (const bin of ['psql', 'pgbench']) {
    try {
      await run(bin, ['--version']);
    } catch {
      const why = `${bin} is not installed`;
      if (process.env.CI === 'true') throw new Error(`${why} (CI=true: this test needs it)`);
      return why;
    }
  }
  return null;
}

function client(listener = 'pg'): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port: (proxy as RunningCli).port(listener), user: USER, password: PASSWORD, database: DB });
}

async function onStandby(c: pg.Client, sql = 'select pg_is_in_recovery() as r', values?: unknown[]): Promise<boolean> {
  const result = await c.query<{ r: boolean }>(values === undefined ? sql : { text: sql, values });
  return result.rows[0]?.r as boolean;
}

/** The lag probe's first round: reads reach the standby. */
async function waitForReplicaReads(listener: string): Promise<void> {
  const c = client(listener);
  await c.connect();
  try {
    await waitUntil(`reads through ${listener} to reach the standby`, () => onStandby(c), 15_000);
  } finally {
    await c.end();
  }
}

async function stats(): Promise<ProxyStats> {
  return (await (await request(`${admin}/api/stats`)).body.json()) as ProxyStats;
}

describe('read/write split, postgres', () => {
  before(async () => {
    skip = await binariesMissing();
    if (skip !== null) return;
    pair = await startPostgresReplica({ roles: [{ name: USER, password: PASSWORD, database: DB }] });
    if (pair === null) {
      skip = 'no throwaway PostgreSQL primary + standby (see stderr)';
      return;
    }
    const { primary, standby } = pair;
    await primary.query(`create table items (id int primary key, name text); create sequence item_ids; alter table items owner to ${USER}; alter sequence item_ids owner to ${USER}; insert into items values (1, 'one')`, [], DB);
    await standby.waitForReplay();
    const file = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      admin: { host: '127.0.0.1', port: 0 },
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: { [DB]: { primary: primary.endpoint, replicas: [standby.endpoint] } },
      listeners: [
        {
          name: 'pg',
          protocol: 'postgres',
          host: '127.0.0.1',
          port: 0,
          auth: { users: { [USER]: { password: PASSWORD } } },
          pool: { mode: 'transaction', size: 4 },
          readWriteSplit: { maxReplicaLagMs: 1000, lagProbeIntervalMs: 100 },
        },
        {
          // md5: a hand-written client pipelines its first exchange behind the login, in pieces.
          name: 'md5',
          protocol: 'postgres',
          host: '127.0.0.1',
          port: 0,
          auth: { method: 'md5', users: { [USER]: { password: PASSWORD } } },
          pool: { mode: 'transaction', size: 2 },
          readWriteSplit: { lagProbeIntervalMs: 100 },
        },
        {
          // Read-your-writes: a lagging replica is still used (maxReplicaLagMs is huge), except right after a write.
          name: 'raw',
          protocol: 'postgres',
          host: '127.0.0.1',
          port: 0,
          auth: { users: { [USER]: { password: PASSWORD } } },
          pool: { mode: 'transaction', size: 4 },
          readWriteSplit: { maxReplicaLagMs: 3_600_000, readAfterWriteMs: 1500, lagProbeIntervalMs: 100 },
        },
      ],
    });
    proxy = await startCli(['--config', file]);
    admin = `http://127.0.0.1:${(proxy.ready as unknown as { admin: AddressInfo }).admin.port}`;
    await waitForReplicaReads('pg');
  });

  after(async () => {
    await proxy?.stop();
    await pair?.stop();
  });

  it('reads outside a transaction run on the standby: pg simple, extended, named prepared', async (t) => {
    if (skip !== null) return t.skip(skip);
    const c = client();
    await c.connect();
    try {
      assert.equal(await onStandby(c), true, 'simple query');
      assert.equal(await onStandby(c, 'select pg_is_in_recovery() as r, $1::int as n', [7]), true, 'extended, unnamed');
      const named = { name: 'rw_named', text: 'select pg_is_in_recovery() as r, name from items where id = $1' };
      assert.deepEqual((await c.query({ ...named, values: [1] })).rows, [{ r: true, name: 'one' }]);
      assert.deepEqual((await c.query({ ...named, values: [1] })).rows, [{ r: true, name: 'one' }], 'Bind of the named statement, prepared again on whichever server');
    } finally {
      await c.end();
    }
  });

  it('writes run on the primary: simple and extended', async (t) => {
    if (skip !== null) return t.skip(skip);
    const c = client();
    await c.connect();
    try {
      await c.query("insert into items values (2, 'two')");
      await c.query('insert into items values ($1, $2)', [3, 'three']);
      const rows = await (pair as PostgresReplicaPair).primary.query<{ n: number }>('select count(*)::int as n from items where id in (2, 3)', [], DB);
      assert.equal(rows[0]?.n, 2);
      // A data-modifying CTE is no read.
      assert.equal((await c.query<{ r: boolean }>("with x as (insert into items values (4, 'four') returning id) select pg_is_in_recovery() as r from x")).rows[0]?.r, false);
    } finally {
      await c.end();
    }
  });

  it('BEGIN ... COMMIT runs on the primary: a SELECT inside sees the uncommitted insert', async (t) => {
    if (skip !== null) return t.skip(skip);
    const c = client();
    await c.connect();
    try {
      await c.query('begin');
      await c.query("insert into items values (10, 'ten')");
      assert.deepEqual((await c.query('select pg_is_in_recovery() as r, name from items where id = 10')).rows, [{ r: false, name: 'ten' }]);
      assert.deepEqual((await c.query('select pg_is_in_recovery() as r, name from items where id = $1', [10])).rows, [{ r: false, name: 'ten' }]);
      await c.query('commit');
      // A failed transaction ('E') stays on its server until ROLLBACK.
      await c.query('begin');
      await assert.rejects(c.query('select 1/0'), { code: '22012' });
      await assert.rejects(c.query('select 1'), { code: '25P02' });
      await c.query('rollback');
    } finally {
      await c.end();
    }
  });

  it('BEGIN READ ONLY puts the whole transaction on the standby', async (t) => {
    if (skip !== null) return t.skip(skip);
    const c = client();
    await c.connect();
    try {
      await c.query('begin read only');
      const first = await c.query<{ r: boolean; pid: number }>('select pg_is_in_recovery() as r, pg_backend_pid() as pid');
      const second = await c.query<{ r: boolean; pid: number }>('select pg_is_in_recovery() as r, pg_backend_pid() as pid');
      await c.query('commit');
      assert.equal(first.rows[0]?.r, true);
      assert.equal(second.rows[0]?.pid, first.rows[0]?.pid, 'one server connection for the transaction');
    } finally {
      await c.end();
    }
  });

  it('SELECT ... FOR UPDATE and nextval() run on the primary', async (t) => {
    if (skip !== null) return t.skip(skip);
    const c = client();
    await c.connect();
    try {
      assert.equal((await c.query<{ r: boolean }>('select pg_is_in_recovery() as r from items where id = 1 for update')).rows[0]?.r, false);
      assert.equal((await c.query<{ r: boolean }>('select pg_is_in_recovery() as r from items where id = $1 for share', [1])).rows[0]?.r, false);
      const seq = await c.query<{ r: boolean; n: string }>("select pg_is_in_recovery() as r, nextval('item_ids') as n");
      assert.equal(seq.rows[0]?.r, false);
      assert.equal(seq.rows[0]?.n, '1');
    } finally {
      await c.end();
    }
  });

  it('a temporary table pins the session to the primary (its connection) for the rest of the session', async (t) => {
    if (skip !== null) return t.skip(skip);
    const c = client();
    await c.connect();
    const other = client();
    await other.connect();
    try {
      assert.equal(await onStandby(c), true);
      await c.query('create temp table scratch (a int)');
      await c.query('insert into scratch values (1)');
      // Another client's transaction in between would take a free primary connection: the pinned session keeps its own.
      await other.query("insert into items values (20, 'twenty')");
      assert.deepEqual((await c.query('select pg_is_in_recovery() as r, count(*)::int as n from scratch')).rows, [{ r: false, n: 1 }]);
      assert.equal(await onStandby(c), false, 'plain reads too, for the rest of the session');
      assert.equal(await onStandby(other), true, 'other sessions are not pinned');
      const split = (await stats()).readWriteSplit?.find((s) => s.listener === 'pg');
      assert.equal(split?.pinnedSessions, 1);
    } finally {
      await c.end();
      await other.end();
    }
    // The pinned connection went back to the pool reset (DISCARD ALL): no temp table left behind.
    const c2 = client();
    await c2.connect();
    try {
      for (let i = 0; i < 4; i++) await c2.query('begin; select 1; commit');
      await c2.query('begin');
      await assert.rejects(c2.query('select * from scratch'), { code: '42P01' });
      await c2.query('rollback');
    } finally {
      await c2.end();
    }
  });

  it('a session SET of a parameter the pool carries does not pin: the standby runs with it', async (t) => {
    if (skip !== null) return t.skip(skip);
    const c = client();
    await c.connect();
    try {
      await c.query("set search_path = pg_catalog, public; set statement_timeout = '7s'");
      const rows = (await c.query<{ r: boolean; p: string; t: string }>("select pg_is_in_recovery() as r, current_setting('search_path') as p, current_setting('statement_timeout') as t")).rows;
      assert.deepEqual(rows, [{ r: true, p: 'pg_catalog, public', t: '7s' }]);
      // One the pool does not carry pins.
      await c.query('set work_mem = 2048');
      assert.equal(await onStandby(c), false);
    } finally {
      await c.end();
    }
  });

  it('an exchange sent behind the login and split across writes is answered (the session waits for its Sync, then resumes the client)', async (t) => {
    if (skip !== null) return t.skip(skip);
    const socket = net.connect((proxy as RunningCli).port('md5'), '127.0.0.1');
    await once(socket, 'connect');
    let received = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
    const until = (what: string, test: () => boolean): Promise<void> => waitUntil(what, () => Promise.resolve(test()), 10_000);
    try {
      socket.write(startup(USER, DB));
      await until('the md5 challenge', () => received.length >= 13 && received[0] === 0x52 && received.readInt32BE(5) === 5);
      const salt = received.subarray(9, 13);
      received = Buffer.alloc(0);
      const inner = createHash('md5').update(PASSWORD + USER).digest('hex');
      const answer = `md5${createHash('md5').update(inner).update(salt).digest('hex')}`;
      // The password and, in the same write, the first half of an exchange: Parse + Bind + Execute, no Sync yet.
      const exchange = Buffer.concat([frontend('P', cstr(''), cstr('select pg_is_in_recovery()::text as r'), Buffer.from([0, 0])), frontend('B', cstr(''), cstr(''), Buffer.from([0, 0, 0, 0, 0, 0])), frontend('E', cstr(''), Buffer.from([0, 0, 0, 0]))]);
      socket.write(Buffer.concat([frontend('p', cstr(answer)), exchange]));
      await until('the greeting', () => received.includes(Buffer.from([0x5a, 0, 0, 0, 5, 0x49])));
      received = Buffer.alloc(0);
      socket.write(frontend('S'));
      await until('the answer and ReadyForQuery', () => received.includes(Buffer.from([0x5a, 0, 0, 0, 5, 0x49])));
      assert.ok(received.includes(Buffer.from('SELECT 1')), received.toString('latin1'));
    } finally {
      socket.destroy();
    }
  });

  it('psql: reads on the standby, writes on the primary', async (t) => {
    if (skip !== null) return t.skip(skip);
    const env = { ...process.env, PGPASSWORD: PASSWORD };
    const args = ['-X', '-A', '-t', '-h', '127.0.0.1', '-p', String((proxy as RunningCli).port('pg')), '-U', USER, '-d', DB];
    const read = await run('psql', [...args, '-c', 'select pg_is_in_recovery()'], { env });
    assert.equal(read.stdout.trim(), 't');
    const write = await run('psql', [...args, '-c', "insert into items values (30, 'thirty') returning pg_is_in_recovery()"], { env });
    assert.match(write.stdout, /^f$/m);
  });

  it('pgbench -S (simple and prepared) through the split: zero errors, the reads on the standby', async (t) => {
    if (skip !== null) return t.skip(skip);
    const { primary, standby } = pair as PostgresReplicaPair;
    await run('pgbench', ['-i', '-q', '-s', '1', '-h', primary.socketDir, '-p', String(primary.port), '-U', 'postgres', DB]);
    await primary.query(`alter table pgbench_accounts owner to ${USER}; alter table pgbench_branches owner to ${USER}; alter table pgbench_tellers owner to ${USER}; alter table pgbench_history owner to ${USER}`, [], DB);
    await standby.waitForReplay();
    const before = replicaReads(await stats());
    for (const mode of ['simple', 'prepared']) {
      const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
        const child = spawn('pgbench', ['-n', '-S', '-M', mode, '-c', '4', '-j', '4', '-T', '2', '-h', '127.0.0.1', '-p', String((proxy as RunningCli).port('pg')), '-U', USER, DB], {
          env: { ...process.env, PGPASSWORD: PASSWORD },
        });
        let text = '';
        child.stdout.setEncoding('utf8').on('data', (s: string) => (text += s));
        child.stderr.setEncoding('utf8').on('data', (s: string) => (text += s));
        child.once('exit', (code) => resolve({ code, text }));
      });
      assert.equal(out.code, 0, out.text);
      assert.match(out.text, /number of failed transactions: 0 /, out.text);
    }
    const reads = replicaReads(await stats()) - before;
    assert.ok(reads > 100, `${reads} statements on the replica`);
  });

  it('read-your-writes: right after a write its reads go to the primary, then back to the (lagging) standby', async (t) => {
    if (skip !== null) return t.skip(skip);
    const { standby } = pair as PostgresReplicaPair;
    await waitForReplicaReads('raw');
    await standby.pauseReplay();
    const c = client('raw');
    await c.connect();
    try {
      await c.query("insert into items values (40, 'forty')");
      const seen = await c.query<{ r: boolean; name: string }>('select pg_is_in_recovery() as r, name from items where id = 40');
      assert.deepEqual(seen.rows, [{ r: false, name: 'forty' }], 'sees its own write, on the primary');
      await new Promise((resolve) => setTimeout(resolve, 1600));
      const later = await c.query<{ r: boolean; name: string }>('select pg_is_in_recovery() as r, name from items where id = 40');
      assert.deepEqual(later.rows, [], 'after readAfterWriteMs: the paused standby, which has not replayed it');
      assert.equal(await onStandby(c), true);
    } finally {
      await c.end();
      await standby.resumeReplay();
    }
  });

  it('a write after a quiet spell, caught before the standby replayed it: its lag counts from its arrival, not from the last replayed commit', async (t) => {
    if (skip !== null) return t.skip(skip);
    const { primary, standby } = pair as PostgresReplicaPair;
    await waitForReplicaReads('pg');
    await standby.waitForReplay();
    const quietMs = 3000;
    await new Promise((resolve) => setTimeout(resolve, quietMs));
    await standby.pauseReplay();
    try {
      await primary.query("insert into items values (60, 'sixty')", [], DB);
      let lagMs = 0;
      await waitUntil('the lag probe to see the standby behind', async () => {
        lagMs = (await stats()).readWriteSplit?.find((s) => s.listener === 'pg')?.routes[0]?.replicas[0]?.lagMs ?? 0;
        return lagMs > 0;
      }, 10_000);
      // now() - pg_last_xact_replay_timestamp() alone says >= 3000 ms here; the probe that first sees the gap, ~100-200 ms.
      assert.ok(lagMs < quietMs - 500, `lag ${lagMs} ms: the quiet spell counted as lag`);
    } finally {
      await standby.resumeReplay();
    }
  });

  it('a standby past maxReplicaLagMs (replay paused) is skipped; back once it catches up', async (t) => {
    if (skip !== null) return t.skip(skip);
    const { primary, standby } = pair as PostgresReplicaPair;
    await waitForReplicaReads('pg');
    await standby.pauseReplay();
    const c = client();
    await c.connect();
    try {
      await primary.query("insert into items values (50, 'fifty')", [], DB);
      // Lag grows past 1000 ms; the probe (every 100 ms) sees it.
      await waitUntil('reads to leave the lagging standby', async () => !(await onStandby(c)), 10_000);
      const row = (await stats()).readWriteSplit?.find((s) => s.listener === 'pg')?.routes[0]?.replicas[0];
      assert.ok(row !== undefined && row.lagMs !== null && row.lagMs > 1000, JSON.stringify(row));
      await standby.resumeReplay();
      await waitUntil('reads to return to the standby', () => onStandby(c), 10_000);
    } finally {
      await c.end();
      await standby.resumeReplay();
    }
  });

  it('/metrics: statements by target and reason, replica lag and up', async (t) => {
    if (skip !== null) return t.skip(skip);
    const metrics = parsePrometheus(await (await request(`${admin}/metrics`)).body.text());
    assert.ok(sample(metrics, 'polyproxy_rw_statements_total', { listener: 'pg', target: 'replica', reason: 'read' }) > 0);
    assert.ok(sample(metrics, 'polyproxy_rw_statements_total', { listener: 'pg', target: 'primary', reason: 'write' }) > 0);
    assert.ok(sample(metrics, 'polyproxy_rw_statements_total', { listener: 'pg', target: 'primary', reason: 'pinned' }) > 0);
    assert.ok(sample(metrics, 'polyproxy_rw_statements_total', { listener: 'raw', target: 'primary', reason: 'read-after-write' }) > 0);
    const endpoint = (pair as PostgresReplicaPair).standby.endpoint;
    assert.equal(sample(metrics, 'polyproxy_rw_replica_up', { listener: 'pg', endpoint }), 1);
    assert.ok(sample(metrics, 'polyproxy_rw_replica_lag_ms', { listener: 'pg', endpoint }) >= 0);
  });

  it('a stopped standby: reads fall back to the primary with no client error', async (t) => {
    if (skip !== null) return t.skip(skip);
    const { standby } = pair as PostgresReplicaPair;
    const c = client();
    await c.connect();
    try {
      assert.equal(await onStandby(c), true);
      await standby.stop();
      // Every read answers, from the primary: first through a failed replica connect (marked down), then by the probe's verdict.
      for (let i = 0; i < 20; i++) assert.equal(await onStandby(c, 'select pg_is_in_recovery() as r, $1::int as i', [i]), false);
      const fresh = client();
      await fresh.connect();
      assert.equal(await onStandby(fresh), false);
      await fresh.end();
      const row = (await stats()).readWriteSplit?.find((s) => s.listener === 'pg')?.routes[0]?.replicas[0];
      assert.equal(row?.up, false);
    } finally {
      await c.end();
    }
  });
});

function cstr(text: string): Buffer {
  return Buffer.from(`${text}\0`);
}

function frontend(type: string, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(5);
  head[0] = type.charCodeAt(0);
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

function startup(user: string, database: string): Buffer {
  const body = Buffer.concat([Buffer.from([0, 3, 0, 0]), cstr('user'), cstr(user), cstr('database'), cstr(database), Buffer.from([0])]);
  const head = Buffer.alloc(4);
  head.writeInt32BE(body.length + 4, 0);
  return Buffer.concat([head, body]);
}

function replicaReads(s: ProxyStats): number {
  const row = s.readWriteSplit?.find((r) => r.listener === 'pg');
  return row?.statements.filter((x) => x.target === 'replica').reduce((n, x) => n + x.count, 0) ?? 0;
}
