import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { PostgresClassifier, loadPostgresParser, type PostgresRoute, type SessionPin } from '../../../../../src/protocols/postgres/split/classify.ts';

const classifier = new PostgresClassifier({ readOnlyFunctions: ['my_pure', 'app.price_of'] });

function route(sql: string, c = classifier): PostgresRoute {
  return c.classify(sql).route;
}

function pins(sql: string): SessionPin[] {
  return [...classifier.classify(sql).pins].sort();
}

describe('PostgresClassifier before the parser is loaded', () => {
  it('answers primary without caching', () => {
    const cold = new PostgresClassifier();
    // This file's before() has not run yet for this describe: the module may still be unloaded.
    const result = cold.classify('select 1');
    assert.ok(result.route === 'primary' || result.route === 'read');
    if (result.route === 'primary') {
      assert.equal(result.reason, 'parser not loaded');
      assert.equal(cold.cached, 0);
    }
  });
});

describe('PostgresClassifier', () => {
  before(() => loadPostgresParser());

  it('plain reads: SELECT, VALUES, TABLE, SHOW, CTEs, set operations, sub-queries', () => {
    for (const sql of [
      'select 1',
      'SELECT a, b FROM t WHERE id = $1',
      'values (1), (2)',
      'table t',
      'show search_path',
      'show all',
      'with x as (select 1 as a) select * from x',
      'with recursive r(n) as (select 1 union all select n + 1 from r where n < 5) select * from r',
      'select * from a union select * from b except select * from c',
      'select * from t where id in (select id from u where exists (select 1 from v))',
      'select * from t join lateral (select * from u where u.t = t.id) x on true',
    ]) assert.equal(route(sql), 'read', sql);
  });

  it('allowlisted built-in functions, qualified with pg_catalog or not, are reads', () => {
    for (const sql of [
      'select count(*), sum(a), max(b) from t',
      'select lower(name), length(name), now(), date_trunc($$day$$, ts) from t',
      'select row_number() over (order by a) from t',
      'select * from generate_series(1, 10)',
      'select * from unnest(array[1, 2]) as u(x)',
      'select pg_catalog.lower($1)',
      'select pg_is_in_recovery(), pg_last_wal_replay_lsn()',
      'select current_date, current_user, coalesce(a, 0), greatest(a, b) from t',
      'select jsonb_build_object($$a$$, 1) -> $$a$$',
    ]) assert.equal(route(sql), 'read', sql);
  });

  it('caller-listed functions: bare names match unqualified calls, schema.name qualified ones', () => {
    assert.equal(route('select my_pure(a) from t'), 'read');
    assert.equal(route('select app.price_of(id) from t'), 'read');
    assert.equal(route('select other.my_pure(a) from t'), 'primary');
    assert.equal(route('select price_of(id) from t'), 'primary');
    assert.equal(route('select my_pure(a) from t', new PostgresClassifier()), 'primary');
  });

  it('writing, locking or unknown functions go to the primary, wherever they appear', () => {
    for (const sql of [
      "select nextval('s')",
      "select setval('s', 1)",
      "select currval('s')",
      'select pg_advisory_lock(1)',
      'select pg_try_advisory_xact_lock(1)',
      "select set_config('a', 'b', true)",
      "select pg_notify('c', 'x')",
      'select lo_create(0)',
      "select * from dblink('x', 'select 1') as t(a int)",
      'select txid_current()',
      'select pg_current_wal_lsn()',
      'select my_function()',
      'select * from my_set_returning_function()',
      'select * from t where a = my_function()',
      'select * from (select f(x) from t) s',
      'with x as (select nextval($$s$$)) select * from x',
      'select count(*) filter (where g(a)) from t',
      'select pg_catalog.nextval($1)',
    ]) {
      const result = classifier.classify(sql);
      assert.equal(result.route, 'primary', sql);
      assert.match(result.reason, /function .* is not known to be read-only/, sql);
    }
  });

  it('row locks anywhere go to the primary', () => {
    for (const sql of [
      'select * from t for update',
      'select * from t for no key update',
      'select * from t for share',
      'select * from t for key share',
      'select * from t for update skip locked',
      'select * from (select * from t for update) s',
      'with x as (select * from t for share) select * from x',
    ]) assert.equal(route(sql), 'primary', sql);
  });

  it('SELECT INTO and data-modifying CTEs go to the primary', () => {
    for (const sql of [
      'select 1 into x',
      'select * into temp y from t',
      'with d as (delete from t returning *) select * from d',
      'with i as (insert into t values (1) returning id) select id from i',
      'with u as (update t set a = 1 returning *) select count(*) from u',
      'with x as (select 1), y as (insert into t select * from x returning *) select * from y',
    ]) assert.equal(route(sql), 'primary', sql);
  });

  it('writes, DDL, utility and session statements go to the primary', () => {
    for (const sql of [
      'insert into t values (1)',
      'update t set a = 1',
      'delete from t',
      'merge into t using u on t.id = u.id when matched then delete',
      'create table t (a int)',
      'create temp table t (a int)',
      'drop table t',
      'truncate t',
      'copy t from stdin',
      'copy t to stdout',
      'lock table t',
      'call p()',
      'do $$ begin end $$',
      'listen c',
      'notify c',
      'unlisten *',
      'prepare p as select 1',
      'execute p',
      'deallocate all',
      'set search_path = x',
      'set local statement_timeout = 1',
      'reset all',
      'discard all',
      'vacuum t',
      'analyze t',
      'refresh materialized view m',
      'declare c cursor for select 1',
      'fetch 1 from c',
      'grant select on t to u',
    ]) assert.equal(route(sql), 'primary', sql);
  });

  it('EXPLAIN: of a read is a read; ANALYZE of a write is not; plan-only of a write is', () => {
    assert.equal(route('explain select * from t'), 'read');
    assert.equal(route('explain analyze select * from t'), 'read');
    assert.equal(route('explain (analyze, buffers) select count(*) from t'), 'read');
    assert.equal(route('explain insert into t values (1)'), 'read');
    assert.equal(route('explain (analyze false) update t set a = 1'), 'read');
    assert.equal(route('explain analyze insert into t values (1)'), 'primary');
    assert.equal(route('explain (analyze true) delete from t'), 'primary');
    assert.equal(route('explain analyze with d as (delete from t returning *) select * from d'), 'primary');
    assert.equal(route("explain analyze select nextval('s')"), 'primary');
    assert.equal(route('explain select * from t for update'), 'primary');
    assert.equal(route('explain create table x as select 1'), 'primary');
  });

  it('BEGIN READ ONLY / START TRANSACTION READ ONLY alone is a read-only transaction start', () => {
    for (const sql of ['begin read only', 'BEGIN TRANSACTION READ ONLY', 'start transaction read only', 'start transaction isolation level repeatable read, read only', 'begin isolation level serializable read only deferrable']) {
      assert.equal(route(sql), 'read-only-begin', sql);
    }
    for (const sql of ['begin', 'start transaction', 'begin read write', 'start transaction read only, read write', 'commit', 'rollback', 'savepoint a', 'begin read only; select 1', 'select 1; begin read only']) {
      assert.equal(route(sql), 'primary', sql);
    }
  });

  it('multi-statement strings are reads only if every statement is', () => {
    assert.equal(route('select 1; select 2; show x'), 'read');
    assert.equal(route('select 1; insert into t values (1)'), 'primary');
    assert.equal(route('select 1; select nextval($$s$$)'), 'primary');
    assert.equal(route('set x = 1; select 1'), 'primary');
  });

  it('parse errors and empty strings go to the primary', () => {
    for (const sql of ['selec 1', 'select from where', '', ';', '   ', 'select $$unterminated']) {
      const result = classifier.classify(sql);
      assert.equal(result.route, 'primary', sql);
    }
    assert.match(classifier.classify('selec 1').reason, /^parse error: /);
  });

  it('reports the session state that pins', () => {
    assert.deepEqual(pins('create temp table t (a int)'), ['temp-table']);
    assert.deepEqual(pins('create temporary table t as select 1'), ['temp-table']);
    assert.deepEqual(pins('select 1 into temp t'), ['temp-table']);
    assert.deepEqual(pins('create temp view v as select 1'), ['temp-table']);
    assert.deepEqual(pins('create temp sequence s'), ['temp-table']);
    assert.deepEqual(pins('create table t (a int)'), []);
    assert.deepEqual(pins('select pg_advisory_lock(1)'), ['advisory-lock']);
    assert.deepEqual(pins('select pg_try_advisory_lock_shared(1, 2)'), ['advisory-lock']);
    assert.deepEqual(pins('select pg_advisory_xact_lock(1)'), []);
    assert.deepEqual(pins('listen c'), ['listen']);
    assert.deepEqual(pins('set search_path = x'), ['set']);
    assert.deepEqual(pins('set session authorization u'), ['set']);
    assert.deepEqual(pins('set local search_path = x'), []);
    assert.deepEqual(pins('reset search_path'), []);
    assert.deepEqual(pins("select set_config('a', 'b', false)"), ['set']);
    assert.deepEqual(pins("select set_config('a', 'b', true)"), []);
    assert.deepEqual(pins('prepare p as select 1'), ['prepare']);
    assert.deepEqual(pins('declare c cursor with hold for select 1'), ['hold-cursor']);
    assert.deepEqual(pins('declare c cursor for select 1'), []);
    assert.deepEqual(pins('listen a; create temp table t (a int); select 1'), ['listen', 'temp-table']);
    assert.deepEqual(pins('select 1'), []);
  });

  it('carriedSettings: a session SET of a setting the caller carries to every server does not pin', () => {
    const carried = new PostgresClassifier({ carriedSettings: (name) => name === 'search_path' || name === 'timezone' });
    assert.deepEqual(carried.classify('set search_path = x').pins, []);
    assert.deepEqual(carried.classify('set time zone utc').pins, []);
    assert.deepEqual(carried.classify('set work_mem = 1024').pins, ['set']);
    assert.equal(carried.classify('set search_path = x').route, 'primary', 'still no read: it runs on the primary');
  });

  it('caches by query text and returns the same answer', () => {
    const c = new PostgresClassifier({ maxCachedLength: 20 });
    const first = c.classify('select 1');
    assert.equal(c.cached, 1);
    assert.equal(c.classify('select 1'), first);
    c.classify(`select ${'1 + '.repeat(20)}1`);
    assert.equal(c.cached, 1);
    c.classify('selec 1');
    assert.equal(c.cached, 2);
  });

  it('evicts least recently used entries past its text budget', () => {
    const c = new PostgresClassifier({ cacheChars: 30 });
    c.classify('select 1 as aaaa');
    c.classify('select 1 as bbbb');
    c.classify('select 1 as cccc');
    assert.equal(c.cached, 1);
  });
});
