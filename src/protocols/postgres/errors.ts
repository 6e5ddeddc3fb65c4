/**
 * Failures as PostgreSQL ErrorResponse messages, so psql and drivers show a
 * real error with a SQLSTATE instead of "server closed the connection".
 */
import { LimitError } from '../../core/errors.ts';
import type { FailureKind, PolyproxyError } from '../../core/errors.ts';
import { PostgresAuthError } from './auth/auth-error.ts';
import { PostgresServerError } from './auth/server-error.ts';

/** SQLSTATE per failure kind (https://www.postgresql.org/docs/current/errcodes-appendix.html). */
export const SQLSTATE: Readonly<Record<FailureKind, string>> = {
  NOT_FOUND: '3D000', //           invalid_catalog_name
  FORBIDDEN: '28000', //           invalid_authorization_specification
  UNAVAILABLE: '57P03', //         cannot_connect_now
  TIMEOUT: '57P03',
  INTERNAL: 'XX000', //            internal_error
  BACKEND_UNREACHABLE: '08006', // connection_failure
  PROTOCOL: '08P01', //            protocol_violation
  HANDSHAKE_TIMEOUT: '08P01',
  TLS_REQUIRED: '28000',
  TOO_MANY: '53300', //            too_many_connections
  LIMITED: '53300', //             a tenant limit: too_many_connections too, the code clients and poolers back off on
  SHUTTING_DOWN: '57P01', //       admin_shutdown
};

/** Builds an ErrorResponse ('E') with severity FATAL. */
export function errorResponse(sqlstate: string, message: string, hint?: string): Buffer {
  // Fields are NUL-terminated: a NUL inside a value would corrupt the frame.
  const fields: Array<[string, string]> = [
    ['S', 'FATAL'],
    ['V', 'FATAL'],
    ['C', sqlstate],
    ['M', message.replaceAll('\0', '')],
  ];
  if (hint !== undefined) fields.push(['H', hint.replaceAll('\0', '')]);
  let size = 4 + 1; // length + final terminator
  for (const [, value] of fields) size += 1 + Buffer.byteLength(value) + 1;
  const out = Buffer.alloc(1 + size);
  out[0] = 0x45; // 'E'
  out.writeUInt32BE(size, 1);
  let at = 5;
  for (const [code, value] of fields) {
    out[at++] = code.charCodeAt(0);
    at += out.write(value, at);
    out[at++] = 0;
  }
  out[at] = 0;
  return out;
}

function limitText(err: PolyproxyError): string {
  switch (err instanceof LimitError ? err.limit : 'connections') {
    case 'connection-rate':
      return 'connection rate limit';
    case 'request-rate':
      return 'request rate limit';
    case 'fair-share':
      return 'over its fair share of a full listener';
    default:
      return 'connection limit';
  }
}

function retryHint(err: PolyproxyError): string {
  return err instanceof LimitError && err.retryAfterMs > 0 ? `Try again in ${err.retryAfterSeconds} s.` : 'Try again when one of its sessions has ended.';
}

export function encodeError(err: PolyproxyError, database: string | undefined): Buffer {
  // The proxy's own authentication refusals, and a backend's refusal of the proxy's login, word for word.
  if (err instanceof PostgresAuthError) return errorResponse(err.sqlstate, err.message);
  if (err instanceof PostgresServerError) return err.raw;
  const db = database === undefined ? 'the requested database' : `database "${database}"`;
  switch (err.kind) {
    case 'NOT_FOUND':
      return errorResponse(SQLSTATE.NOT_FOUND, `${db} is not routed by this proxy`, 'Check the database name, or add a route for it.');
    case 'FORBIDDEN':
      return errorResponse(SQLSTATE.FORBIDDEN, `access to ${db} is forbidden`);
    case 'UNAVAILABLE':
    case 'TIMEOUT':
      return errorResponse(SQLSTATE.UNAVAILABLE, `${db} is unavailable right now, try again later`);
    case 'BACKEND_UNREACHABLE':
      return errorResponse(SQLSTATE.BACKEND_UNREACHABLE, `cannot reach the server for ${db}`);
    case 'TLS_REQUIRED':
      return errorResponse(SQLSTATE.TLS_REQUIRED, `connection to ${db} refused: ${err.message}`);
    case 'TOO_MANY':
      return errorResponse(SQLSTATE.TOO_MANY, 'sorry, too many clients already');
    case 'LIMITED':
      return errorResponse(SQLSTATE.LIMITED, `too many connections for tenant ${database === undefined ? '' : `"${database}" `}(${limitText(err)})`, retryHint(err));
    case 'SHUTTING_DOWN':
      return errorResponse(SQLSTATE.SHUTTING_DOWN, 'terminating connection: the proxy is shutting down');
    case 'PROTOCOL':
      return errorResponse(SQLSTATE.PROTOCOL, err.message);
    case 'HANDSHAKE_TIMEOUT':
      return errorResponse(SQLSTATE.HANDSHAKE_TIMEOUT, 'timeout waiting for the startup packet');
    case 'INTERNAL':
      return errorResponse(SQLSTATE.INTERNAL, `internal proxy error while connecting to ${db}`);
  }
}
