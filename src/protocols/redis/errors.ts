/**
 * Failures as RESP simple errors (`-CODE text\r\n`), the same in RESP2 and
 * RESP3, so redis-cli prints "(error) ..." and drivers raise their
 * error type instead of seeing a dropped connection. Where Redis itself has
 * an error for the situation the proxy uses Redis's own bytes:
 * - a user nothing routes, or the resolver forbids: Redis's answer to a
 *   wrong user or password, `-WRONGPASS invalid username-password pair or
 *   user is disabled.` — a client cannot tell an unrouted user from a bad
 *   password (nor probe which tenants exist); the proxy's log says which;
 *   the connection stays open, as with Redis, for another AUTH;
 * - a command before authentication: `-NOAUTH Authentication required.`;
 * - the connection limit: `-ERR max number of clients reached`;
 * - a malformed request: `-ERR Protocol error: ...`, then close.
 * Failures Redis has no words for (backend unreachable, drain, timeouts)
 * are `-ERR` with a plain sentence, and the connection closes.
 */
import type { FailureKind, PolyproxyError } from '../../core/errors.ts';

export const WRONGPASS = '-WRONGPASS invalid username-password pair or user is disabled.\r\n';
export const NOAUTH = '-NOAUTH Authentication required.\r\n';

/** The error line (without CRLF) per failure kind. */
export function errorLine(err: PolyproxyError, user: string | undefined): string {
  const kind: FailureKind = err.kind;
  const who = user === undefined ? 'this user' : `user '${printable(user)}'`;
  switch (kind) {
    case 'NOT_FOUND':
    case 'FORBIDDEN':
      return WRONGPASS.trimEnd();
    case 'UNAVAILABLE':
    case 'TIMEOUT':
      return `-ERR the server for ${who} is unavailable, try again later`;
    case 'BACKEND_UNREACHABLE':
      return `-ERR cannot reach the server for ${who}, try again later`;
    case 'INTERNAL':
      return `-ERR internal proxy error while connecting ${who}`;
    case 'PROTOCOL':
      return `-ERR ${oneLine(err.message)}`;
    case 'HANDSHAKE_TIMEOUT':
      return '-ERR timeout waiting for AUTH or HELLO AUTH, closing connection';
    case 'TLS_REQUIRED':
      return `-ERR ${oneLine(err.message)}`;
    case 'TOO_MANY':
      return '-ERR max number of clients reached';
    case 'LIMITED':
      return `-ERR ${who} is over its limit: ${oneLine(err.message)}`;
    case 'SHUTTING_DOWN':
      return '-ERR the proxy is shutting down, closing connection';
  }
}

/** The bytes written before the connection closes. */
export function encodeError(err: PolyproxyError, user: string | undefined): Buffer {
  return Buffer.from(`${errorLine(err, user)}\r\n`);
}

/** A simple error cannot carry CR or LF. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}

/** A user name as it may appear in an error line: printable ASCII, at most 64 characters. */
function printable(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > 64 ? `${clean.slice(0, 64)}...` : clean;
}
