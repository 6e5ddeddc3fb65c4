/**
 * Which database a command switches the session to, as pure functions over
 * command payloads: COM_INIT_DB, COM_CHANGE_USER, and COM_QUERY (or
 * COM_STMT_PREPARE: `USE` can be prepared) statements that begin with `USE`
 * (anywhere in a multi-statement query).
 *
 * The SQL scan is a byte-level state machine that can be fed a query in
 * pieces: it skips string literals, quoted identifiers and comments
 * (`-- `, `#`, `/* *\/`), and reads MySQL's executable comments (`/*! ... *\/`,
 * `/*M! ... *\/`) as code, since the server runs what is inside them.
 * Whether a backslash escapes a quote depends on the session's sql_mode
 * (NO_BACKSLASH_ESCAPES; ANSI_QUOTES makes `"` quote identifiers, where it
 * never does), which the proxy does not know: at the first backslash in a
 * quoted string the scanner forks a twin that reads it literally, and a
 * `USE` either reading finds is checked (issue 15).
 * SQL built at run time cannot be scanned, and MariaDB runs `USE` there
 * (`PREPARE s FROM @q`, `EXECUTE IMMEDIATE`): a statement that begins with
 * PREPARE or EXECUTE sets `dynamic`, and the guard refuses it (issue 15).
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

/** Identifier characters: [A-Za-z0-9_$] and any non-ASCII byte. */
function isWordChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x24 || c >= 0x80;
}

export class UseScanner {
  /** Database names of the `USE` statements seen so far; null while there are none. */
  found: string[] | null = null;
  /** A statement begins with PREPARE or EXECUTE. */
  dynamic = false;
  #state = START;
  /** Where a comment or string returns to when it ends. */
  #back = START;
  #quote = 0;
  #exec = false;
  /** Where a `*` inside an executable comment returns when no `/` follows. */
  #execReturn = BODY;
  /** First word of the statement, lowercased, up to 4 bytes (only "use" matters). */
  #word = 0;
  #wordLength = 0;
  #name = Buffer.alloc(MAX_NAME_BYTES);
  #nameLength = 0;
  #nameTooLong = false;
  /** Backslashes escape inside quotes (the default sql_mode); false for the twin. */
  readonly #backslashEscapes: boolean;
  /** The literal-backslash reading, forked at the first backslash in a quoted string. */
  #twin: UseScanner | null = null;

  constructor(backslashEscapes = true) {
    this.#backslashEscapes = backslashEscapes;
  }

  reset(): void {
    this.found = null;
    this.dynamic = false;
    this.#twin = null;
    this.#state = START;
    this.#back = START;
    this.#exec = false;
    this.#wordLength = 0;
    this.#nameLength = 0;
    this.#nameTooLong = false;
  }

  /** Scans bytes [from, to) of the query text. */
  feed(buf: Buffer, from: number, to: number): void {
    this.#twin?.feed(buf, from, to);
    let i = from;
    while (i < to) {
      const c = buf[i] as number;
      switch (this.#state) {
        case START:
          if (isSpace(c) || c === 0x3b /* ; */) break;
          if (this.#comment(c, START)) break;
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
            this.#execReturn = BODY;
            this.#state = EXEC_STAR;
            break;
          }
          this.#comment(c, BODY);
          break;
        case EXEC_STAR:
          this.#state = this.#execReturn;
          if (c === 0x2f /* / */) {
            this.#exec = false;
            break;
          }
          continue;
        case SQUOTE:
        case DQUOTE:
          if (c === 0x5c /* \ */ && this.#backslashEscapes) {
            if (this.#twin === null) (this.#twin = this.#fork()).feed(buf, i, to);
            this.#state = QUOTE_ESCAPE;
          } else if (c === this.#quote) this.#state = BODY;
          break;
        case QUOTE_ESCAPE:
          this.#state = this.#quote === 0x27 ? SQUOTE : DQUOTE;
          break;
        case BTICK:
          if (c === 0x60) this.#state = BODY;
          break;
        case LINE_COMMENT:
          // NUL ends it too: whatever the server does there, the scanner reads on as code.
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
          // MariaDB's lexer: `--` then a space or any control character (my_isspace || my_iscntrl).
          if (isSpace(c) || c < 0x20 || c === 0x7f) {
            this.#state = LINE_COMMENT;
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
          if (this.#exec && c === 0x2a) {
            // `/*!use*/ name`: the executable comment ends between USE and its name.
            this.#execReturn = GAP;
            this.#state = EXEC_STAR;
            break;
          }
          if (this.#comment(c, GAP)) break;
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
    const twin = this.#twin;
    if (twin !== null) {
      if (twin.found !== null) this.#merge(twin.found);
      if (twin.dynamic) this.dynamic = true;
    }
  }

  /** The query text ended: a name or word in progress is complete. */
  finish(): void {
    const twin = this.#twin;
    if (twin !== null) {
      twin.finish();
      if (twin.found !== null) this.#merge(twin.found);
      if (twin.dynamic) this.dynamic = true;
    }
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

  /** A copy of this scanner's state that reads backslashes in quotes literally. */
  #fork(): UseScanner {
    const twin = new UseScanner(false);
    twin.found = this.found === null ? null : [...this.found];
    twin.dynamic = this.dynamic;
    twin.#state = this.#state;
    twin.#back = this.#back;
    twin.#quote = this.#quote;
    twin.#exec = this.#exec;
    twin.#execReturn = this.#execReturn;
    twin.#word = this.#word;
    twin.#wordLength = this.#wordLength;
    this.#name.copy(twin.#name, 0, 0, this.#nameLength);
    twin.#nameLength = this.#nameLength;
    twin.#nameTooLong = this.#nameTooLong;
    return twin;
  }

  /** Adds the twin's names this reading did not find. */
  #merge(names: readonly string[]): void {
    for (const name of names) {
      if (this.found === null) this.found = [name];
      else if (!this.found.includes(name)) this.found.push(name);
    }
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
      scanner.reset();
      scanner.feed(payload, 1, payload.length);
      scanner.finish();
      const found = scanner.found;
      scanner.found = null;
      if (scanner.dynamic) return { malformed: 'PREPARE and EXECUTE (SQL built at run time) are not allowed through the proxy' };
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
