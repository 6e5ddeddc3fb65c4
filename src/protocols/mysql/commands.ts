/**
 * Which database a command switches the session to, as pure functions over
 * command payloads: COM_INIT_DB, COM_CHANGE_USER, and COM_QUERY statements
 * that begin with `USE` (anywhere in a multi-statement query).
 *
 * The SQL scan is a byte-level state machine that can be fed a query in
 * pieces: it skips string literals, quoted identifiers and comments
 * (`-- `, `#`, `/* *\/`), and reads MySQL's executable comments (`/*! ... *\/`,
 * `/*M! ... *\/`) as code, since the server runs what is inside them.
 * SQL built at run time cannot be scanned, and MariaDB runs `USE` there
 * (`PREPARE s FROM @q`, `EXECUTE IMMEDIATE`): a statement that begins with
 * PREPARE or EXECUTE sets `dynamic`, and the guard refuses it. COM_STMT_PREPARE
 * is scanned like COM_QUERY (`USE` can be prepared).
 *
 * Where a string ends depends on the session's sql_mode, which the proxy
 * cannot know for sure: NO_BACKSLASH_ESCAPES makes `\` an ordinary character
 * in every string, ANSI_QUOTES makes `"..."` an identifier (no escapes in
 * it), and either can be switched by the very query being scanned or
 * hidden in `SET STATEMENT`. So the scan reads the query under each of the
 * three quoting rules these modes produce and reports the USE statements
 * of all of them (see UseScanner): `select 'x\'; use other; -- '` is a plain
 * select by default but switches databases under NO_BACKSLASH_ESCAPES.
 */
import { CLIENT_SECURE_CONNECTION, COM_CHANGE_USER, COM_INIT_DB, COM_QUERY, COM_STMT_PREPARE } from './packets.ts';

/** Longest database name kept: 64 characters of up to 4 UTF-8 bytes. */
export const MAX_NAME_BYTES = 256;

// Scanner states (integers, as in ws's receiver).
const START = 0; //        statement start: whitespace and comments before the first word
const WORD = 1; //         the first word of a statement
const BODY = 2; //         the rest of a statement
const SQUOTE = 3;
const DQUOTE = 4;
const BTICK = 5;
const LINE_COMMENT = 6;
const BLOCK_COMMENT = 7;
const BLOCK_STAR = 8; //   '*' inside a block comment
const DASH = 9; //         one '-' seen
const DASH2 = 10; //       '--' seen: a comment if whitespace follows
const SLASH = 11; //       '/' seen
const SLASH_STAR = 12; //  '/*' seen: '!' or 'M' makes it executable
const SLASH_STAR_M = 13; //'/*M' seen
const EXEC_VERSION = 14; //digits after '/*!'
const QUOTE_ESCAPE = 15; //backslash inside a string
const GAP = 16; //         after USE: whitespace and comments before the name
const NAME = 17; //        a bare database name
const NAME_QUOTED = 18; // a quoted database name
const NAME_QUOTE_END = 19; // closing quote seen: doubled means a literal quote
const EXEC_STAR = 20; //   '*' in code inside an executable comment

function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

/** What may follow `--` to make it a comment: whitespace or a control character (my_isspace || my_iscntrl in sql_lex.cc). */
function endsDoubleDash(c: number): boolean {
  return c <= 0x20 || c === 0x7f;
}

/** Identifier characters: [A-Za-z0-9_$] and any non-ASCII byte. */
function isWordChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x24 || c >= 0x80;
}

/** How backslashes behave inside quotes under one sql_mode. */
export interface QuotingRules {
  /** `\` escapes the next byte inside '...' (off under NO_BACKSLASH_ESCAPES). */
  readonly escapeInSingle: boolean;
  /** `\` escapes the next byte inside "..." (off under NO_BACKSLASH_ESCAPES or ANSI_QUOTES). */
  readonly escapeInDouble: boolean;
}

/** The three distinct readings: the default, ANSI_QUOTES, and NO_BACKSLASH_ESCAPES (with or without ANSI_QUOTES). */
export const DEFAULT_QUOTING: QuotingRules = { escapeInSingle: true, escapeInDouble: true };
export const ANSI_QUOTES_QUOTING: QuotingRules = { escapeInSingle: true, escapeInDouble: false };
export const NO_BACKSLASH_ESCAPES_QUOTING: QuotingRules = { escapeInSingle: false, escapeInDouble: false };

/** One reading of a query under one set of quoting rules. */
export class SqlReading {
  /** Database names of the `USE` statements seen so far; null while there are none. */
  found: string[] | null = null;
  /** A backslash was met inside a quote: another sql_mode could read this query differently. */
  sawQuotedBackslash = false;
  /** A statement begins with PREPARE or EXECUTE (SQL built at run time). */
  dynamic = false;
  readonly #escapeInSingle: boolean;
  readonly #escapeInDouble: boolean;
  #state = START;
  /** Where a comment or string returns to when it ends. */
  #back = START;
  #quote = 0;
  #exec = false;
  /** Where the `*\/` closing an executable comment returns: it is trivia, so a statement start or USE gap goes on. */
  #execBack = BODY;
  /** First word of the statement, lowercased, up to 4 bytes (only "use" matters). */
  #word = 0;
  #wordLength = 0;
  #name = Buffer.alloc(MAX_NAME_BYTES);
  #nameLength = 0;
  #nameTooLong = false;

  constructor(rules: QuotingRules = DEFAULT_QUOTING) {
    this.#escapeInSingle = rules.escapeInSingle;
    this.#escapeInDouble = rules.escapeInDouble;
  }

  reset(): void {
    this.found = null;
    this.sawQuotedBackslash = false;
    this.dynamic = false;
    this.#state = START;
    this.#back = START;
    this.#exec = false;
    this.#execBack = BODY;
    this.#wordLength = 0;
    this.#nameLength = 0;
    this.#nameTooLong = false;
  }

  /** Scans bytes [from, to) of the query text. */
  feed(buf: Buffer, from: number, to: number): void {
    let i = from;
    while (i < to) {
      const c = buf[i] as number;
      switch (this.#state) {
        case START:
          if (isSpace(c) || c === 0x3b /* ; */) break;
          if (this.#comment(c, START)) break;
          if (this.#exec && c === 0x2a) {
            // `/*!*\/use other` runs `use other`.
            this.#execBack = START;
            this.#state = EXEC_STAR;
            break;
          }
          if (isWordChar(c)) {
            this.#state = WORD;
            this.#word = 0;
            this.#wordLength = 0;
            continue; // read it as part of the word
          }
          this.#state = BODY;
          continue;
        case WORD:
          if (isWordChar(c)) {
            if (this.#wordLength < 4) this.#word = (this.#word << 8) | (c | 0x20);
            this.#wordLength++;
            break;
          }
          this.#endWord();
          continue;
        case BODY:
          if (c === 0x3b) {
            this.#state = START;
            break;
          }
          if (c === 0x27 /* ' */ || c === 0x22 /* " */ || c === 0x60 /* ` */) {
            this.#quote = c;
            this.#state = c === 0x60 ? BTICK : c === 0x27 ? SQUOTE : DQUOTE;
            break;
          }
          if (this.#exec && c === 0x2a /* * */) {
            this.#execBack = BODY;
            this.#state = EXEC_STAR;
            break;
          }
          this.#comment(c, BODY);
          break;
        case EXEC_STAR:
          if (c === 0x2f /* / */) {
            this.#exec = false;
            this.#state = this.#execBack;
            break;
          }
          // A lone '*' was code.
          this.#state = BODY;
          continue;
        case SQUOTE:
          if (c === 0x5c /* \ */) {
            this.sawQuotedBackslash = true;
            if (this.#escapeInSingle) this.#state = QUOTE_ESCAPE;
          } else if (c === 0x27) this.#state = BODY;
          break;
        case DQUOTE:
          if (c === 0x5c) {
            this.sawQuotedBackslash = true;
            if (this.#escapeInDouble) this.#state = QUOTE_ESCAPE;
          } else if (c === 0x22) this.#state = BODY;
          break;
        case QUOTE_ESCAPE:
          this.#state = this.#quote === 0x27 ? SQUOTE : DQUOTE;
          break;
        case BTICK:
          if (c === 0x60) this.#state = BODY;
          break;
        case LINE_COMMENT:
          // NUL ends it too in MariaDB's lexer (`while ((c = yyGet()) != '\n' && c)`): what follows is read as code.
          if (c === 0x0a || c === 0) this.#state = this.#back;
          break;
        case BLOCK_COMMENT:
          if (c === 0x2a) this.#state = BLOCK_STAR;
          break;
        case BLOCK_STAR:
          if (c === 0x2f) this.#state = this.#back;
          else if (c !== 0x2a) this.#state = BLOCK_COMMENT;
          break;
        case DASH:
          if (c === 0x2d) {
            this.#state = DASH2;
            break;
          }
          this.#notComment();
          continue;
        case DASH2:
          if (c === 0x0a) {
            // `--\n` is a comment that ends at once: the next line is code.
            this.#state = this.#back;
            break;
          }
          if (endsDoubleDash(c)) {
            this.#state = LINE_COMMENT;
            break;
          }
          if (c === 0x2d) {
            // `---`: the first '-' was code; the last two may still open a comment.
            this.#back = BODY;
            break;
          }
          this.#notComment();
          continue;
        case SLASH:
          if (c === 0x2a) {
            this.#state = SLASH_STAR;
            break;
          }
          this.#notComment();
          continue;
        case SLASH_STAR:
          if (c === 0x21 /* ! */) {
            this.#state = EXEC_VERSION;
            break;
          }
          if (c === 0x4d /* M */) {
            this.#state = SLASH_STAR_M;
            break;
          }
          this.#state = BLOCK_COMMENT;
          continue;
        case SLASH_STAR_M:
          if (c === 0x21) {
            this.#state = EXEC_VERSION;
            break;
          }
          this.#state = BLOCK_COMMENT;
          continue;
        case EXEC_VERSION:
          if (c >= 0x30 && c <= 0x39) break;
          // The comment's content is code: carry on where the comment began.
          this.#exec = true;
          this.#state = this.#back;
          continue;
        case GAP:
          if (isSpace(c)) break;
          if (this.#comment(c, GAP)) break;
          if (this.#exec && c === 0x2a) {
            this.#execBack = GAP;
            this.#state = EXEC_STAR;
            break;
          }
          this.#nameLength = 0;
          this.#nameTooLong = false;
          if (c === 0x60 || c === 0x22 || c === 0x27) {
            this.#quote = c;
            this.#state = NAME_QUOTED;
            break;
          }
          if (isWordChar(c)) {
            this.#state = NAME;
            continue;
          }
          // `USE` with no name (or a syntax error): nothing to check, the server refuses it.
          this.#state = BODY;
          continue;
        case NAME:
          if (isWordChar(c)) {
            this.#nameByte(c);
            break;
          }
          this.#emitName();
          this.#state = BODY;
          continue;
        case NAME_QUOTED:
          if (c === this.#quote) this.#state = NAME_QUOTE_END;
          else this.#nameByte(c);
          break;
        case NAME_QUOTE_END:
          if (c === this.#quote) {
            this.#nameByte(c);
            this.#state = NAME_QUOTED;
            break;
          }
          this.#emitName();
          this.#state = BODY;
          continue;
      }
      i++;
    }
  }

  /** The query text ended: a name or word in progress is complete. */
  finish(): void {
    switch (this.#state) {
      case WORD:
        this.#endWord();
        break;
      case NAME:
      case NAME_QUOTE_END:
        this.#emitName();
        break;
      case NAME_QUOTED:
        // Unterminated: the server refuses it, but a partial name is still checked.
        this.#emitName();
        break;
    }
    this.#state = START;
  }

  /** Starts a comment if `c` opens one; `back` is where it returns. */
  #comment(c: number, back: number): boolean {
    if (c === 0x23 /* # */) {
      this.#back = back;
      this.#state = LINE_COMMENT;
      return true;
    }
    if (c === 0x2d /* - */) {
      this.#back = back;
      this.#state = DASH;
      return true;
    }
    if (c === 0x2f /* / */) {
      this.#back = back;
      this.#state = SLASH;
      return true;
    }
    return false;
  }

  /** A '-', '--' or '/' that did not open a comment: it was code. */
  #notComment(): void {
    // Code at a statement start or in the gap after USE: neither a word nor a name follows.
    this.#state = BODY;
  }

  #endWord(): void {
    // "use" = 0x75 0x73 0x65; "prepare" and "execute" by length and first four bytes ("prep", "exec").
    if (this.#wordLength === 7 && (this.#word === 0x70726570 || this.#word === 0x65786563)) this.dynamic = true;
    this.#state = this.#wordLength === 3 && this.#word === 0x757365 ? GAP : BODY;
  }

  #nameByte(c: number): void {
    if (this.#nameLength >= MAX_NAME_BYTES) {
      this.#nameTooLong = true;
      return;
    }
    this.#name[this.#nameLength++] = c;
  }

  #emitName(): void {
    // An over-long name cannot be a real database: report it whole-ish so it is refused.
    const name = this.#name.toString('utf8', 0, this.#nameLength) + (this.#nameTooLong ? '\u2026' : '');
    (this.found ??= []).push(name);
  }
}

/**
 * The USE statements of a query under every quoting rule a session may be
 * in. A whole query (`scan`) is read the default way first and again under
 * the other rules only when it has a backslash inside a quote (nothing else
 * reads differently); a query streamed in pieces (`feed`) is read all three
 * ways at once, since the backslash may come after bytes already passed.
 * The union is what the guard checks: a false alarm needs a string that
 * hides `; USE <db on another backend>` behind a backslash.
 */
export class UseScanner {
  readonly #readings = [new SqlReading(DEFAULT_QUOTING), new SqlReading(ANSI_QUOTES_QUOTING), new SqlReading(NO_BACKSLASH_ESCAPES_QUOTING)] as const;

  /** Database names of the USE statements seen under any reading; null while there are none. */
  get found(): string[] | null {
    let found: string[] | null = null;
    for (const reading of this.#readings) {
      if (reading.found === null) continue;
      found ??= [];
      for (const name of reading.found) if (!found.includes(name)) found.push(name);
    }
    return found;
  }

  /** A statement begins with PREPARE or EXECUTE under any reading. */
  get dynamic(): boolean {
    return this.#readings.some((reading) => reading.dynamic);
  }

  /** Whether the last `scan` met PREPARE or EXECUTE. */
  scannedDynamic = false;

  reset(): void {
    for (const reading of this.#readings) reading.reset();
  }

  /** Streams bytes [from, to) of the query text through every reading. */
  feed(buf: Buffer, from: number, to: number): void {
    for (const reading of this.#readings) reading.feed(buf, from, to);
  }

  finish(): void {
    for (const reading of this.#readings) reading.finish();
  }

  /** Reads a whole query text [from, to) and returns its USE targets under any reading (null: none); leaves the scanner reset. */
  scan(buf: Buffer, from: number, to: number): string[] | null {
    const [first, ansi, noEscapes] = this.#readings;
    this.reset();
    first.feed(buf, from, to);
    first.finish();
    if (first.sawQuotedBackslash) {
      ansi.feed(buf, from, to);
      ansi.finish();
      noEscapes.feed(buf, from, to);
      noEscapes.finish();
    }
    const found = this.found;
    this.scannedDynamic = this.dynamic;
    this.reset();
    return found;
  }
}

/**
 * The database a COM_CHANGE_USER payload (command byte included) switches
 * to ('' for none), or null when the payload is malformed.
 */
export function changeUserDatabase(payload: Buffer, capabilities: number): string | null {
  let at = 1;
  const userEnd = payload.indexOf(0, at);
  if (userEnd < 0) return null;
  at = userEnd + 1;
  if ((capabilities & CLIENT_SECURE_CONNECTION) !== 0) {
    if (at >= payload.length) return null;
    at += 1 + (payload[at] as number);
  } else {
    const authEnd = payload.indexOf(0, at);
    if (authEnd < 0) return null;
    at = authEnd + 1;
  }
  if (at > payload.length) return null;
  if (at === payload.length) return '';
  const dbEnd = payload.indexOf(0, at);
  return payload.toString('utf8', at, dbEnd < 0 ? payload.length : dbEnd);
}

/** What a complete command payload asks for. */
export type CommandCheck =
  | null //                                     nothing to check
  | { readonly databases: readonly string[] } // must route to the session's backend
  | { readonly malformed: string }; //          refuse as a protocol error

/**
 * Inspects one whole command payload (command byte first). `scanner` is
 * reused between calls (no allocation unless a USE is found).
 */
export function inspectCommand(payload: Buffer, capabilities: number, scanner: UseScanner): CommandCheck {
  if (payload.length === 0) return null;
  switch (payload[0]) {
    case COM_INIT_DB:
      return { databases: [payload.toString('utf8', 1)] };
    case COM_QUERY:
    case COM_STMT_PREPARE: {
      const found = scanner.scan(payload, 1, payload.length);
      if (scanner.scannedDynamic) return { malformed: 'PREPARE and EXECUTE (SQL built at run time) are not allowed through the proxy' };
      return found === null ? null : { databases: found };
    }
    case COM_CHANGE_USER: {
      const db = changeUserDatabase(payload, capabilities);
      if (db === null) return { malformed: 'malformed COM_CHANGE_USER' };
      return db === '' ? null : { databases: [db] };
    }
    default:
      return null;
  }
}

/** Commands whose payload names a database. */
export function isCheckedCommand(command: number): boolean {
  return command === COM_INIT_DB || command === COM_QUERY || command === COM_CHANGE_USER || command === COM_STMT_PREPARE;
}
