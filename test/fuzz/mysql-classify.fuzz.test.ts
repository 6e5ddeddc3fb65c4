/**
 * Fuzzing the read/write classifier (src/protocols/mysql/split/classify.ts):
 * it never answers "read" for a statement carrying a write it cannot rule
 * out. Statements are built from SQL fragments (reads, strings with quotes
 * and backslashes, comments, backticks, functions) with a write fragment
 * (a write keyword, FOR UPDATE, a lock function, a user variable, an
 * executable comment, a second statement...) spliced in between fragments,
 * i.e. where the server would parse it as SQL: those are never reads. And
 * arbitrary text never throws.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { classifyMysql } from '../../src/protocols/mysql/split/classify.ts';
import { fuzzRuns, fuzzSeed } from '../helpers/fuzz.ts';

const READ_STARTS = ['SELECT', 'select', '(SELECT', 'WITH x AS (SELECT 1)', 'SHOW TABLES', 'DESCRIBE', 'EXPLAIN SELECT', 'SHOW CREATE TABLE'];
const FRAGMENTS = [
  ' a', ' * ', ' FROM t', ' WHERE b = ?', ' , ', ' COUNT(*)', ' NOW()', ' IN (1, 2)', ' @@server_id', ' 1',
  " 'it''s'", " 'x\\'y'", " 'a\\\\'", ' "q\\"uote"', ' `col``x`', ' /* c */', ' -- note\n', ' # note\n', ' /*+ hint */',
  " 'FOR UPDATE'", ' `delete`', ' "; DELETE FROM t"', ' (', ' )', ' .', ' -', ' --1', ' \\', " '", ' "', ' `',
];
const WRITES = [
  ' FOR UPDATE', ' LOCK IN SHARE MODE', ' FOR SHARE', ' INTO @v', ' INTO OUTFILE "/x"', ' ; DELETE FROM t', '; UPDATE t SET a = 1',
  ' GET_LOCK("l", 1)', ' RELEASE_LOCK("l")', ' LAST_INSERT_ID()', ' my_func(1)', ' `f`(1)', ' db.f(1)', ' @x', ' @x := 1',
  ' /*! FOR UPDATE */', ' /*M! FOR UPDATE */', ' /*!50000 SQL_CALC_FOUND_ROWS */', ' NEXT VALUE FOR s', ' SLEEP(1)',
  ' INSERT INTO t VALUES (1)', ' SQL_CALC_FOUND_ROWS', ' PROCEDURE ANALYSE()', ' {fn now()}',
];

/** Fragments joined; the write goes at a fragment boundary that lies outside strings and comments in both escape modes. */
function splice(parts: readonly string[], at: number, write: string): string {
  return parts.slice(0, at).join('') + write + parts.slice(at).join('');
}

/** Whether `text` leaves a string, identifier or comment open, read with or without backslash escapes. */
function leavesOpen(text: string, escapes: boolean): boolean {
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (c === "'" || c === '"' || c === '`') {
      let j = i + 1;
      for (;;) {
        if (j >= text.length) return true;
        const d = text[j];
        if (d === '\\' && escapes && c !== '`') j += 2;
        else if (d === c) {
          if (text[j + 1] === c) j += 2;
          else break;
        } else j++;
      }
      i = j + 1;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      if (end < 0) return true;
      i = end + 2;
    } else if (c === '#' || (c === '-' && text[i + 1] === '-' && (text.charCodeAt(i + 2) <= 32 || i + 2 >= text.length))) {
      const nl = text.slice(i).search(/[\r\n]/);
      if (nl < 0) return true;
      i += nl;
    } else i++;
  }
  return false;
}

describe('mysql read/write classifier', () => {
  it('a write spliced in where the server parses SQL is never a read', () => {
    fc.assert(
      fc.property(fc.constantFrom(...READ_STARTS), fc.array(fc.constantFrom(...FRAGMENTS), { maxLength: 12 }), fc.nat(), fc.constantFrom(...WRITES), (start, rest, n, write) => {
        const parts = [start, ...rest];
        const at = 1 + (n % parts.length);
        const before = parts.slice(0, at).join('');
        fc.pre(!leavesOpen(before, true) && !leavesOpen(before, false));
        const sql = splice(parts, at, write);
        assert.equal(classifyMysql(sql), 'primary', sql);
      }),
      { numRuns: fuzzRuns(2000), seed: fuzzSeed() },
    );
  });

  it('a statement starting with a write keyword is never a read, whatever follows', () => {
    fc.assert(
      fc.property(fc.constantFrom('INSERT', 'UPDATE', 'DELETE', 'REPLACE', 'CREATE', 'DROP', 'ALTER', 'SET', 'CALL', 'DO', 'LOCK', 'BEGIN', 'COMMIT', 'LOAD', 'HANDLER', 'TRUNCATE'), fc.string(), (word, tail) => {
        assert.equal(classifyMysql(`${word} ${tail}`), 'primary');
      }),
      { numRuns: fuzzRuns(), seed: fuzzSeed() },
    );
  });

  it('never throws and answers read or primary for any text', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.array(fc.constantFrom(...READ_STARTS, ...FRAGMENTS, ...WRITES)).map((p) => p.join(''))), (sql) => {
        const answer = classifyMysql(sql);
        assert.ok(answer === 'read' || answer === 'primary');
      }),
      { numRuns: fuzzRuns(), seed: fuzzSeed() },
    );
  });
});
