import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sessionEffect, startsReadOnlyTransaction } from '../../../../../src/protocols/mysql/split/session-effects.ts';

function pins(...sqls: string[]): void {
  for (const sql of sqls) assert.notEqual(sessionEffect(sql).pin, null, sql);
}
function replays(...sqls: string[]): void {
  for (const sql of sqls) assert.deepEqual(sessionEffect(sql), { pin: null, replay: true }, sql);
}
function neither(...sqls: string[]): void {
  for (const sql of sqls) assert.deepEqual(sessionEffect(sql), { pin: null, replay: false }, sql);
}

test('session state a replica lacks pins the session', () => {
  pins(
    'SET @x = 1',
    'select a into @x from t',
    'SELECT @x := 5',
    "SET @`weird name` = 'a'",
    'CREATE TEMPORARY TABLE tmp (x int)',
    'create temporary table if not exists tmp select 1',
    "SELECT GET_LOCK('job', 10)",
    'LOCK TABLES t WRITE',
    'lock table t read',
    'FLUSH TABLES WITH READ LOCK',
    "PREPARE s FROM 'select 1'",
    'EXECUTE s',
    'SET ROLE admin',
    'SET sql_mode = CONCAT(@@sql_mode, ",ANSI")',
    "SET sql_mode = (SELECT 'ANSI')",
    'SET NAMES utf8mb4; SET autocommit = 0',
    '/*!40101 SET NAMES utf8 */',
    "INSERT INTO t VALUES ('unterminated",
    "SELECT 'a\\' ; SET @x = 1; -- '",
  );
});

test('session SETs of system variables are replayed on replica connections', () => {
  replays('SET NAMES utf8mb4', "SET SESSION sql_mode = 'ANSI_QUOTES'", 'SET @@session.time_zone = "+00:00"', 'set character set utf8', 'SET time_zone = "+01:00", sql_mode = ""', 'SET LOCAL wait_timeout = 100;');
});

test('SETs that leave nothing a replica needs, and ordinary statements, do neither', () => {
  neither('SET GLOBAL max_connections = 10', 'SET @@global.sql_mode = ""', 'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', 'SET STATEMENT max_statement_time=1 FOR SELECT 1', 'SET autocommit = 0', "SET PASSWORD = PASSWORD('x')", 'INSERT INTO t VALUES (1)', "UPDATE t SET v = 'SET @x' WHERE id = 1", 'SELECT 1 FOR UPDATE', '-- SET @x = 1\nSELECT 1');
});

test('START TRANSACTION READ ONLY may run on a replica', () => {
  assert.equal(startsReadOnlyTransaction('START TRANSACTION READ ONLY'), true);
  assert.equal(startsReadOnlyTransaction('start transaction with consistent snapshot, read only;'), true);
  assert.equal(startsReadOnlyTransaction('START TRANSACTION'), false);
  assert.equal(startsReadOnlyTransaction('START TRANSACTION READ WRITE'), false);
  assert.equal(startsReadOnlyTransaction('START TRANSACTION READ ONLY; INSERT INTO t VALUES (1)'), false);
});
