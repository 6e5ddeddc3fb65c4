/**
 * What a statement sent to the primary leaves behind in the session that a
 * replica connection would not have (read/write split, MySQL):
 *
 * - pin (the client stays on the primary for the rest of its session):
 *   a user variable anywhere (`SET @x`, `SELECT ... INTO @x`, `@x :=`;
 *   reads of `@x` go to the primary anyway), TEMPORARY (tables),
 *   GET_LOCK(), LOCK TABLES, FLUSH ... WITH READ LOCK, SQL PREPARE /
 *   EXECUTE / DEALLOCATE, SET ROLE, a SET whose value is an expression
 *   with parentheses (a subquery or a function call), several statements
 *   with a SET among them, and any statement with an executable comment
 *   (`/*!...*\/`: the proxy does not read inside it) or that does not
 *   tokenize;
 * - replay: a SET of session system variables (`SET x = 1`,
 *   `SET SESSION x = ...`, `SET @@x = ...`, `SET NAMES`, `SET CHARACTER
 *   SET`) that succeeded on the primary is replayed on every replica
 *   connection the session opens (autocommit excepted: it is tracked by
 *   the server's status flags);
 * - neither: SET GLOBAL / @@global (server-wide), SET TRANSACTION (the next
 *   transaction only), SET STATEMENT ... FOR (one statement), SET PASSWORD.
 *
 * Strings, quoted identifiers and comments are skipped; when a backslash
 * appears the statement is read both with and without backslash escapes
 * (sql_mode NO_BACKSLASH_ESCAPES) and the pins of both count.
 */

export interface SessionEffect {
  /** Why the session must stay on the primary from now on, or null. */
  readonly pin: string | null;
  /** The statement is a SET to replay on replica connections. */
  readonly replay: boolean;
}

const NONE: SessionEffect = { pin: null, replay: false };

interface Scan {
  readonly words: string[];
  userVariable: boolean;
  assign: boolean;
  /** Statement separators before the last non-empty statement. */
  statements: number;
  /** Index in words where each statement starts. */
  readonly starts: number[];
  readonly parens: boolean[];
}

const WORD = /[A-Za-z0-9_$\u0080-\uffff]/;

function scan(sql: string, backslashEscapes: boolean): Scan | null {
  const out: Scan = { words: [], userVariable: false, assign: false, statements: 1, starts: [0], parens: [false] };
  let i = 0;
  const n = sql.length;
  let empty = true;
  while (i < n) {
    const c = sql[i] as string;
    const next = sql[i + 1];
    if (c === '#' || (c === '-' && next === '-' && (i + 2 >= n || sql.charCodeAt(i + 2) <= 32))) {
      while (i < n && sql[i] !== '\n' && sql[i] !== '\r') i++;
    } else if (c === '/' && next === '*') {
      if (sql[i + 2] === '!' || (sql[i + 2] === 'M' && sql[i + 3] === '!')) return null;
      const end = sql.indexOf('*/', i + 2);
      if (end < 0) return null;
      i = end + 2;
    } else if (c === "'" || c === '"' || c === '`') {
      let j = i + 1;
      for (;;) {
        if (j >= n) return null;
        const d = sql[j];
        if (d === '\\' && backslashEscapes && c !== '`') j += 2;
        else if (d === c) {
          if (sql[j + 1] === c) j += 2;
          else break;
        } else j++;
      }
      // `'user'@'host'` and `@'name'`: the quote may follow '@'.
      i = j + 1;
      empty = false;
      out.words.push(c);
    } else if (WORD.test(c)) {
      let j = i + 1;
      while (j < n && WORD.test(sql[j] as string)) j++;
      out.words.push(sql.slice(i, j).toUpperCase());
      empty = false;
      i = j;
    } else if (c === '@') {
      if (next === '@') {
        out.words.push('@@');
        i += 2;
      } else {
        out.userVariable = true;
        i++;
      }
      empty = false;
    } else if (c === ':' && next === '=') {
      out.assign = true;
      i += 2;
    } else if (c === ';') {
      if (!empty) {
        out.statements++;
        out.starts.push(out.words.length);
        out.parens.push(false);
      }
      empty = true;
      i++;
    } else {
      if (c === '(') out.parens[out.parens.length - 1] = true;
      if (c === '.' || c === '=' || c === ',') out.words.push(c);
      i++;
    }
  }
  if (empty && out.statements > 1) {
    out.statements--;
    out.starts.pop();
    out.parens.pop();
  }
  return out;
}

function effectOf(s: Scan): SessionEffect {
  if (s.userVariable || s.assign) return { pin: 'user variable', replay: false };
  const w = s.words;
  for (let k = 0; k < w.length; k++) {
    const word = w[k];
    if (word === 'TEMPORARY') return { pin: 'temporary table', replay: false };
    if (word === 'GET_LOCK') return { pin: 'GET_LOCK', replay: false };
  }
  let sets = 0;
  for (let st = 0; st < s.starts.length; st++) {
    const from = s.starts[st] as number;
    const to = st + 1 < s.starts.length ? (s.starts[st + 1] as number) : w.length;
    const first = w[from];
    if (first === 'LOCK') return { pin: 'LOCK TABLES', replay: false };
    if (first === 'FLUSH' && w.slice(from, to).includes('LOCK')) return { pin: 'FLUSH ... WITH READ LOCK', replay: false };
    if (first === 'PREPARE' || first === 'EXECUTE' || first === 'DEALLOCATE') return { pin: 'PREPARE', replay: false };
    if (first === 'SET') sets++;
  }
  if (sets === 0) return NONE;
  if (s.statements > 1) return { pin: 'SET among several statements', replay: false };
  const second = w[1];
  if (second === 'GLOBAL' || second === 'TRANSACTION' || second === 'STATEMENT' || second === 'PASSWORD') return NONE;
  if (second === 'ROLE' || second === 'DEFAULT') return { pin: 'SET ROLE', replay: false };
  for (let k = 1; k < w.length; k++) {
    if (w[k] === '@@' && w[k + 1] === 'GLOBAL' && w[k + 2] === '.') return NONE;
  }
  if (w.includes('AUTOCOMMIT')) return NONE;
  if (s.parens[0] === true) return { pin: 'SET with an expression', replay: false };
  return { pin: null, replay: true };
}

/** What `sql` (sent to the primary) does to the session; see the file comment. */
export function sessionEffect(sql: string): SessionEffect {
  const escaped = scan(sql, true);
  if (escaped === null) return { pin: 'statement not understood', replay: false };
  const effect = effectOf(escaped);
  if (!sql.includes('\\')) return effect;
  const plain = scan(sql, false);
  if (plain === null) return { pin: 'statement not understood', replay: false };
  const other = effectOf(plain);
  if (effect.pin !== null) return effect;
  if (other.pin !== null) return other;
  return effect.replay && other.replay ? effect : NONE;
}

/** `START TRANSACTION [WITH CONSISTENT SNAPSHOT,] READ ONLY`: a transaction a replica may run as a whole. */
export function startsReadOnlyTransaction(sql: string): boolean {
  return /^\s*START\s+TRANSACTION\s+(WITH\s+CONSISTENT\s+SNAPSHOT\s*,\s*)?READ\s+ONLY\s*;?\s*$/i.test(sql);
}
