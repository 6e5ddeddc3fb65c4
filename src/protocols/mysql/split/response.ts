/**
 * Where a backend's answer to one command ends, and the server status it
 * ends with, read from the bytes as they pass to the client (a state
 * machine over packet headers; the payloads are not copied). The split
 * session forwards the backend's chunks untouched and asks `feed` whether
 * the answer is complete: only then may the next command go to another
 * connection, and only then is the transaction state (the last OK/EOF's
 * status flags) known.
 *
 * Framing (https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html),
 * for the flags the proxy's greeting offers (no MariaDB extended
 * capabilities, no optional result-set metadata):
 * - OK (0x00), ERR (0xFF), LOCAL INFILE request (0xFB: the client sends
 *   the file, then the server answers again), or a result set: column
 *   count, column definitions, EOF (not with CLIENT_DEPRECATE_EOF), rows,
 *   then EOF / OK-with-0xFE (or ERR); SERVER_MORE_RESULTS_EXISTS in the
 *   closing status means another result follows.
 * - COM_STMT_PREPARE: OK with the statement's column and parameter counts,
 *   then the parameter and column definitions (each list closed by an EOF
 *   without CLIENT_DEPRECATE_EOF).
 * - COM_FIELD_LIST and COM_STMT_FETCH: packets until an EOF or ERR.
 * - COM_STATISTICS: one string packet.
 * A packet of 0xFFFFFF payload bytes continues in the next one.
 */

export const SERVER_STATUS_IN_TRANS = 0x0001;
export const SERVER_STATUS_AUTOCOMMIT = 0x0002;
export const SERVER_MORE_RESULTS_EXISTS = 0x0008;
export const SERVER_STATUS_CURSOR_EXISTS = 0x0040;

/** How a command is answered. */
export const ANSWER_NONE = 0; //      COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA, COM_QUIT
export const ANSWER_RESULT = 1; //    COM_QUERY, COM_STMT_EXECUTE, COM_PROCESS_INFO: OK | ERR | INFILE | result sets
export const ANSWER_SIMPLE = 2; //    one OK / ERR / EOF
export const ANSWER_ONE = 3; //       one packet of any kind (COM_STATISTICS)
export const ANSWER_PREPARE = 4; //   COM_STMT_PREPARE
export const ANSWER_UNTIL_EOF = 5; // COM_FIELD_LIST, COM_STMT_FETCH

// States.
const FIRST = 0; //        the first packet of a result
const COLUMNS = 1; //      column definitions (#count left)
const COLUMNS_EOF = 2; //  the EOF after them (classic framing)
const ROWS = 3; //         rows until the terminator
const PARAMS = 4; //       COM_STMT_PREPARE's parameter definitions
const PARAMS_EOF = 5;
const UNTIL_EOF = 6;
const INFILE = 7; //       waiting for the client's file (see `infile`)
const DONE = 8;
const PREPARED_COLUMNS_EOF = 9; // the EOF after a prepared statement's columns (no rows follow)

/** Bytes of a packet's start the machine looks at (OK: header, two 9-byte lenencs, status). */
const HEAD = 24;
const MAX = 0xffffff;

export class ResponseTracker {
  readonly #deprecateEof: boolean;
  #state = DONE;
  #kind = ANSWER_NONE;
  #count = 0;
  /** Prepare: columns still to come after the parameters. */
  #prepareColumns = 0;
  /** The header and payload start of the current packet, gathered across chunks. */
  readonly #head = Buffer.alloc(4 + HEAD);
  #headFill = 0;
  #headNeed = 4;
  /** Payload bytes of the current packet not yet seen. */
  #skip = 0;
  /** The current packet had MAX payload bytes: the next one continues it. */
  #continues = false;
  /** Status flags of the last OK / EOF seen (-1: none in this answer). */
  status = -1;
  /** The first packet of the answer was an ERR: its error code (0 otherwise). */
  errorCode = 0;
  /** The server asked for a LOCAL INFILE: the client's packets go to the backend until an empty one. */
  infile = false;

  constructor(deprecateEof: boolean) {
    this.#deprecateEof = deprecateEof;
  }

  get done(): boolean {
    return this.#state === DONE && this.#skip === 0;
  }

  /** Starts tracking the answer to a command answered as `kind`. */
  start(kind: number): void {
    this.#kind = kind;
    this.#state = kind === ANSWER_NONE ? DONE : kind === ANSWER_UNTIL_EOF ? UNTIL_EOF : FIRST;
    this.#headFill = 0;
    this.#headNeed = 4;
    this.#skip = 0;
    this.#continues = false;
    this.status = -1;
    this.errorCode = 0;
    this.infile = false;
  }

  /** The client sent its file (the empty packet): the server's final answer follows. */
  infileSent(): void {
    this.infile = false;
    this.#state = FIRST;
  }

  /**
   * Walks `chunk` [from, to); returns how many bytes belong to this answer
   * (less than `to - from` only when the answer ended inside the chunk).
   */
  feed(chunk: Buffer, from: number, to: number): number {
    let at = from;
    while (at < to) {
      if (this.#skip > 0) {
        const take = Math.min(this.#skip, to - at);
        this.#skip -= take;
        at += take;
        continue;
      }
      if (this.#state === DONE || this.#state === INFILE) break;
      // Gather the header, then the start of the payload.
      while (this.#headFill < this.#headNeed && at < to) this.#head[this.#headFill++] = chunk[at++] as number;
      if (this.#headFill < this.#headNeed) break;
      const length = this.#head.readUIntLE(0, 3);
      if (this.#headNeed === 4 && length > 0) {
        this.#headNeed = 4 + Math.min(length, HEAD);
        continue;
      }
      const seen = this.#headFill - 4;
      this.#skip = length - seen;
      this.#headFill = 0;
      this.#headNeed = 4;
      const continued = this.#continues;
      this.#continues = length === MAX;
      if (!continued) this.#packet(length);
    }
    return at - from;
  }

  /** One logical packet's start (#head[4 .. 4 + min(length, HEAD)]). */
  #packet(length: number): void {
    const h = this.#head;
    const first = length > 0 ? (h[4] as number) : -1;
    switch (this.#state) {
      case FIRST:
        if (this.#kind === ANSWER_ONE) {
          this.#state = DONE;
          return;
        }
        if (first === 0xff) {
          if (this.errorCode === 0 && this.status === -1) this.errorCode = h.readUInt16LE(5);
          this.#state = DONE;
          return;
        }
        if (this.#kind === ANSWER_SIMPLE) {
          if (first === 0x00) this.#okStatus(length);
          else if (first === 0xfe) this.#eofStatus(length);
          this.#state = DONE;
          return;
        }
        if (this.#kind === ANSWER_PREPARE) {
          if (first !== 0x00 || length < 9) {
            this.#state = DONE;
            return;
          }
          const columns = h.readUInt16LE(9);
          const params = h.readUInt16LE(11);
          this.#prepareColumns = columns;
          if (params > 0) {
            this.#count = params;
            this.#state = PARAMS;
          } else this.#afterParams();
          return;
        }
        // ANSWER_RESULT
        if (first === 0x00) {
          this.#okStatus(length);
          this.#more();
          return;
        }
        if (first === 0xfb) {
          this.infile = true;
          this.#state = INFILE;
          return;
        }
        this.#count = this.#lenenc(length);
        this.#state = this.#count > 0 ? COLUMNS : this.#deprecateEof ? ROWS : COLUMNS_EOF;
        return;
      case COLUMNS:
        if (--this.#count === 0) {
          if (this.#kind === ANSWER_PREPARE) this.#state = this.#deprecateEof ? DONE : PREPARED_COLUMNS_EOF;
          else this.#state = this.#deprecateEof ? ROWS : COLUMNS_EOF;
        }
        return;
      case PREPARED_COLUMNS_EOF:
        this.#eofStatus(length);
        this.#state = DONE;
        return;
      case COLUMNS_EOF:
        this.#eofStatus(length);
        // A cursor was opened (COM_STMT_EXECUTE): rows come with COM_STMT_FETCH.
        this.#state = this.status !== -1 && (this.status & SERVER_STATUS_CURSOR_EXISTS) !== 0 ? DONE : ROWS;
        return;
      case ROWS:
        if (first === 0xff) {
          this.#state = DONE;
          return;
        }
        if (this.#isTerminator(first, length)) {
          if (length > 5) this.#okStatus(length);
          else this.#eofStatus(length);
          this.#more();
        }
        return;
      case PARAMS:
        if (--this.#count === 0) {
          if (this.#deprecateEof) this.#afterParams();
          else this.#state = PARAMS_EOF;
        }
        return;
      case PARAMS_EOF:
        this.#afterParams();
        return;
      case UNTIL_EOF:
        if (first === 0xff) {
          this.#state = DONE;
          return;
        }
        if (this.#isTerminator(first, length)) {
          if (length > 5) this.#okStatus(length);
          else this.#eofStatus(length);
          this.#state = DONE;
        }
        return;
    }
  }

  #afterParams(): void {
    if (this.#prepareColumns > 0) {
      // The columns of a prepared statement, then (classic framing) their EOF; no rows.
      this.#count = this.#prepareColumns;
      this.#prepareColumns = 0;
      this.#state = COLUMNS;
      return;
    }
    this.#state = DONE;
  }

  /** EOF, or (CLIENT_DEPRECATE_EOF) the OK that replaces it: 0xFE and shorter than a row could be. */
  #isTerminator(first: number, length: number): boolean {
    return first === 0xfe && (this.#deprecateEof ? length < MAX : length < 9);
  }

  /** After a result's closing status: another result, or the end. */
  #more(): void {
    this.#state = this.status !== -1 && (this.status & SERVER_MORE_RESULTS_EXISTS) !== 0 ? FIRST : DONE;
  }

  #eofStatus(length: number): void {
    if (length >= 5) this.status = this.#head.readUInt16LE(7);
  }

  #okStatus(length: number): void {
    let at = 5;
    const end = 4 + Math.min(length, HEAD);
    at = this.#skipLenenc(at, end);
    at = this.#skipLenenc(at, end);
    if (at >= 0 && at + 2 <= end) this.status = this.#head.readUInt16LE(at);
  }

  #skipLenenc(at: number, end: number): number {
    if (at < 0 || at >= end) return -1;
    const b = this.#head[at] as number;
    if (b < 0xfb) return at + 1;
    if (b === 0xfc) return at + 3;
    if (b === 0xfd) return at + 4;
    if (b === 0xfe) return at + 9;
    return -1;
  }

  /** The column count at the payload's start. */
  #lenenc(length: number): number {
    const h = this.#head;
    const b = h[4] as number;
    if (b < 0xfb) return b;
    if (b === 0xfc && length >= 3) return h.readUInt16LE(5);
    if (b === 0xfd && length >= 4) return h.readUIntLE(5, 3);
    return 0;
  }
}

/** A command's answer kind, by its command byte. */
export function answerKind(command: number): number {
  switch (command) {
    case 0x01: // COM_QUIT
    case 0x18: // COM_STMT_SEND_LONG_DATA
    case 0x19: // COM_STMT_CLOSE
      return ANSWER_NONE;
    case 0x03: // COM_QUERY
    case 0x17: // COM_STMT_EXECUTE
    case 0x0a: // COM_PROCESS_INFO
    case 0xfa: // COM_STMT_BULK_EXECUTE (MariaDB)
      return ANSWER_RESULT;
    case 0x09: // COM_STATISTICS
      return ANSWER_ONE;
    case 0x16: // COM_STMT_PREPARE
      return ANSWER_PREPARE;
    case 0x04: // COM_FIELD_LIST
    case 0x1c: // COM_STMT_FETCH
      return ANSWER_UNTIL_EOF;
    default:
      return ANSWER_SIMPLE;
  }
}
