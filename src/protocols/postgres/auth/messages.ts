/**
 * The messages of PostgreSQL's authentication phase, both directions, as
 * pure functions over buffers. Reference:
 * https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import { PolyproxyError } from '../../../core/errors.ts';

/** A typed message: one type byte, int32 length (itself included), body. */
export interface Message {
  readonly type: number;
  /** The body (a view into the read buffer, or a copy when the caller asked for one). */
  readonly body: Buffer;
}

export const MSG_AUTH = 0x52; //            R
export const MSG_PARAMETER_STATUS = 0x53; // S
export const MSG_BACKEND_KEY = 0x4b; //      K
export const MSG_READY = 0x5a; //            Z
export const MSG_ERROR = 0x45; //            E
export const MSG_NOTICE = 0x4e; //           N
export const MSG_NEGOTIATE = 0x76; //        v
export const MSG_PASSWORD = 0x70; //         p (PasswordMessage, SASLInitialResponse, SASLResponse)
export const MSG_TERMINATE = 0x58; //        X

export const AUTH_OK = 0;
export const AUTH_CLEARTEXT = 3;
export const AUTH_MD5 = 5;
export const AUTH_SASL = 10;
export const AUTH_SASL_CONTINUE = 11;
export const AUTH_SASL_FINAL = 12;

/**
 * A typed-message parser for BackendReader / ClientConnection.read: one
 * whole message, its body copied (the reader's buffer moves on). Throws
 * `kind`/`source` errors for lengths outside [4, maxLength].
 */
export function messageParser(maxLength: number, source: 'client' | 'backend'): (buf: Buffer) => { value: Message; consumed: number } | undefined {
  return (buf) => {
    if (buf.length < 5) return undefined;
    const length = buf.readUInt32BE(1);
    if (length < 4 || length > maxLength) {
      throw new PolyproxyError(source === 'client' ? 'PROTOCOL' : 'BACKEND_UNREACHABLE', `invalid message length ${length} (type ${JSON.stringify(String.fromCharCode(buf[0] as number))})`, { source });
    }
    if (buf.length < 1 + length) return undefined;
    return { value: { type: buf[0] as number, body: Buffer.from(buf.subarray(5, 1 + length)) }, consumed: 1 + length };
  };
}

/** Builds a typed message from its body. */
export function message(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function cstrings(values: readonly string[]): Buffer {
  return Buffer.concat(values.map((v) => Buffer.from(`${v}\0`, 'utf8')));
}

/** StartupMessage, protocol 3.0: user, database, then the other parameters. */
export function startupMessage(user: string, database: string, params: ReadonlyMap<string, string> | undefined): Buffer {
  const pairs: string[] = ['user', user, 'database', database];
  if (params !== undefined) {
    for (const [key, value] of params) {
      if (key === 'user' || key === 'database') continue;
      pairs.push(key, value);
    }
  }
  const body = Buffer.concat([cstrings(pairs), Buffer.from([0])]);
  const out = Buffer.allocUnsafe(8 + body.length);
  out.writeUInt32BE(8 + body.length, 0);
  out.writeUInt32BE(0x00030000, 4);
  body.copy(out, 8);
  return out;
}

/** Authentication request ('R') with its code and data. */
export function authMessage(code: number, data: Buffer | null = null): Buffer {
  const body = Buffer.allocUnsafe(4 + (data === null ? 0 : data.length));
  body.writeUInt32BE(code, 0);
  if (data !== null) data.copy(body, 4);
  return message(MSG_AUTH, body);
}

export const AUTHENTICATION_OK = authMessage(AUTH_OK);

/** AuthenticationSASL listing the mechanisms. */
export function authSasl(mechanisms: readonly string[]): Buffer {
  return authMessage(AUTH_SASL, Buffer.concat([cstrings(mechanisms), Buffer.from([0])]));
}

/** PasswordMessage: a NUL-terminated string. */
export function passwordMessage(password: string): Buffer {
  return message(MSG_PASSWORD, cstrings([password]));
}

/** SASLInitialResponse: mechanism, int32 length of the data (-1: none), data. */
export function saslInitialResponse(mechanism: string, data: Buffer): Buffer {
  const name = cstrings([mechanism]);
  const body = Buffer.allocUnsafe(name.length + 4 + data.length);
  name.copy(body, 0);
  body.writeInt32BE(data.length, name.length);
  data.copy(body, name.length + 4);
  return message(MSG_PASSWORD, body);
}

export function parameterStatus(name: string, value: string): Buffer {
  return message(MSG_PARAMETER_STATUS, cstrings([name, value]));
}

export function backendKeyData(processId: number, secretKey: Buffer): Buffer {
  const body = Buffer.allocUnsafe(4 + secretKey.length);
  body.writeUInt32BE(processId >>> 0, 0);
  secretKey.copy(body, 4);
  return message(MSG_BACKEND_KEY, body);
}

export function readyForQuery(status: 'I' | 'T' | 'E' = 'I'): Buffer {
  return message(MSG_READY, Buffer.from(status, 'latin1'));
}

/** NegotiateProtocolVersion: the newest minor version we support and the protocol options we did not recognise. */
export function negotiateProtocolVersion(minor: number, unrecognised: readonly string[]): Buffer {
  const head = Buffer.allocUnsafe(8);
  head.writeUInt32BE(minor, 0);
  head.writeUInt32BE(unrecognised.length, 4);
  return message(MSG_NEGOTIATE, Buffer.concat([head, cstrings(unrecognised)]));
}

/** Reads a NUL-terminated string at `at`; undefined when there is no terminator. */
export function readCString(body: Buffer, at: number): { value: string; next: number } | undefined {
  const end = body.indexOf(0, at);
  if (end < 0) return undefined;
  return { value: body.toString('utf8', at, end), next: end + 1 };
}

/** The fields of an ErrorResponse or NoticeResponse: code byte → value. Undefined when malformed. */
export function parseFields(body: Buffer): Map<string, string> | undefined {
  const fields = new Map<string, string>();
  let at = 0;
  while (at < body.length) {
    const code = body[at] as number;
    if (code === 0) return at === body.length - 1 ? fields : undefined;
    const value = readCString(body, at + 1);
    if (value === undefined) return undefined;
    fields.set(String.fromCharCode(code), value.value);
    at = value.next;
  }
  return undefined;
}

/** The mechanisms of an AuthenticationSASL body (after its code). Undefined when malformed. */
export function parseMechanisms(data: Buffer): string[] | undefined {
  const names: string[] = [];
  let at = 0;
  while (at < data.length) {
    if (data[at] === 0) return at === data.length - 1 ? names : undefined;
    const name = readCString(data, at);
    if (name === undefined) return undefined;
    names.push(name.value);
    at = name.next;
  }
  return undefined;
}

/** A SASLInitialResponse body: mechanism and its data (null for the -1 length). Undefined when malformed. */
export function parseSaslInitialResponse(body: Buffer): { mechanism: string; data: Buffer | null } | undefined {
  const name = readCString(body, 0);
  if (name === undefined || name.next + 4 > body.length) return undefined;
  const length = body.readInt32BE(name.next);
  const start = name.next + 4;
  if (length === -1) return start === body.length ? { mechanism: name.value, data: null } : undefined;
  if (length < 0 || start + length !== body.length) return undefined;
  return { mechanism: name.value, data: body.subarray(start) };
}

/** A PasswordMessage body: the password without its terminator. Undefined when malformed. */
export function parsePasswordMessage(body: Buffer): string | undefined {
  const end = body.indexOf(0);
  if (end !== body.length - 1) return undefined;
  return body.toString('utf8', 0, end);
}
