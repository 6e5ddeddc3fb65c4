import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyMysql } from '../../../../../src/protocols/mysql/split/classify.ts';

function reads(...sqls: string[]): void {
  for (const sql of sqls) assert.equal(classifyMysql(sql), 'read', sql);
}
function primary(...sqls: string[]): void {
  for (const sql of sqls) assert.equal(classifyMysql(sql), 'primary', sql);
}

test('rule 1: reads start with SELECT, WITH, ( or a read-only SHOW / DESCRIBE / EXPLAIN', () => {
  reads(
    'SELECT 1',
    'select * from t where id = ?',
    '  (SELECT a FROM t) UNION (SELECT b FROM u)',
    'WITH x AS (SELECT 1 AS a) SELECT a FROM x',
    'SHOW TABLES',
    'show full tables',
    'SHOW DATABASES',
    'SHOW COLUMNS FROM t',
    'SHOW FULL COLUMNS FROM t',
    'SHOW INDEX FROM t',
    'SHOW TABLE STATUS',
    'SHOW CREATE TABLE t',
    'SHOW CREATE VIEW v',
    'DESCRIBE t',
    'DESC `t` `c`',
    'EXPLAIN SELECT * FROM t',
    'EXPLAIN FORMAT=JSON SELECT 1',
    'EXPLAIN EXTENDED SELECT 1',
  );
  primary(
    '',
    '   ',
    'TABLE t',
    'VALUES ROW(1)',
    'SHOW',
    'SHOW PROCESSLIST',
    'SHOW WARNINGS',
    'SHOW ERRORS',
    'SHOW VARIABLES',
    'SHOW SESSION STATUS',
    'SHOW SLAVE STATUS',
    'SHOW MASTER STATUS',
    'SHOW CREATE PROCEDURE p',
    'SHOW FULL PROCESSLIST',
    'EXPLAIN FOR CONNECTION 5',
    'EXPLAIN FORMAT=JSON t',
    'ANALYZE TABLE t',
    'CHECKSUM TABLE t',
    'HELP select',
    'BINLOG x',
  );
});

test('rule 2: write words anywhere send it to the primary (FOR UPDATE, LOCK IN SHARE MODE, INTO, sequences, DML, DDL)', () => {
  primary(
    'SELECT * FROM t FOR UPDATE',
    'SELECT * FROM t WHERE id = 1 FOR UPDATE SKIP LOCKED',
    'SELECT * FROM t FOR SHARE',
    'SELECT * FROM t LOCK IN SHARE MODE',
    'SELECT a INTO @x FROM t',
    'SELECT a FROM t INTO OUTFILE "/tmp/x"',
    'SELECT * INTO DUMPFILE "/tmp/x" FROM t',
    'SELECT NEXT VALUE FOR s',
    'SELECT PREVIOUS VALUE FOR s',
    'SELECT SQL_CALC_FOUND_ROWS * FROM t',
    'SELECT * FROM t PROCEDURE ANALYSE()',
    'WITH d AS (SELECT 1) DELETE FROM t',
    'WITH d AS (SELECT 1) UPDATE t SET a = 1',
    'EXPLAIN UPDATE t SET a = 1',
    'DESCRIBE DELETE FROM t',
    'INSERT INTO t VALUES (1)',
    'UPDATE t SET a = 1',
    'DELETE FROM t',
    'REPLACE INTO t VALUES (1)',
    'CREATE TEMPORARY TABLE x (a int)',
    'DROP TABLE t',
    'ALTER TABLE t ADD c int',
    'TRUNCATE t',
    'SET @x = 1',
    'SET autocommit = 0',
    'CALL p()',
    'DO SLEEP(1)',
    'LOCK TABLES t READ',
    'BEGIN',
    'START TRANSACTION',
    'COMMIT',
    'USE test',
    'PREPARE s FROM "SELECT 1"',
    'EXECUTE s',
  );
});

test('rule 3: only functions known read-only; GET_LOCK, LAST_INSERT_ID, user and qualified functions go to the primary', () => {
  reads(
    'SELECT COUNT(*), MAX(a), CONCAT(b, "x"), NOW() FROM t',
    'SELECT a FROM t WHERE b IN (1, 2) AND EXISTS (SELECT 1 FROM u)',
    'SELECT count (*) FROM t',
    'SELECT ROW_NUMBER() OVER (PARTITION BY a ORDER BY b) FROM t',
    'SELECT * FROM t USE INDEX (i)',
    'SELECT CAST(a AS CHAR) FROM t',
    'SELECT DATABASE(), VERSION()',
  );
  primary(
    'SELECT GET_LOCK("x", 10)',
    'SELECT RELEASE_LOCK("x")',
    'SELECT IS_FREE_LOCK("x")',
    'SELECT LAST_INSERT_ID()',
    'SELECT FOUND_ROWS()',
    'SELECT ROW_COUNT()',
    'SELECT CONNECTION_ID()',
    'SELECT SLEEP(1)',
    'SELECT NEXTVAL(s)',
    'SELECT my_func(a) FROM t',
    'SELECT `count`(a) FROM t',
    'SELECT "count"(a) FROM t',
    'SELECT db.count(a) FROM t',
    'SELECT BENCHMARK(1000, MD5(1))',
    'SELECT get_lock /* c */ ("x", 1)',
  );
});

test('rule 4: user variables and := go to the primary; system variables are reads', () => {
  reads('SELECT @@server_id', 'SELECT @@session.sql_mode, @@global.read_only');
  primary('SELECT @x', 'SELECT @x := 1', 'SELECT a FROM t WHERE b = @v', 'SELECT (@r := @r + 1) FROM t', 'SELECT a := 1');
});

test('rule 5: executable comments and unterminated strings, identifiers or comments go to the primary; ordinary comments and strings hide words', () => {
  reads(
    "SELECT 'INSERT INTO t' FROM t",
    'SELECT "; DELETE FROM t" AS x',
    'SELECT `update` FROM t',
    'SELECT a /* FOR UPDATE */ FROM t',
    'SELECT a -- FOR UPDATE\nFROM t',
    'SELECT a # FOR UPDATE\nFROM t',
    '/* leading comment */ SELECT 1',
    "SELECT 'it''s'",
    'SELECT `a``b` FROM t',
    'SELECT /*+ MAX_EXECUTION_TIME(1000) */ a FROM t',
  );
  primary(
    'SELECT /*! FOR UPDATE */ * FROM t',
    'SELECT /*!50000 SQL_CALC_FOUND_ROWS */ * FROM t',
    'SELECT /*M! FOR UPDATE */ * FROM t',
    "SELECT 'unterminated",
    'SELECT `unterminated',
    'SELECT 1 /* unterminated',
    // `--` without a following space is two minus signs, not a comment.
    'SELECT 1 --1\n FOR UPDATE',
    // A comment ends at \r too (the server may end it there).
    'SELECT 1 # c\r FOR UPDATE',
  );
});

test('rule 6: multi-statements go to the primary; a trailing ; is allowed', () => {
  reads('SELECT 1;', 'SELECT 1 ; ;  ');
  primary('SELECT 1; SELECT 2', 'SELECT 1; DELETE FROM t', ';', ';SELECT 1');
});

test('rule 7: characters outside ordinary SQL go to the primary', () => {
  primary('SELECT {fn NOW()}', 'SELECT a FROM t WHERE b = :name', 'SELECT 1 \\G', 'SELECT a[1] FROM t');
});

test('rule 8: a backslash is read both with and without backslash escapes', () => {
  reads("SELECT 'a\\\\' FROM t", "SELECT * FROM t WHERE a LIKE 'x\\_%'");
  // With backslash escapes the DELETE is inside a string; without them (NO_BACKSLASH_ESCAPES) it is not.
  // Without backslash escapes this is a syntax error (an unterminated string): not proven a read.
  primary("SELECT 'a\\'b' , 'c'");
  primary("SELECT 'a\\'; DELETE FROM t; SELECT '", "SELECT 'x\\' FOR UPDATE -- '");
});
