/**
 * The streaming-replica fixture of the read/write split (issue 17) works:
 * the standby is in recovery and replays the primary's writes, refuses
 * writes itself, runs every statement the split classifier calls a read
 * (and refuses its writing functions with 25006), lags while replay is
 * paused, catches up on resume, and
 * stops on its own; stop() removes both temp directories.
 */
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PostgresClassifier, loadPostgresParser } from '../../src/protocols/postgres/split/classify.ts';
import { startPostgresReplica, waitUntil, type PostgresReplicaPair } from '../helpers/postgres-replica.ts';

let pair: PostgresReplicaPair | null = null;

describe('postgres replica fixture', () => {
  before(async () => {
    pair = await startPostgresReplica();
  });
  after(async () => {
    await pair?.stop();
  });

  it('the standby is in recovery and replays primary writes', async (t) => {
    if (pair === null) return t.skip('no throwaway PostgreSQL (see stderr)');
    const { primary, standby } = pair;
    assert.deepEqual(await primary.query('select pg_is_in_recovery() as r'), [{ r: false }]);
    assert.deepEqual(await standby.query('select pg_is_in_recovery() as r'), [{ r: true }]);
    await primary.query('create table fixture_rows (id int primary key)');
    await primary.query('insert into fixture_rows values (1), (2)');
    await primary.query('create sequence fixture_seq');
    await standby.waitForReplay();
    assert.deepEqual(await standby.query('select id from fixture_rows order by id'), [{ id: 1 }, { id: 2 }]);
    // Over TCP too, as the proxy will reach it.
    const client = new pg.Client({ host: standby.host, port: standby.port, user: 'postgres', database: 'postgres' });
    await client.connect();
    try {
      assert.equal((await client.query('select count(*)::int as n from fixture_rows')).rows[0].n, 2);
      await assert.rejects(client.query('insert into fixture_rows values (3)'), { code: '25006' });
      // EXPLAIN without ANALYZE of a write only plans it: a standby accepts it (the classifier's rule).
      assert.ok((await client.query('explain insert into fixture_rows values (3)')).rows.length > 0);
      // Why nextval() is never a read: the standby refuses it.
      await assert.rejects(client.query("select nextval('fixture_seq')"), { code: '25006' });
    } finally {
      await client.end();
    }
  });

  it("the classifier's reads run on the standby; its writing functions are refused there", async (t) => {
    if (pair === null) return t.skip('no throwaway PostgreSQL (see stderr)');
    const { primary, standby } = pair;
    await loadPostgresParser();
    const classifier = new PostgresClassifier();
    await primary.query('create table t (id int primary key, a int, b text, ts timestamptz default now()); create table u (id int, t int); create sequence s');
    await primary.query("insert into t (id, a, b) select g, g % 7, md5(g::text) from generate_series(1, 50) g; insert into u select g, g from generate_series(1, 10) g");
    await standby.waitForReplay();
    const reads = [
      'select * from t where id = 1',
      'table t',
      'values (1), (2)',
      'show search_path',
      'select count(*), sum(a), max(b), string_agg(b, $$,$$) from t',
      'select lower(b), length(b), date_trunc($$day$$, ts), row_number() over (order by a) from t',
      'select * from generate_series(1, 3) g join t on t.id = g',
      'with x as (select a from t) select * from x where a > 1',
      'select * from t where id in (select t from u) union select * from t where id = 3',
      'explain select * from t',
      'explain analyze select * from t',
      'explain insert into t (id) values (99)',
      'explain (analyze false) delete from t',
      'select pg_is_in_recovery(), pg_last_wal_replay_lsn(), current_setting($$port$$), gen_random_uuid()',
      'select 1; select 2',
    ];
    for (const sql of reads) {
      assert.equal(classifier.classify(sql).route, 'read', sql);
      await standby.query(sql);
    }
    for (const sql of ["select nextval('s')", "select setval('s', 5)", 'select txid_current()', 'select * from t for update', 'with d as (delete from t returning *) select * from d', 'select 1 into x']) {
      assert.equal(classifier.classify(sql).route, 'primary', sql);
      await assert.rejects(standby.query(sql), { code: '25006' }, sql);
    }
  });

  it('pausing replay makes the standby lag; resuming catches up', async (t) => {
    if (pair === null) return t.skip('no throwaway PostgreSQL (see stderr)');
    const { primary, standby } = pair;
    await primary.query('create table fixture_lag (id int)');
    await standby.waitForReplay();
    await standby.pauseReplay();
    const paused = await standby.lag();
    assert.notEqual(paused.replayLsn, null);
    await primary.query('insert into fixture_lag values (1)');
    const [position] = await primary.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn');
    const written = position?.lsn;
    assert.ok(written !== undefined);
    // The lag grows past 300 ms while replay stays where it was.
    await waitUntil('the lag to grow', async () => ((await standby.lag()).lagMs ?? 0) > (paused.lagMs ?? 0) + 300);
    const later = await standby.lag();
    assert.equal(later.replayLsn, paused.replayLsn);
    assert.deepEqual(await standby.query('select count(*)::int as n from fixture_lag'), [{ n: 0 }]);
    await standby.resumeReplay();
    await standby.waitForReplay(written);
    assert.deepEqual(await standby.query('select count(*)::int as n from fixture_lag'), [{ n: 1 }]);
    assert.ok(((await standby.lag()).lagMs ?? Infinity) < (later.lagMs ?? 0));
  });

  it('stopping the standby leaves the primary up; stop() removes the directories', async (t) => {
    if (pair === null) return t.skip('no throwaway PostgreSQL (see stderr)');
    const { primary, standby } = pair;
    await standby.stop();
    assert.equal(standby.running, false);
    const client = new pg.Client({ host: standby.host, port: standby.port, user: 'postgres', database: 'postgres' });
    await assert.rejects(client.connect(), { code: 'ECONNREFUSED' });
    assert.deepEqual(await primary.query('select 1 as one'), [{ one: 1 }]);
    const dirs = [primary.dir, standby.socketDir];
    await pair.stop();
    pair = null;
    for (const dir of dirs) await assert.rejects(access(dir), { code: 'ENOENT' });
  });
});
