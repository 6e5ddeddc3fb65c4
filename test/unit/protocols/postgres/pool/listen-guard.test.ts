/** LISTEN detection: the first keyword after blanks and comments, whole word, any case. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isListenTag, startsWithListen } from '../../../../../src/protocols/postgres/pool/listen-guard.ts';

const is = (sql: string): boolean => {
  const buf = Buffer.from(`${sql}\0`);
  return startsWithListen(buf, 0, buf.length - 1);
};

describe('listen guard', () => {
  it('finds LISTEN', () => {
    for (const sql of ['listen x', 'LISTEN x', '  \n\tListen "x"', '-- c\nlisten x', '/* a /* nested */ */ listen x', '(listen x', 'listen;', 'listen']) assert.equal(is(sql), true, sql);
  });
  it('ignores everything else', () => {
    for (const sql of ['select 1', 'listener', 'unlisten x', 'select listen', '/* unterminated listen', '-- listen x', 'notify x', '']) assert.equal(is(sql), false, sql);
  });
  it('CommandComplete LISTEN tag', () => {
    const tag = Buffer.from('LISTEN');
    assert.equal(isListenTag(tag, 0, tag.length), true);
    const other = Buffer.from('SELECT 1');
    assert.equal(isListenTag(other, 0, other.length), false);
  });
});
