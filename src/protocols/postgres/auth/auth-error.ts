/**
 * A refusal of the client's authentication, answered as PostgreSQL would:
 * a FATAL ErrorResponse with this SQLSTATE and message.
 */
import { PolyproxyError } from '../../../core/errors.ts';

export class PostgresAuthError extends PolyproxyError {
  readonly sqlstate: string;

  constructor(sqlstate: string, message: string, options: { resourceId?: string } = {}) {
    super(sqlstate === '08P01' ? 'PROTOCOL' : 'FORBIDDEN', message, { source: 'client', ...options });
    this.name = 'PostgresAuthError';
    this.sqlstate = sqlstate;
  }
}

/** PostgreSQL's own words for a wrong password, a missing secret and an unknown user alike (auth.c auth_failed). */
export function passwordFailed(user: string): PostgresAuthError {
  return new PostgresAuthError('28P01', `password authentication failed for user "${user}"`);
}

/** PostgreSQL's SASL/SCRAM protocol violations (auth-scram.c): "malformed SCRAM message" and friends. */
export function protocolViolation(message: string): PostgresAuthError {
  return new PostgresAuthError('08P01', message);
}
