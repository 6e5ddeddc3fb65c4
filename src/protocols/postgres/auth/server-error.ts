/**
 * A PostgreSQL server's ErrorResponse during the proxy's own login, kept
 * whole so the client can be answered with the server's exact bytes and
 * SQLSTATE.
 */
import { PolyproxyError } from '../../../core/errors.ts';
import type { FailureKind } from '../../../core/errors.ts';
import { MSG_ERROR, message } from './messages.ts';

export class PostgresServerError extends PolyproxyError {
  /** Field code → value: 'S' severity, 'C' SQLSTATE, 'M' message, 'D' detail, 'H' hint... */
  readonly fields: ReadonlyMap<string, string>;
  readonly sqlstate: string;
  /** The ErrorResponse as the server sent it (type byte and length included), to forward as is. */
  readonly raw: Buffer;

  constructor(fields: ReadonlyMap<string, string>, body: Buffer) {
    const sqlstate = fields.get('C') ?? 'XX000';
    // The server answered: not a failure of the endpoint, so no breaker accounting ('internal', not 'backend').
    super(kindOf(sqlstate), `the server refused the login: ${fields.get('M') ?? 'no message'} (SQLSTATE ${sqlstate})`, { source: 'internal' });
    this.name = 'PostgresServerError';
    this.fields = fields;
    this.sqlstate = sqlstate;
    this.raw = message(MSG_ERROR, body);
  }
}

function kindOf(sqlstate: string): FailureKind {
  if (sqlstate.startsWith('28')) return 'FORBIDDEN';
  if (sqlstate === '3D000') return 'NOT_FOUND';
  if (sqlstate === '53300') return 'TOO_MANY';
  if (sqlstate.startsWith('57P')) return 'UNAVAILABLE';
  return 'INTERNAL';
}
