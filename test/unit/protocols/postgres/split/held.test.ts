import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { PostgresClassifier, loadPostgresParser } from '../../../../../src/protocols/postgres/split/classify.ts';
import { classifyHeld, parseBodyText } from '../../../../../src/protocols/postgres/split/held.ts';

const classifier = new PostgresClassifier();
before(() => loadPostgresParser());

function msg(type: string, ...parts: Array<string | Buffer>): Buffer {
  const body = Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(`${p}\0`) : p)));
  const head = Buffer.alloc(5);
  head[0] = type.charCodeAt(0);
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}
const sync = msg('S');
const parse = (name: string, sql: string): Buffer => msg('P', name, sql, Buffer.from([0, 0]));
const bind = (statement: string): Buffer => msg('B', '', statement, Buffer.from([0, 0, 0, 0, 0, 0]));
const execute = msg('E', '', Buffer.from([0, 0, 0, 0]));
const describe = msg('D', 'P');

function verdict(bytes: Buffer, known: Record<string, string> = {}): ReturnType<typeof classifyHeld> {
  return classifyHeld(bytes, bytes.length, classifier, (name) => known[name]);
}

test('a simple Query: read, write, read-only BEGIN', () => {
  assert.equal(verdict(msg('Q', 'select * from t')).route, 'read');
  assert.equal(verdict(msg('Q', 'insert into t values (1)')).route, 'primary');
  assert.equal(verdict(msg('Q', 'begin read only')).route, 'read-only-begin');
  assert.equal(verdict(msg('Q', 'begin')).route, 'primary');
});

test('extended: Parse/Bind/Describe/Execute/Sync classified by the Parse text; waits for the Sync', () => {
  const whole = Buffer.concat([parse('', 'select $1::int'), bind(''), describe, execute, sync]);
  assert.equal(verdict(whole).route, 'read');
  // Cut anywhere before the Sync is complete: wait (the next read brings it).
  for (let cut = 0; cut < whole.length; cut++) assert.equal(classifyHeld(whole, cut, classifier, () => undefined).route, 'wait', `cut at ${cut}`);
  // Parse + Describe + Flush: the client waits for the answer without a Sync.
  assert.equal(verdict(Buffer.concat([parse('s9', 'select 9'), msg('D', 'Ss9'), msg('H')])).route, 'read');
  const write = Buffer.concat([parse('', 'update t set a = 1'), bind(''), execute]);
  assert.equal(verdict(write).route, 'primary', 'a write decides at once, no Sync needed');
});

test('every message counts: a pipelined write after a read sends the whole batch to the primary', () => {
  assert.equal(verdict(Buffer.concat([parse('', 'select 1'), bind(''), execute, parse('', 'delete from t'), bind(''), execute, sync])).route, 'primary');
  assert.equal(verdict(Buffer.concat([msg('Q', 'select 1'), msg('Q', 'select nextval(\'s\')')])).route, 'primary');
});

test('a Bind of a named statement prepared earlier: classified by its recorded text; unknown names go to the primary', () => {
  const exchange = Buffer.concat([bind('s1'), execute, sync]);
  assert.equal(verdict(exchange, { s1: 'select 1' }).route, 'read');
  assert.equal(verdict(exchange, { s1: 'insert into t values (1)' }).route, 'primary');
  assert.equal(verdict(exchange).route, 'primary');
  // Parsed in the same bytes: classified at its Parse.
  assert.equal(verdict(Buffer.concat([parse('s2', 'select 2'), bind('s2'), execute, sync])).route, 'read');
  // The unnamed statement of an earlier exchange does not survive on another server.
  assert.equal(verdict(Buffer.concat([bind(''), execute, sync])).route, 'primary');
});

test('session state pins: the verdict names it and goes to the primary', () => {
  const temp = verdict(msg('Q', 'create temp table x (a int)'));
  assert.deepEqual(temp, { route: 'primary', pins: ['temp-table'] });
  assert.deepEqual(verdict(msg('Q', 'select pg_advisory_lock(1)')).pins, ['advisory-lock']);
  assert.deepEqual(verdict(msg('Q', 'set search_path = a')).pins, ['set']);
});

test('other messages (FunctionCall, CopyData, Terminate) and malformed lengths: the primary', () => {
  assert.equal(verdict(msg('F', Buffer.from([0, 0, 0, 1]))).route, 'primary');
  assert.equal(verdict(Buffer.concat([msg('Q', 'select 1'), msg('X')])).route, 'primary');
  const bad = Buffer.from([0x51, 0, 0, 0, 2]);
  assert.equal(verdict(bad).route, 'primary');
});

test('parseBodyText: the text of a stored Parse body', () => {
  assert.equal(parseBodyText(Buffer.concat([Buffer.from('pp_1\0select 1\0'), Buffer.from([0, 0])])), 'select 1');
  assert.equal(parseBodyText(Buffer.from('pp_1')), undefined);
});
