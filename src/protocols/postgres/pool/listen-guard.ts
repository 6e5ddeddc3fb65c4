/**
 * LISTEN in transaction mode: a LISTEN registers on the server connection,
 * which goes to another client after the transaction, so the client would
 * never hear its notifications (and the next client would). The pool
 * refuses it: a Query or Parse whose first statement is LISTEN is replaced
 * by a statement that makes the server itself raise 0A000
 * (feature_not_supported), so the error comes in order, with the server's
 * own transaction semantics (an open transaction is aborted, as PostgreSQL
 * would on an error). A LISTEN hidden later in a multi-statement query is
 * caught by its CommandComplete tag instead: that server connection is then
 * closed rather than reused.
 */

/** The SQL that raises the refusal. */
export const LISTEN_REFUSAL_SQL =
  "DO $pp$BEGIN RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = 'LISTEN is not supported in transaction pooling mode', HINT = 'Use a pool with mode: session for LISTEN/NOTIFY.'; END$pp$";

const L = 0x6c;
const LISTEN = Buffer.from('listen');

/** True when the SQL in `buf[start, end)` starts (after blanks and comments) with the keyword LISTEN. */
export function startsWithListen(buf: Buffer, start: number, end: number): boolean {
  let at = start;
  while (at < end) {
    const c = buf[at] as number;
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0c || c === 0x28 /* ( */) {
      at++;
      continue;
    }
    if (c === 0x2d && buf[at + 1] === 0x2d) {
      // -- comment to the end of the line
      const nl = buf.indexOf(0x0a, at + 2);
      at = nl < 0 || nl >= end ? end : nl + 1;
      continue;
    }
    if (c === 0x2f && buf[at + 1] === 0x2a) {
      // /* comment */, nested as in PostgreSQL
      let depth = 1;
      at += 2;
      while (at < end && depth > 0) {
        if (buf[at] === 0x2f && buf[at + 1] === 0x2a) {
          depth++;
          at += 2;
        } else if (buf[at] === 0x2a && buf[at + 1] === 0x2f) {
          depth--;
          at += 2;
        } else at++;
      }
      continue;
    }
    break;
  }
  if (end - at < 6 || ((buf[at] as number) | 0x20) !== L) return false;
  for (let i = 1; i < 6; i++) if (((buf[at + i] as number) | 0x20) !== LISTEN[i]) return false;
  if (at + 6 === end) return true;
  const next = buf[at + 6] as number;
  // A keyword ends at a blank, a quote, a comment or a NUL; "listener_table" is not LISTEN.
  return next === 0 || next === 0x20 || next === 0x09 || next === 0x0a || next === 0x0d || next === 0x22 || next === 0x2d || next === 0x2f || next === 0x3b;
}

/** True when a CommandComplete tag (body without its NUL) is LISTEN's. */
export function isListenTag(buf: Buffer, start: number, end: number): boolean {
  return end - start >= 6 && buf.toString('latin1', start, start + 6) === 'LISTEN';
}
