/**
 * The conservative MySQL statement classifier of the read/write split:
 * `read` only when the statement is proven harmless to run on a replica,
 * `primary` for everything else (including anything it does not understand).
 *
 * A statement is a read when ALL of these hold (tokens outside strings,
 * quoted identifiers and comments, keywords case-insensitive):
 *  1. it starts with SELECT, WITH or `(`; or SHOW followed by one of
 *     DATABASES, SCHEMAS, TABLES, FULL TABLES|COLUMNS|FIELDS, COLUMNS,
 *     FIELDS, INDEX, INDEXES, KEYS, TABLE STATUS, CREATE TABLE|VIEW; or
 *     DESCRIBE/DESC/EXPLAIN followed by a table name, or (after optional
 *     EXTENDED, PARTITIONS, ANALYZE, FORMAT=name) by SELECT, WITH or `(`;
 *  2. no word of WRITE_WORDS appears anywhere (INSERT, UPDATE, DELETE,
 *     REPLACE, LOCK, SHARE, FOR, INTO, SET, CALL, NEXT/PREVIOUS VALUE FOR,
 *     SQL_CALC_FOUND_ROWS, PROCEDURE, DDL...): this excludes FOR UPDATE,
 *     LOCK IN SHARE MODE, FOR SHARE, SELECT ... INTO, sequences;
 *  3. every function call (a word, or a quoted name, followed by `(`) is of
 *     a function in READ_ONLY_FUNCTIONS (GET_LOCK, RELEASE_LOCK,
 *     LAST_INSERT_ID, FOUND_ROWS, ROW_COUNT, CONNECTION_ID, SLEEP, NEXTVAL,
 *     user functions... are not), a structural keyword before `(` (IN,
 *     EXISTS, FROM, JOIN, ...) is not a call;
 *  4. no user variable (`@x`: written, or read from the session on the
 *     primary) and no `:=`; system variables (`@@x`) are allowed;
 *  5. no executable comment (`/*!...*\/`, `/*M!...*\/`: the server runs its
 *     contents), every string, quoted identifier and comment is closed;
 *  6. one statement only (a trailing `;` is allowed);
 *  7. only the characters of ordinary SQL outside strings (anything else,
 *     e.g. ODBC `{...}` escapes, makes it primary);
 *  8. when it contains a backslash, rules 1-7 hold both with backslash
 *     escapes in strings and without (NO_BACKSLASH_ESCAPES), since the
 *     proxy does not know the session's sql_mode.
 */

export type StatementClass = 'read' | 'primary';

/** Words that make a statement go to the primary wherever they appear. */
export const WRITE_WORDS: ReadonlySet<string> = new Set([
  'INSERT', 'UPDATE', 'DELETE', 'REPLACE', 'MERGE', 'UPSERT',
  'CREATE', 'DROP', 'ALTER', 'TRUNCATE', 'RENAME', 'GRANT', 'REVOKE',
  'LOCK', 'UNLOCK', 'SHARE', 'FOR', 'NOWAIT', 'INTO', 'OUTFILE', 'DUMPFILE',
  'SET', 'CALL', 'DO', 'HANDLER', 'LOAD', 'PREPARE', 'EXECUTE', 'DEALLOCATE',
  'NEXT', 'PREVIOUS', 'NEXTVAL', 'LASTVAL', 'SETVAL',
  'SQL_CALC_FOUND_ROWS', 'PROCEDURE', 'FLUSH', 'KILL', 'PURGE', 'RESET', 'OPTIMIZE', 'REPAIR',
  'BEGIN', 'START', 'COMMIT', 'ROLLBACK', 'SAVEPOINT', 'RELEASE', 'XA', 'INSTALL', 'UNINSTALL',
]);

/** Functions known not to change or depend on session or server state the replica lacks. */
export const READ_ONLY_FUNCTIONS: ReadonlySet<string> = new Set([
  'COUNT', 'SUM', 'AVG', 'MIN', 'MAX', 'GROUP_CONCAT', 'BIT_AND', 'BIT_OR', 'BIT_XOR', 'STD', 'STDDEV', 'VARIANCE',
  'CONCAT', 'CONCAT_WS', 'LOWER', 'UPPER', 'LCASE', 'UCASE', 'LENGTH', 'CHAR_LENGTH', 'CHARACTER_LENGTH', 'OCTET_LENGTH',
  'SUBSTRING', 'SUBSTR', 'SUBSTRING_INDEX', 'LEFT', 'RIGHT', 'TRIM', 'LTRIM', 'RTRIM', 'LPAD', 'RPAD', 'REVERSE', 'REPEAT',
  'LOCATE', 'INSTR', 'POSITION', 'FIELD', 'FIND_IN_SET', 'FORMAT', 'ASCII', 'ORD', 'CHAR', 'SPACE', 'STRCMP',
  'COALESCE', 'IFNULL', 'NULLIF', 'IF', 'ISNULL', 'GREATEST', 'LEAST', 'INTERVAL',
  'ABS', 'ROUND', 'FLOOR', 'CEIL', 'CEILING', 'MOD', 'POW', 'POWER', 'SQRT', 'EXP', 'LN', 'LOG', 'LOG2', 'LOG10',
  'SIGN', 'PI', 'RAND', 'CONV', 'CRC32',
  'NOW', 'CURDATE', 'CURTIME', 'CURRENT_DATE', 'CURRENT_TIME', 'CURRENT_TIMESTAMP', 'UTC_DATE', 'UTC_TIME', 'UTC_TIMESTAMP',
  'SYSDATE', 'DATE', 'TIME', 'YEAR', 'MONTH', 'DAY', 'DAYOFMONTH', 'DAYOFWEEK', 'DAYOFYEAR', 'WEEK', 'HOUR', 'MINUTE', 'SECOND',
  'DATE_FORMAT', 'DATE_ADD', 'DATE_SUB', 'DATEDIFF', 'TIMESTAMPDIFF', 'TIMESTAMPADD', 'UNIX_TIMESTAMP', 'FROM_UNIXTIME',
  'STR_TO_DATE', 'LAST_DAY', 'EXTRACT', 'TIMESTAMP',
  'CAST', 'CONVERT', 'BINARY', 'MD5', 'SHA1', 'SHA2', 'HEX', 'UNHEX', 'TO_BASE64', 'FROM_BASE64', 'UUID',
  'JSON_EXTRACT', 'JSON_UNQUOTE', 'JSON_OBJECT', 'JSON_ARRAY', 'JSON_CONTAINS', 'JSON_LENGTH', 'JSON_VALUE', 'JSON_KEYS',
  'MATCH', 'AGAINST', 'DATABASE', 'SCHEMA', 'VERSION',
  'ROW_NUMBER', 'RANK', 'DENSE_RANK', 'LAG', 'LEAD', 'FIRST_VALUE', 'LAST_VALUE', 'NTILE',
]);

/** Keywords a `(` may follow without being a function call. */
const STRUCTURAL: ReadonlySet<string> = new Set([
  'SELECT', 'FROM', 'JOIN', 'WHERE', 'ON', 'IN', 'EXISTS', 'AND', 'OR', 'NOT', 'XOR', 'AS', 'UNION', 'ALL', 'DISTINCT',
  'ANY', 'SOME', 'USING', 'BY', 'HAVING', 'WITH', 'RECURSIVE', 'OVER', 'PARTITION', 'LIKE', 'BETWEEN', 'IS', 'WHEN',
  'THEN', 'ELSE', 'CASE', 'INTERSECT', 'EXCEPT', 'LATERAL', 'INDEX', 'KEY', 'ROW', 'ASC', 'DESC', 'DIV', 'LIMIT', 'OFFSET',
  'STRAIGHT_JOIN', 'REGEXP', 'RLIKE', 'ESCAPE', 'WINDOW', 'ORDER', 'GROUP', 'LEFT', 'RIGHT',
]);

const SHOW_READS: ReadonlySet<string> = new Set(['DATABASES', 'SCHEMAS', 'TABLES', 'COLUMNS', 'FIELDS', 'INDEX', 'INDEXES', 'KEYS']);

interface Token {
  /** 'w' word, 'q' quoted identifier or string, 'p' punctuation. */
  readonly kind: 'w' | 'q' | 'p';
  /** Upper-cased word, or the punctuation. */
  readonly text: string;
}

/** [A-Za-z0-9_$] and any non-ASCII code unit (by char code: a regex test per character cost most of the classifier's time). */
function isWordCode(code: number): boolean {
  return (code >= 0x61 && code <= 0x7a) || (code >= 0x41 && code <= 0x5a) || (code >= 0x30 && code <= 0x39) || code === 0x5f || code === 0x24 || code >= 0x80;
}
const PUNCT = new Set(['(', ')', ',', '.', '*', '+', '-', '/', '%', '=', '<', '>', '!', '|', '&', '^', '~', '?', ';']);

/** Tokens of `sql`, or null when something makes the statement primary on sight. */
function tokenize(sql: string, backslashEscapes: boolean): Token[] | null {
  const out: Token[] = [];
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i] as string;
    const next = sql[i + 1];
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v') {
      i++;
    } else if (c === '#' || (c === '-' && next === '-' && (i + 2 >= n || sql.charCodeAt(i + 2) <= 32))) {
      // To the earliest line end the server could use.
      while (i < n && sql[i] !== '\n' && sql[i] !== '\r') i++;
    } else if (c === '/' && next === '*') {
      if (sql[i + 2] === '!' || (sql[i + 2] === 'M' && sql[i + 3] === '!')) return null; // executable comment
      const end = sql.indexOf('*/', i + 2);
      if (end < 0) return null;
      i = end + 2;
    } else if (c === "'" || c === '"' || c === '`') {
      let j = i + 1;
      for (;;) {
        if (j >= n) return null; // unterminated
        const d = sql[j];
        if (d === '\\' && backslashEscapes && c !== '`') j += 2;
        else if (d === c) {
          if (sql[j + 1] === c) j += 2; // doubled quote
          else break;
        } else j++;
      }
      out.push({ kind: 'q', text: c });
      i = j + 1;
    } else if (isWordCode(sql.charCodeAt(i))) {
      let j = i + 1;
      while (j < n && isWordCode(sql.charCodeAt(j))) j++;
      out.push({ kind: 'w', text: sql.slice(i, j).toUpperCase() });
      i = j;
    } else if (c === '@') {
      if (next !== '@') return null; // a user variable
      i += 2;
      out.push({ kind: 'p', text: '@@' });
    } else if (PUNCT.has(c)) {
      out.push({ kind: 'p', text: c });
      i++;
    } else {
      return null; // `:=`, `{`, and anything not ordinary
    }
  }
  return out;
}

function classifyTokens(tokens: readonly Token[]): StatementClass {
  // Rule 6: one statement, an optional trailing `;`.
  let end = tokens.length;
  while (end > 0 && tokens[end - 1]?.text === ';') end--;
  for (let k = 0; k < end; k++) if (tokens[k]?.text === ';') return 'primary';
  if (end === 0) return 'primary';
  const from = readStart(tokens, end);
  if (from < 0) return 'primary';
  for (let k = from; k < end; k++) {
    const t = tokens[k] as Token;
    if (t.kind === 'w' && WRITE_WORDS.has(t.text)) return 'primary';
    if (tokens[k + 1]?.text === '(' && k + 1 < end) {
      if (t.kind === 'q') return 'primary'; // a quoted (user) function name
      // A word after `.` is a qualified name (schema.function): never a known built-in.
      if (t.kind === 'w' && (tokens[k - 1]?.text === '.' || !(READ_ONLY_FUNCTIONS.has(t.text) || STRUCTURAL.has(t.text)))) return 'primary';
    }
  }
  return 'read';
}

/** Where the scan for write words and calls starts (after SHOW's own words), or -1 when no read starts this way. */
function readStart(tokens: readonly Token[], end: number): number {
  const first = tokens[0] as Token;
  const word = (k: number): string | undefined => (k < end && tokens[k]?.kind === 'w' ? tokens[k]?.text : undefined);
  if (first.text === '(' || word(0) === 'SELECT' || word(0) === 'WITH') return 0;
  if (word(0) === 'SHOW') {
    const second = word(1);
    if (second === undefined) return -1;
    if (SHOW_READS.has(second)) return 2;
    if (second === 'FULL') return word(2) === 'TABLES' || word(2) === 'COLUMNS' || word(2) === 'FIELDS' ? 3 : -1;
    if (second === 'TABLE') return word(2) === 'STATUS' ? 3 : -1;
    if (second === 'CREATE') return word(2) === 'TABLE' || word(2) === 'VIEW' ? 3 : -1;
    return -1;
  }
  if (word(0) === 'DESCRIBE' || word(0) === 'DESC' || word(0) === 'EXPLAIN') {
    let k = 1;
    for (;;) {
      const w = word(k);
      if (w === 'EXTENDED' || w === 'PARTITIONS' || w === 'ANALYZE') k++;
      else if (w === 'FORMAT' && tokens[k + 1]?.text === '=' && word(k + 2) !== undefined) k += 3;
      else break;
    }
    const t = k < end ? tokens[k] : undefined;
    if (t === undefined) return -1;
    if (t.text === '(' || t.text === 'SELECT' || t.text === 'WITH') return k;
    // A table name (DESCRIBE t [column]): only when no modifier came first.
    return k === 1 && (t.kind === 'q' || t.kind === 'w') ? k : -1;
  }
  return -1;
}

/** Whether `sql` may run on a replica ('read') or must go to the primary. */
export function classifyMysql(sql: string): StatementClass {
  const escaped = tokenize(sql, true);
  if (escaped === null || classifyTokens(escaped) === 'primary') return 'primary';
  if (!sql.includes('\\')) return 'read';
  const plain = tokenize(sql, false);
  return plain === null ? 'primary' : classifyTokens(plain);
}
