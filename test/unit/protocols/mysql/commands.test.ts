/**
 * Which database a command switches to: COM_INIT_DB, COM_CHANGE_USER and
 * `USE` anywhere in a COM_QUERY, with comments, quotes and backticks, fed
 * whole and split at every offset.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ANSI_QUOTES_QUOTING, DEFAULT_QUOTING, NO_BACKSLASH_ESCAPES_QUOTING, SqlReading, UseScanner, changeUserDatabase, inspectCommand } from '../../../../src/protocols/mysql/commands.ts';
import type { QuotingRules } from '../../../../src/protocols/mysql/commands.ts';
import { CLIENT_SECURE_CONNECTION } from '../../../../src/protocols/mysql/packets.ts';

function scanWhole(sql: string): string[] | null {
  const s = new UseScanner();
  const bytes = Buffer.from(sql);
  s.feed(bytes, 0, bytes.length);
  s.finish();
  return s.found;
}

function scanSplit(sql: string, cut: number): string[] | null {
  const s = new UseScanner();
  const bytes = Buffer.from(sql);
  s.feed(bytes, 0, cut);
  s.feed(bytes, cut, bytes.length);
  s.finish();
  return s.found;
}

const CASES: Array<[string, string[] | null]> = [
  ['USE beta', ['beta']],
  ['use beta;', ['beta']],
  ['  \n\tUsE   `be``ta` ', ['be`ta']],
  ['/* hi */ use beta', ['beta']],
  ['-- note\nuse beta', ['beta']],
  ['# note\nuse beta', ['beta']],
  ['use/**/beta', ['beta']],
  ['/*!40101 use beta */', ['beta']],
  ['/*M!100100 use beta*/', ['beta']],
  ['select 1; use beta', ['beta']],
  ["select 'x; use alpha'; USE gamma", ['gamma']],
  // Under ANSI_QUOTES "a\" is an identifier that ends at its second quote: the USE is real there.
  ['select "a\\"; use alpha"; select 2', ['alpha']],
  // NO_BACKSLASH_ESCAPES: the string ends at the second quote (issue 15: the guard's bypass).
  ["select 'x\\'; use elsewhere; select database(); -- '", ['elsewhere']],
  ["select 'x\\\\'; use elsewhere", ['elsewhere']],
  ["select 'it''s; use alpha'", null],
  // Readings in order (default, ANSI_QUOTES, NO_BACKSLASH_ESCAPES), each name once.
  ['select "x\\"; use a"; use `b`', ['b', 'a']],
  ["select 'x\\' ; use a ; '; use b", ['b', 'a']],
  ['select `x\\`; use b', ['b']],
  ["select 'a\\'; use alpha; -- '", ['alpha']],
  ["select 'it''s', 'a\\' 'b'", null],
  ["select 'a\\''; use alpha", ['alpha']],
  // MariaDB: `--` then any control character starts a comment; NUL ends a line comment for the scanner.
  ["select 1; --\x01 '\nuse alpha", ['alpha']],
  ["select 1; --\x7f '\nuse alpha", ['alpha']],
  ["select 1; # x\x00use alpha", ['alpha']],
  ['select 1; /*!use*/ alpha', ['alpha']],
  ['use/*!*/alpha', ['alpha']],
  ['/*!select 2*/; use alpha', ['alpha']],
  ['select `;use alpha`', null],
  ['select 1 -- ; use alpha', null],
  ['select 1 /* ; use alpha */', null],
  ['select 2-1; use a; use `b`', ['a', 'b']],
  ['user', null],
  ['used beta', null],
  ['select use_it from t', null],
  ['update t set x = 1', null],
  ['USE "db"', ['db']],
  ['use dbé', ['dbé']],
  ['use', null],
  ['select 1', null],
  ['--use beta', null],
  // Issue 15 fuzzing: what MariaDB runs (checked with `select database()` after each).
  // `--` then a newline is a comment that ends at that newline: the next line is code.
  ['select 1 --\n;use beta', ['beta']],
  // `--` then any control character opens a comment, so the quote after it is no string.
  ["select 1 --\x01 '\n;use beta; -- '", ['beta']],
  // The `*/` closing an executable comment is trivia: a statement (or a USE name) goes on after it.
  ['/*!*/use beta', ['beta']],
  ['use /*!*/ beta', ['beta']],
  ['/*!select 1*/ use beta', null],
  // `---`: the first dash is code, the next two open a comment.
  ["select 1 --- '\n1;use beta; -- '", ['beta']],
  ['select 1 ---x; use beta', ['beta']],
];

describe('UseScanner', () => {
  for (const [sql, expected] of CASES) {
    it(`${JSON.stringify(sql)} → ${JSON.stringify(expected)}`, () => {
      assert.deepEqual(scanWhole(sql), expected);
      const length = Buffer.byteLength(sql);
      for (let cut = 0; cut <= length; cut++) assert.deepEqual(scanSplit(sql, cut), expected, `split at ${cut}`);
    });
  }

  it('reports over-long names so they are refused, not truncated into another name', () => {
    const found = scanWhole(`use ${'a'.repeat(300)}`);
    assert.equal(found?.length, 1);
    assert.notEqual(found?.[0], 'a'.repeat(256));
  });
});

function read(sql: string, rules: QuotingRules): string[] | null {
  const reading = new SqlReading(rules);
  const bytes = Buffer.from(sql);
  reading.feed(bytes, 0, bytes.length);
  reading.finish();
  return reading.found;
}

describe('SqlReading: one sql_mode each', () => {
  const hidden = "select 'x\\'; use elsewhere; -- '";
  it('the default mode reads a backslash-escaped quote as part of the string', () => {
    assert.equal(read(hidden, DEFAULT_QUOTING), null);
  });
  it('NO_BACKSLASH_ESCAPES ends the string at the quote after the backslash', () => {
    assert.deepEqual(read(hidden, NO_BACKSLASH_ESCAPES_QUOTING), ['elsewhere']);
  });
  it('ANSI_QUOTES: "..." is an identifier without escapes, \'...\' still escapes', () => {
    assert.deepEqual(read('select "x\\"; use a; -- "', ANSI_QUOTES_QUOTING), ['a']);
    assert.equal(read(hidden, ANSI_QUOTES_QUOTING), null);
    assert.equal(read('select "x\\"; use a; -- "', DEFAULT_QUOTING), null);
  });
});

describe('inspectCommand', () => {
  const scanner = new UseScanner();
  it('COM_STMT_PREPARE of a USE names its database (MariaDB prepares USE)', () => {
    assert.deepEqual(inspectCommand(Buffer.from('\x16USE beta', 'latin1'), 0, scanner), { databases: ['beta'] });
    assert.equal(inspectCommand(Buffer.from('\x16select ?', 'latin1'), 0, scanner), null);
  });
  it('refuses SQL built at run time: PREPARE and EXECUTE (MariaDB runs USE there)', () => {
    for (const sql of ["PREPARE s FROM 'USE beta'", "select 1; EXECUTE IMMEDIATE 'USE beta'", '/*!execute*/ s', "prepare s from @q"]) {
      assert.ok('malformed' in (inspectCommand(Buffer.from(`\x03${sql}`, 'latin1'), 0, scanner) ?? {}), sql);
    }
    for (const sql of ["select 'prepare'", 'select executed from t', 'deallocate prepare s']) {
      assert.equal(inspectCommand(Buffer.from(`\x03${sql}`, 'latin1'), 0, scanner), null, sql);
    }
  });
  it('COM_INIT_DB names its database', () => {
    assert.deepEqual(inspectCommand(Buffer.from('\x02beta', 'latin1'), 0, scanner), { databases: ['beta'] });
  });
  it('COM_QUERY only when it holds a USE', () => {
    assert.deepEqual(inspectCommand(Buffer.from('\x03use beta', 'latin1'), 0, scanner), { databases: ['beta'] });
    assert.equal(inspectCommand(Buffer.from('\x03select 1', 'latin1'), 0, scanner), null);
  });
  it('other commands pass', () => {
    assert.equal(inspectCommand(Buffer.from('\x0e', 'latin1'), 0, scanner), null); // COM_PING
    assert.equal(inspectCommand(Buffer.alloc(0), 0, scanner), null);
  });
  it('COM_CHANGE_USER names its database (secure-connection auth data)', () => {
    const payload = Buffer.concat([Buffer.from('\x11bob\0', 'latin1'), Buffer.from([3, 1, 2, 3]), Buffer.from('beta\0'), Buffer.from([45, 0]), Buffer.from('mysql_native_password\0')]);
    assert.equal(changeUserDatabase(payload, CLIENT_SECURE_CONNECTION), 'beta');
    assert.deepEqual(inspectCommand(payload, CLIENT_SECURE_CONNECTION, scanner), { databases: ['beta'] });
    const noDb = Buffer.concat([Buffer.from('\x11bob\0', 'latin1'), Buffer.from([0]), Buffer.from('\0'), Buffer.from([45, 0])]);
    assert.equal(inspectCommand(noDb, CLIENT_SECURE_CONNECTION, scanner), null);
    assert.deepEqual(inspectCommand(Buffer.from('\x11bob', 'latin1'), CLIENT_SECURE_CONNECTION, scanner), { malformed: 'malformed COM_CHANGE_USER' });
  });
});
