/**
 * The NATS client protocol's opening (https://docs.nats.io/reference/reference-protocols/nats-protocol):
 * control lines `OP [args]\r\n`, of which the proxy needs the client's first,
 * `CONNECT {json}`, and the backend's first, `INFO {json}`.
 *
 * Pure functions (core's OpeningParser): the value and the bytes used,
 * undefined to wait for more, or a NatsError (PROTOCOL) with the words
 * nats-server uses.
 */
import type { OpeningParser } from '../../core/client-connection.ts';
import { PolyproxyError } from '../../core/errors.ts';
import { NatsError } from './errors.ts';

/**
 * Longest control line the proxy reads. nats-server's max_control_line
 * defaults to 4 KiB, but a CONNECT carrying a user JWT and its signature can
 * be longer; 64 KiB bounds the opening all the same.
 */
export const MAX_CONTROL_LINE = 64 * 1024;

export interface ControlLine {
  /** The operation, upper-cased (CONNECT, PING, PUB, INFO...). */
  readonly op: string;
  /** What follows the operation and its separating white space, without the line ending. */
  readonly arg: string;
  /** The whole line as received, with its line ending. */
  readonly raw: Buffer;
}

/** One control line, ended by LF (CRLF in practice; nats-server accepts a bare LF too). */
export const controlLineParser: OpeningParser<ControlLine> = (buffered) => {
  const lf = buffered.indexOf(0x0a);
  if (lf < 0) {
    if (buffered.length > MAX_CONTROL_LINE) throw new NatsError('PROTOCOL', 'control line too long', 'Maximum Control Line Exceeded');
    return undefined;
  }
  if (lf + 1 > MAX_CONTROL_LINE) throw new NatsError('PROTOCOL', 'control line too long', 'Maximum Control Line Exceeded');
  const end = lf > 0 && buffered[lf - 1] === 0x0d ? lf - 1 : lf;
  const line = buffered.toString('utf8', 0, end);
  const match = /^[ \t]*([^ \t]*)[ \t]*(.*)$/s.exec(line) as RegExpExecArray;
  return { value: { op: (match[1] as string).toUpperCase(), arg: (match[2] as string).trimEnd(), raw: buffered.subarray(0, lf + 1) }, consumed: lf + 1 };
};

/** The CONNECT fields the proxy reads; the rest goes to the backend untouched. */
export interface ConnectOptions {
  readonly user?: unknown;
  readonly auth_token?: unknown;
  readonly jwt?: unknown;
  readonly headers?: unknown;
  readonly [field: string]: unknown;
}

/**
 * The client's first line must be CONNECT. Like nats-server with
 * authorization on: any other operation first is an 'Authorization
 * Violation'; an operation that starts with C but is not CONNECT is an
 * 'Unknown Protocol Operation'; CONNECT whose argument is not a JSON object
 * ends the connection as a protocol error.
 */
export function parseConnect(line: ControlLine): ConnectOptions {
  if (line.op !== 'CONNECT') {
    if (line.op.startsWith('C')) throw new NatsError('PROTOCOL', `unknown operation ${JSON.stringify(line.op.slice(0, 20))} before CONNECT`, 'Unknown Protocol Operation');
    throw new NatsError('FORBIDDEN', `${line.op.slice(0, 20) || 'an empty line'} before CONNECT`, 'Authorization Violation', { source: 'client' });
  }
  let options: unknown;
  try {
    options = JSON.parse(line.arg);
  } catch {
    throw new NatsError('PROTOCOL', 'CONNECT is not followed by JSON', 'Unknown Protocol Operation');
  }
  if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new NatsError('PROTOCOL', 'CONNECT is not followed by a JSON object', 'Unknown Protocol Operation');
  return options as ConnectOptions;
}

export type RouteBy = 'user' | 'token' | 'jwt';

/** The claims of a JWT's payload, not verified (the backend verifies); null when `jwt` is not one. */
export function jwtClaims(jwt: string): Record<string, unknown> | null {
  const parts = jwt.split('.');
  if (parts.length !== 3) return null;
  try {
    const claims: unknown = JSON.parse(Buffer.from(parts[1] as string, 'base64url').toString('utf8'));
    return claims !== null && typeof claims === 'object' && !Array.isArray(claims) ? (claims as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function nonEmpty(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? value : null;
}

/**
 * The tenant a CONNECT names, or null when it names none:
 * - user: the `user` field;
 * - token: `auth_token` up to the first `separator` (the prefix must be
 *   non-empty and the separator present);
 * - jwt: the user JWT's `name` claim, else its `sub` (the user's public
 *   NKey).
 */
export function tenantOf(options: ConnectOptions, routeBy: RouteBy, separator: string): string | null {
  switch (routeBy) {
    case 'user':
      return nonEmpty(options.user);
    case 'token': {
      const token = nonEmpty(options.auth_token);
      const at = token === null ? -1 : token.indexOf(separator);
      return token === null || at <= 0 ? null : token.slice(0, at);
    }
    case 'jwt': {
      const jwt = nonEmpty(options.jwt);
      const claims = jwt === null ? null : jwtClaims(jwt);
      return claims === null ? null : (nonEmpty(claims.name) ?? nonEmpty(claims.sub));
    }
  }
}

/** The backend's INFO fields the proxy compares with what it announced. */
export interface ServerInfo {
  readonly version?: unknown;
  readonly proto?: unknown;
  readonly headers?: unknown;
  readonly max_payload?: unknown;
  readonly tls_required?: unknown;
  readonly [field: string]: unknown;
}

/** Reads the backend's INFO line; anything else first is a backend failure. */
export const backendInfoParser: OpeningParser<ServerInfo> = (buffered) => {
  let done: { value: ControlLine; consumed: number } | undefined;
  try {
    done = controlLineParser(buffered);
  } catch {
    throw new PolyproxyError('BACKEND_UNREACHABLE', 'the backend sent an over-long first line instead of INFO', { source: 'backend' });
  }
  if (done === undefined) return undefined;
  const line = done.value;
  let info: unknown = null;
  if (line.op === 'INFO') {
    try {
      info = JSON.parse(line.arg);
    } catch {
      info = null;
    }
  }
  if (info === null || typeof info !== 'object' || Array.isArray(info)) {
    throw new PolyproxyError('BACKEND_UNREACHABLE', `the backend's first line is not INFO {json}: ${JSON.stringify(line.raw.toString('latin1', 0, 60))}`, { source: 'backend' });
  }
  return { value: info as ServerInfo, consumed: done.consumed };
};
