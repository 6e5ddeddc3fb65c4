/**
 * The messages the pooling session writes itself (the rest it relays), and
 * the SQLSTATEs of its failures. Built once per event, never per relayed
 * message.
 */
import { CANCEL_REQUEST_CODE } from '../parse.ts';

// Message type bytes (frontend and backend share some letters).
export const T_AUTH = 0x52; //           'R' Authentication*
export const T_PARAMETER_STATUS = 0x53; // 'S' (backend)
export const T_SYNC = 0x53; //           'S' (frontend)
export const T_BACKEND_KEY = 0x4b; //    'K'
export const T_READY = 0x5a; //          'Z'
export const T_ERROR = 0x45; //          'E' (backend ErrorResponse)
export const T_EXECUTE = 0x45; //        'E' (frontend Execute)
export const T_NOTICE = 0x4e; //         'N'
export const T_COMMAND_COMPLETE = 0x43; // 'C' (backend)
export const T_CLOSE = 0x43; //          'C' (frontend Close)
export const T_DATA_ROW = 0x44; //       'D' (backend)
export const T_DESCRIBE = 0x44; //       'D' (frontend)
export const T_PARSE_COMPLETE = 0x31; // '1'
export const T_CLOSE_COMPLETE = 0x33; // '3'
export const T_QUERY = 0x51; //          'Q'
export const T_PARSE = 0x50; //          'P'
export const T_BIND = 0x42; //           'B'
export const T_TERMINATE = 0x58; //      'X'
export const T_FLUSH = 0x48; //          'H' (frontend)
export const T_COPY_IN = 0x47; //        'G'
export const T_COPY_OUT = 0x48; //       'H' (backend)

/** SQLSTATEs of the pool's own failures (https://www.postgresql.org/docs/current/errcodes-appendix.html). */
export const POOL_SQLSTATE = {
  /** No server connection within queueTimeoutMs, or too many clients for the tenant. */
  TOO_MANY: '53300', // too_many_connections
  /** The server connection running the client's transaction broke. */
  CONNECTION_FAILURE: '08006', // connection_failure
  /** The server could not be reached or refused the pool's login. */
  CANNOT_CONNECT: '08001', // sqlclient_unable_to_establish_sqlconnection
  /** LISTEN in transaction mode. */
  FEATURE_NOT_SUPPORTED: '0A000', // feature_not_supported
  /** Malformed client messages. */
  PROTOCOL_VIOLATION: '08P01', // protocol_violation
  /** The proxy is shutting down. */
  ADMIN_SHUTDOWN: '57P01',
} as const;

/** An ErrorResponse with severity ERROR or FATAL, SQLSTATE and message (and optional detail/hint). */
export function errorMessage(severity: 'ERROR' | 'FATAL', sqlstate: string, message: string, extra?: { detail?: string; hint?: string }): Buffer {
  const fields: Array<[number, string]> = [
    [0x53, severity], // S
    [0x56, severity], // V
    [0x43, sqlstate], // C
    [0x4d, message.replaceAll('\0', '')], // M
  ];
  if (extra?.detail !== undefined) fields.push([0x44, extra.detail.replaceAll('\0', '')]);
  if (extra?.hint !== undefined) fields.push([0x48, extra.hint.replaceAll('\0', '')]);
  let size = 4 + 1;
  for (const [, value] of fields) size += 1 + Buffer.byteLength(value) + 1;
  const out = Buffer.alloc(1 + size);
  out[0] = T_ERROR;
  out.writeUInt32BE(size, 1);
  let at = 5;
  for (const [code, value] of fields) {
    out[at++] = code;
    at += out.write(value, at);
    out[at++] = 0;
  }
  return out;
}

export function readyForQuery(status: number): Buffer {
  const out = Buffer.alloc(6);
  out[0] = T_READY;
  out.writeUInt32BE(5, 1);
  out[5] = status;
  return out;
}

export function parameterStatus(name: string, value: string): Buffer {
  const size = 4 + Buffer.byteLength(name) + 1 + Buffer.byteLength(value) + 1;
  const out = Buffer.alloc(1 + size);
  out[0] = T_PARAMETER_STATUS;
  out.writeUInt32BE(size, 1);
  let at = 5 + out.write(name, 5);
  out[at++] = 0;
  at += out.write(value, at);
  out[at] = 0;
  return out;
}

export function backendKeyData(processId: number, secretKey: Buffer): Buffer {
  const out = Buffer.alloc(9 + secretKey.length);
  out[0] = T_BACKEND_KEY;
  out.writeUInt32BE(8 + secretKey.length, 1);
  out.writeUInt32BE(processId >>> 0, 5);
  secretKey.copy(out, 9);
  return out;
}

/** AuthenticationOk. */
export function authenticationOk(): Buffer {
  return Buffer.from([T_AUTH, 0, 0, 0, 8, 0, 0, 0, 0]);
}

/** A CancelRequest for a server connection's own key (sent on a new connection to its endpoint). */
export function cancelRequest(processId: number, secretKey: Buffer): Buffer {
  const out = Buffer.alloc(12 + secretKey.length);
  out.writeUInt32BE(12 + secretKey.length, 0);
  out.writeUInt32BE(CANCEL_REQUEST_CODE, 4);
  out.writeUInt32BE(processId >>> 0, 8);
  secretKey.copy(out, 12);
  return out;
}

/** A simple Query message. */
export function query(sql: string): Buffer {
  const size = 4 + Buffer.byteLength(sql) + 1;
  const out = Buffer.alloc(1 + size);
  out[0] = T_QUERY;
  out.writeUInt32BE(size, 1);
  out.write(sql, 5);
  out[size] = 0;
  return out;
}

/** The Terminate message a server connection is closed with. */
export const TERMINATE = Buffer.from([T_TERMINATE, 0, 0, 0, 4]);

/**
 * Reads an ErrorResponse/NoticeResponse body's fields: severity (non-localized
 * V, else S), SQLSTATE and message.
 */
export function readErrorFields(body: Buffer, start: number, end: number): { severity: string; code: string; message: string } {
  let severity = '';
  let localized = '';
  let code = '';
  let message = '';
  let at = start;
  while (at < end && body[at] !== 0) {
    const field = body[at] as number;
    const stop = body.indexOf(0, at + 1);
    if (stop < 0 || stop >= end) break;
    const value = body.toString('utf8', at + 1, stop);
    if (field === 0x56) severity = value;
    else if (field === 0x53) localized = value;
    else if (field === 0x43) code = value;
    else if (field === 0x4d) message = value;
    at = stop + 1;
  }
  return { severity: severity === '' ? localized : severity, code, message };
}
