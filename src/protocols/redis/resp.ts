/**
 * RESP parsers for the opening (https://redis.io/docs/latest/develop/reference/protocol-spec/).
 *
 * - `commandParser`: the client's commands before it authenticated, as
 *   Redis 7 reads them (networking.c processMultibulkBuffer /
 *   processInlineBuffer): a multibulk array of bulk strings, or an inline
 *   line. The limits Redis applies to a client that has not authenticated
 *   apply here too (at most 10 arguments, bulks of at most 16 KiB), with
 *   Redis's own error texts, since that is exactly the state the client is
 *   in while the proxy reads its opening.
 * - `replyParser`: one RESP2 or RESP3 reply of the backend (the answer to the
 *   replayed AUTH / HELLO), any type, nested.
 *
 * Pure functions over the buffered bytes (core's OpeningParser): they return
 * the value and the bytes used, undefined to wait for more, or throw
 * PolyproxyError('PROTOCOL').
 */
import { PolyproxyError } from '../../core/errors.ts';
import type { OpeningParser } from '../../core/client-connection.ts';

/** Redis's PROTO_INLINE_MAX_SIZE: an inline line, or a `*`/`$` count line, may not grow past this. */
export const INLINE_MAX = 64 * 1024;
/** Arguments a client may send before it authenticated (Redis 7: "unauthenticated multibulk length"). */
export const UNAUTHENTICATED_MAX_ARGS = 10;
/** Bulk length a client may send before it authenticated (Redis 7: "unauthenticated bulk length"). */
export const UNAUTHENTICATED_MAX_BULK = 16384;
/** Nesting a backend reply may have (aggregates in aggregates). */
export const MAX_REPLY_DEPTH = 32;

const CR = 0x0d;
const LF = 0x0a;

/** A client command: its arguments (binary-safe), or null for what Redis ignores (`*0`, `*-1`, an empty inline line). */
export type Command = readonly Buffer[] | null;

function protocolError(text: string): PolyproxyError {
  return new PolyproxyError('PROTOCOL', `Protocol error: ${text}`, { source: 'client' });
}

/**
 * Redis's string2ll: an optional '-', then digits without a leading zero
 * (except "0" itself), within 64 bits. Null when `bytes[from..to)` is not one.
 */
export function parseInteger(bytes: Buffer, from: number, to: number): number | null {
  let at = from;
  if (at >= to || to - at > 20) return null;
  const negative = bytes[at] === 0x2d;
  if (negative) at++;
  if (at >= to) return null;
  if (bytes[at] === 0x30 && to - at > 1) return null;
  let value = 0;
  for (; at < to; at++) {
    const digit = (bytes[at] as number) - 0x30;
    if (digit < 0 || digit > 9) return null;
    value = value * 10 + digit;
  }
  if (!Number.isSafeInteger(value)) return null;
  return negative ? -value : value;
}

/** Parses one client command (multibulk or inline); see the module comment. */
export const commandParser: OpeningParser<Command> = (buffered) => {
  return buffered[0] === 0x2a ? multibulk(buffered) : inline(buffered);
};

function multibulk(buf: Buffer): { value: Command; consumed: number } | undefined {
  const cr = buf.indexOf(CR, 1);
  if (cr < 0) {
    if (buf.length > INLINE_MAX) throw protocolError('too big mbulk count string');
    return undefined;
  }
  if (cr + 1 >= buf.length) return undefined;
  const count = parseInteger(buf, 1, cr);
  if (buf[cr + 1] !== LF || count === null || count > 0x7fffffff) throw protocolError('invalid multibulk length');
  let at = cr + 2;
  if (count <= 0) return { value: null, consumed: at };
  if (count > UNAUTHENTICATED_MAX_ARGS) throw protocolError('unauthenticated multibulk length');
  const args: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    if (at >= buf.length) return undefined;
    if (buf[at] !== 0x24) throw protocolError(`expected '$', got '${String.fromCharCode(buf[at] as number)}'`);
    const lineEnd = buf.indexOf(CR, at + 1);
    if (lineEnd < 0) {
      if (buf.length - at > INLINE_MAX) throw protocolError('too big bulk count string');
      return undefined;
    }
    if (lineEnd + 1 >= buf.length) return undefined;
    const size = parseInteger(buf, at + 1, lineEnd);
    if (buf[lineEnd + 1] !== LF || size === null || size < 0) throw protocolError('invalid bulk length');
    if (size > UNAUTHENTICATED_MAX_BULK) throw protocolError('unauthenticated bulk length');
    const start = lineEnd + 2;
    if (start + size + 2 > buf.length) return undefined;
    if (buf[start + size] !== CR || buf[start + size + 1] !== LF) throw protocolError('invalid bulk length');
    args.push(buf.subarray(start, start + size));
    at = start + size + 2;
  }
  return { value: args, consumed: at };
}

function inline(buf: Buffer): { value: Command; consumed: number } | undefined {
  const lf = buf.indexOf(LF);
  if (lf < 0) {
    if (buf.length > INLINE_MAX) throw protocolError('too big inline request');
    return undefined;
  }
  const end = lf > 0 && buf[lf - 1] === CR ? lf - 1 : lf;
  const args = splitArgs(buf.subarray(0, end));
  if (args === null) throw protocolError('unbalanced quotes in request');
  if (args.length > UNAUTHENTICATED_MAX_ARGS) throw protocolError('unauthenticated multibulk length');
  return { value: args.length === 0 ? null : args, consumed: lf + 1 };
}

function isSpace(c: number | undefined): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0b || c === 0x0c || c === 0x00;
}

function hexValue(c: number | undefined): number {
  if (c === undefined) return -1;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/**
 * Redis's sdssplitargs: words separated by spaces; "double quotes" with
 * \n \r \t \b \a \\ \" and \xHH escapes; 'single quotes' with \'; a closing
 * quote must be followed by a space or the end. Null on unbalanced quotes.
 */
export function splitArgs(line: Buffer): Buffer[] | null {
  const args: Buffer[] = [];
  let at = 0;
  const n = line.length;
  while (true) {
    while (at < n && isSpace(line[at])) at++;
    if (at >= n) return args;
    const out: number[] = [];
    let inDouble = false;
    let inSingle = false;
    let done = false;
    while (!done) {
      const c = line[at];
      if (inDouble) {
        if (c === undefined) return null;
        if (c === 0x5c && line[at + 1] === 0x78 && hexValue(line[at + 2]) >= 0 && hexValue(line[at + 3]) >= 0) {
          out.push(hexValue(line[at + 2]) * 16 + hexValue(line[at + 3]));
          at += 3;
        } else if (c === 0x5c && at + 1 < n) {
          at++;
          const e = line[at] as number;
          out.push(e === 0x6e ? 0x0a : e === 0x72 ? 0x0d : e === 0x74 ? 0x09 : e === 0x62 ? 0x08 : e === 0x61 ? 0x07 : e);
        } else if (c === 0x22) {
          if (at + 1 < n && !isSpace(line[at + 1])) return null;
          done = true;
        } else out.push(c);
      } else if (inSingle) {
        if (c === undefined) return null;
        if (c === 0x5c && line[at + 1] === 0x27) {
          at++;
          out.push(0x27);
        } else if (c === 0x27) {
          if (at + 1 < n && !isSpace(line[at + 1])) return null;
          done = true;
        } else out.push(c);
      } else if (c === undefined || isSpace(c)) {
        done = true;
      } else if (c === 0x22) inDouble = true;
      else if (c === 0x27) inSingle = true;
      else out.push(c);
      if (at < n) at++;
    }
    args.push(Buffer.from(out));
  }
}

/** A command as RESP: an array of bulk strings (what the proxy replays, whatever form the client used). */
export function encodeCommand(args: readonly (Buffer | string)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = typeof arg === 'string' ? Buffer.from(arg) : arg;
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** One backend reply: its bytes, and whether it is an error (`-...` or RESP3's blob error `!`). */
export interface Reply {
  readonly raw: Buffer;
  readonly error: boolean;
}

function replyError(text: string): PolyproxyError {
  return new PolyproxyError('BACKEND_UNREACHABLE', `the backend sent a malformed reply: ${text}`, { source: 'backend' });
}

/** Where the reply starting at `at` ends; -1 when it is not complete yet. Attributes (`|`) belong to the reply they precede. */
function replyEnd(buf: Buffer, at: number, depth: number): number {
  if (depth > MAX_REPLY_DEPTH) throw replyError('nested too deeply');
  if (at >= buf.length) return -1;
  const type = buf[at] as number;
  const cr = buf.indexOf(CR, at + 1);
  if (cr < 0) {
    if (buf.length - at > INLINE_MAX) throw replyError('line too long');
    return -1;
  }
  if (cr + 1 >= buf.length) return -1;
  if (buf[cr + 1] !== LF) throw replyError('line without CRLF');
  const next = cr + 2;
  switch (type) {
    case 0x2b: // + simple string
    case 0x2d: // - simple error
    case 0x3a: // : integer
    case 0x5f: // _ null
    case 0x23: // # boolean
    case 0x2c: // , double
    case 0x28: // ( big number
      return next;
    case 0x24: // $ bulk string
    case 0x21: // ! blob error
    case 0x3d: {
      // = verbatim string
      const size = parseInteger(buf, at + 1, cr);
      if (size === null || size < -1 || (size === -1 && type !== 0x24)) throw replyError('bad bulk length');
      if (size === -1) return next;
      if (next + size + 2 > buf.length) return -1;
      if (buf[next + size] !== CR || buf[next + size + 1] !== LF) throw replyError('bulk without CRLF');
      return next + size + 2;
    }
    case 0x2a: // * array
    case 0x7e: // ~ set
    case 0x3e: // > push
    case 0x25: // % map
    case 0x7c: {
      // | attribute
      const count = parseInteger(buf, at + 1, cr);
      if (count === null || count < -1 || (count === -1 && type !== 0x2a)) throw replyError('bad aggregate length');
      const items = type === 0x25 || type === 0x7c ? count * 2 : count;
      let end = next;
      for (let i = 0; i < items; i++) {
        end = replyEnd(buf, end, depth + 1);
        if (end < 0) return -1;
      }
      // An attribute is followed by the reply it annotates.
      return type === 0x7c ? replyEnd(buf, end, depth + 1) : end;
    }
    default:
      throw replyError(`unknown type byte 0x${type.toString(16).padStart(2, '0')}`);
  }
}

/** Reads one complete backend reply (see Reply). */
export const replyParser: OpeningParser<Reply> = (buffered) => {
  const end = replyEnd(buffered, 0, 0);
  if (end < 0) return undefined;
  let first = 0;
  // Skip attributes to see the reply's own type.
  while (buffered[first] === 0x7c) {
    const cr = buffered.indexOf(CR, first);
    const count = parseInteger(buffered, first + 1, cr) as number;
    let at = cr + 2;
    for (let i = 0; i < count * 2; i++) at = replyEnd(buffered, at, 1);
    first = at;
  }
  const type = buffered[first];
  return { value: { raw: buffered.subarray(0, end), error: type === 0x2d || type === 0x21 }, consumed: end };
};
