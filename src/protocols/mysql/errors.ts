/**
 * Failures as MySQL ERR packets, so the mariadb CLI and drivers show a real
 * error number and SQLSTATE instead of "Lost connection to server".
 * Codes are the server's own where one fits
 * (https://mariadb.com/kb/en/mariadb-error-code-reference/).
 */
import { PolyproxyError } from '../../core/errors.ts';
import type { FailureKind, FailureSource } from '../../core/errors.ts';
import { errPacket } from './packets.ts';

export interface MysqlErrorCode {
  readonly code: number;
  readonly sqlState: string;
}

/** Error number and SQLSTATE per failure kind. */
export const MYSQL_ERRORS: Readonly<Record<FailureKind, MysqlErrorCode>> = {
  NOT_FOUND: { code: 1049, sqlState: '42000' }, //           ER_BAD_DB_ERROR "Unknown database"
  FORBIDDEN: { code: 1044, sqlState: '42000' }, //           ER_DBACCESS_DENIED_ERROR
  UNAVAILABLE: { code: 3032, sqlState: 'HY000' }, //         ER_SERVER_OFFLINE_MODE: try again later
  TIMEOUT: { code: 3032, sqlState: 'HY000' },
  INTERNAL: { code: 1105, sqlState: 'HY000' }, //            ER_UNKNOWN_ERROR
  BACKEND_UNREACHABLE: { code: 2003, sqlState: 'HY000' }, // CR_CONN_HOST_ERROR "Can't connect to server"
  PROTOCOL: { code: 1043, sqlState: '08S01' }, //            ER_HANDSHAKE_ERROR "Bad handshake"
  HANDSHAKE_TIMEOUT: { code: 1043, sqlState: '08S01' },
  TLS_REQUIRED: { code: 3159, sqlState: 'HY000' }, //        ER_SECURE_TRANSPORT_REQUIRED
  TOO_MANY: { code: 1040, sqlState: '08004' }, //            ER_CON_COUNT_ERROR "Too many connections"
  LIMITED: { code: 1040, sqlState: '08004' }, //             the same, for one tenant's limit
  SHUTTING_DOWN: { code: 1053, sqlState: '08S01' }, //       ER_SERVER_SHUTDOWN "Server shutdown in progress"
};

/** The refusal of a `USE`/COM_INIT_DB/COM_CHANGE_USER whose database lives on another backend. */
export const OTHER_BACKEND: MysqlErrorCode = MYSQL_ERRORS.FORBIDDEN;

/**
 * The message for a failure. `database` is the resource id (the database,
 * or the user name when the client named none).
 */
export function errorMessage(err: PolyproxyError, database: string | undefined): string {
  const db = database === undefined ? 'the requested database' : `'${database}'`;
  switch (err.kind) {
    case 'NOT_FOUND':
      return `Unknown database ${db} (not routed by this proxy)`;
    case 'FORBIDDEN':
      return `Access denied to database ${db}`;
    case 'UNAVAILABLE':
    case 'TIMEOUT':
      return `Database ${db} is unavailable right now, try again later`;
    case 'BACKEND_UNREACHABLE':
      return `Can't connect to the server for database ${db}`;
    case 'TLS_REQUIRED':
      return `Connection to ${db} refused: ${err.message}`;
    case 'TOO_MANY':
      return 'Too many connections';
    case 'LIMITED':
      return `Too many connections for tenant ${db} (${err.message})`;
    case 'SHUTTING_DOWN':
      return 'Server shutdown in progress';
    case 'PROTOCOL':
      return `Bad handshake: ${err.message}`;
    case 'HANDSHAKE_TIMEOUT':
      return 'Bad handshake: timeout waiting for the handshake';
    case 'INTERNAL':
      return `Internal proxy error while connecting to ${db}`;
  }
}

/**
 * Encodes a failure as an ERR packet with sequence id `seq`. `protocol41`
 * says whether the client has announced CLIENT_PROTOCOL_41 yet (before that
 * the SQLSTATE is left out, as servers do).
 */
export function encodeFailure(err: PolyproxyError, database: string | undefined, seq: number, protocol41: boolean): Buffer {
  const { code, sqlState } = MYSQL_ERRORS[err.kind];
  return errPacket(seq, code, protocol41 ? sqlState : null, errorMessage(err, database));
}

/**
 * A failure whose ERR packet is already formed, e.g. the backend's own
 * "Access denied" re-sequenced for the client; `packet` null closes silently.
 */
export class MysqlReplyError extends PolyproxyError {
  readonly packet: Buffer | null;

  constructor(kind: FailureKind, message: string, packet: Buffer | null, options: { source?: FailureSource; resourceId?: string } = {}) {
    super(kind, message, options);
    this.name = 'MysqlReplyError';
    this.packet = packet;
  }
}
