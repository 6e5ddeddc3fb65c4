/**
 * MySQL client/server protocol packets as pure functions over buffers (no
 * sockets). Reference: https://dev.mysql.com/doc/dev/mysql-server/latest/PAGE_PROTOCOL.html
 * and https://mariadb.com/kb/en/clientserver-protocol/ (connection phase).
 *
 * Every packet is a 3-byte little-endian payload length, a 1-byte sequence
 * id, then the payload. Every parser here throws only
 * PolyproxyError('PROTOCOL').
 */
import { PolyproxyError } from '../../core/errors.ts';
import type { FailureSource } from '../../core/errors.ts';

// ---- capability flags (https://dev.mysql.com/doc/dev/mysql-server/latest/group__group__cs__capabilities__flags.html)
export const CLIENT_LONG_PASSWORD = 0x1; // also MariaDB's CLIENT_MYSQL: "not a MariaDB extended-caps peer"
export const CLIENT_FOUND_ROWS = 0x2;
export const CLIENT_LONG_FLAG = 0x4;
export const CLIENT_CONNECT_WITH_DB = 0x8;
export const CLIENT_NO_SCHEMA = 0x10;
export const CLIENT_COMPRESS = 0x20;
export const CLIENT_ODBC = 0x40;
export const CLIENT_LOCAL_FILES = 0x80;
export const CLIENT_IGNORE_SPACE = 0x100;
export const CLIENT_PROTOCOL_41 = 0x200;
export const CLIENT_INTERACTIVE = 0x400;
export const CLIENT_SSL = 0x800;
export const CLIENT_IGNORE_SIGPIPE = 0x1000;
export const CLIENT_TRANSACTIONS = 0x2000;
export const CLIENT_RESERVED = 0x4000;
export const CLIENT_SECURE_CONNECTION = 0x8000;
export const CLIENT_MULTI_STATEMENTS = 0x10000;
export const CLIENT_MULTI_RESULTS = 0x20000;
export const CLIENT_PS_MULTI_RESULTS = 0x40000;
export const CLIENT_PLUGIN_AUTH = 0x80000;
export const CLIENT_CONNECT_ATTRS = 0x100000;
export const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 0x200000;
export const CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS = 0x400000;
export const CLIENT_SESSION_TRACK = 0x800000;
export const CLIENT_DEPRECATE_EOF = 0x1000000;

/**
 * What the proxy offers in its own greeting: flags every MySQL ≥ 5.7 and
 * MariaDB ≥ 10.2 server supports, so whatever the client picks can be
 * carried to the backend. Never COMPRESS (the proxy inspects commands) and
 * SSL only when the listener terminates TLS (added at runtime).
 */
export const PROXY_CAPABILITIES =
  (CLIENT_LONG_PASSWORD |
    CLIENT_FOUND_ROWS |
    CLIENT_LONG_FLAG |
    CLIENT_CONNECT_WITH_DB |
    CLIENT_NO_SCHEMA |
    CLIENT_ODBC |
    CLIENT_LOCAL_FILES |
    CLIENT_IGNORE_SPACE |
    CLIENT_PROTOCOL_41 |
    CLIENT_INTERACTIVE |
    CLIENT_IGNORE_SIGPIPE |
    CLIENT_TRANSACTIONS |
    CLIENT_RESERVED |
    CLIENT_SECURE_CONNECTION |
    CLIENT_MULTI_STATEMENTS |
    CLIENT_MULTI_RESULTS |
    CLIENT_PS_MULTI_RESULTS |
    CLIENT_PLUGIN_AUTH |
    CLIENT_CONNECT_ATTRS |
    CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA |
    CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS |
    CLIENT_SESSION_TRACK |
    CLIENT_DEPRECATE_EOF) >>>
  0;

/** Flags that change the framing of the command phase: client and backend must agree on them. */
export const FRAMING_CAPABILITIES = CLIENT_PROTOCOL_41 | CLIENT_DEPRECATE_EOF | CLIENT_SESSION_TRACK | CLIENT_MULTI_RESULTS | CLIENT_PS_MULTI_RESULTS;

// ---- commands (https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html)
export const COM_INIT_DB = 0x02;
export const COM_QUERY = 0x03;
export const COM_CHANGE_USER = 0x11;
export const COM_STMT_PREPARE = 0x16;

export const MAX_PAYLOAD = 0xffffff;
export const SCRAMBLE_LENGTH = 20;
export const NATIVE_PASSWORD = 'mysql_native_password';

export interface Packet {
  readonly seq: number;
  readonly payload: Buffer;
}

function protocolError(message: string, source: FailureSource = 'client'): PolyproxyError {
  return new PolyproxyError('PROTOCOL', message, { source });
}

/**
 * An OpeningParser for one whole packet whose payload is at most
 * `maxPayload` bytes. The payload is copied: the caller's buffer is reused.
 */
export function packetParser(maxPayload: number, source: FailureSource = 'client'): (buf: Buffer) => { value: Packet; consumed: number } | undefined {
  return (buf) => {
    if (buf.length < 4) return undefined;
    const length = buf.readUIntLE(0, 3);
    if (length > maxPayload) throw protocolError(`packet of ${length} bytes is larger than the ${maxPayload} allowed during the handshake`, source);
    if (buf.length < 4 + length) return undefined;
    return { value: { seq: buf[3] as number, payload: Buffer.from(buf.subarray(4, 4 + length)) }, consumed: 4 + length };
  };
}

/** Frames a payload (at most MAX_PAYLOAD bytes) as one packet. */
export function encodePacket(seq: number, payload: Buffer): Buffer {
  if (payload.length > MAX_PAYLOAD) throw new RangeError('payload too large for one packet');
  const out = Buffer.allocUnsafe(4 + payload.length);
  out.writeUIntLE(payload.length, 0, 3);
  out[3] = seq & 0xff;
  payload.copy(out, 4);
  return out;
}

// ---- length-encoded integers and strings -------------------------------------

/** A cursor over one payload; every read checks bounds and throws PROTOCOL past the end. */
export class Reader {
  readonly buf: Buffer;
  at: number;
  readonly #what: string;
  readonly #source: FailureSource;

  constructor(buf: Buffer, what: string, at = 0, source: FailureSource = 'client') {
    this.buf = buf;
    this.at = at;
    this.#what = what;
    this.#source = source;
  }

  get left(): number {
    return this.buf.length - this.at;
  }

  fail(message: string): PolyproxyError {
    return protocolError(`malformed ${this.#what}: ${message}`, this.#source);
  }

  #need(n: number, field: string): void {
    if (this.left < n) throw this.fail(`truncated ${field}`);
  }

  u8(field: string): number {
    this.#need(1, field);
    return this.buf[this.at++] as number;
  }

  u16(field: string): number {
    this.#need(2, field);
    const v = this.buf.readUInt16LE(this.at);
    this.at += 2;
    return v;
  }

  u32(field: string): number {
    this.#need(4, field);
    const v = this.buf.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }

  bytes(n: number, field: string): Buffer {
    this.#need(n, field);
    const v = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return v;
  }

  /** NUL-terminated; with `optional`, the end of the payload also ends it. */
  zstring(field: string, optional = false): Buffer {
    const end = this.buf.indexOf(0, this.at);
    if (end < 0) {
      if (!optional) throw this.fail(`${field} is not NUL-terminated`);
      return this.bytes(this.left, field);
    }
    const v = this.buf.subarray(this.at, end);
    this.at = end + 1;
    return v;
  }

  /** Length-encoded integer (https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_dt_integers.html). */
  lenenc(field: string): number {
    const first = this.u8(field);
    if (first < 0xfb) return first;
    if (first === 0xfc) return this.u16(field);
    if (first === 0xfd) {
      this.#need(3, field);
      const v = this.buf.readUIntLE(this.at, 3);
      this.at += 3;
      return v;
    }
    if (first === 0xfe) {
      this.#need(8, field);
      const v = this.buf.readBigUInt64LE(this.at);
      this.at += 8;
      // Nothing in a handshake is that long; larger values can only be garbage.
      if (v > BigInt(this.left)) throw this.fail(`${field} length ${v} exceeds the packet`);
      return Number(v);
    }
    throw this.fail(`invalid length-encoded integer 0x${first.toString(16)} in ${field}`);
  }

  lenencBytes(field: string): Buffer {
    return this.bytes(this.lenenc(field), field);
  }
}

export function lenencInt(n: number): Buffer {
  if (n < 0xfb) return Buffer.from([n]);
  if (n < 0x10000) {
    const out = Buffer.alloc(3);
    out[0] = 0xfc;
    out.writeUInt16LE(n, 1);
    return out;
  }
  if (n < 0x1000000) {
    const out = Buffer.alloc(4);
    out[0] = 0xfd;
    out.writeUIntLE(n, 1, 3);
    return out;
  }
  const out = Buffer.alloc(9);
  out[0] = 0xfe;
  out.writeBigUInt64LE(BigInt(n), 1);
  return out;
}

export function lenencBytes(bytes: Buffer): Buffer {
  return Buffer.concat([lenencInt(bytes.length), bytes]);
}

// ---- the server greeting (Protocol::HandshakeV10) -----------------------------

export interface Greeting {
  readonly serverVersion: string;
  readonly connectionId: number;
  readonly capabilities: number;
  readonly charset: number;
  readonly status: number;
  /** The auth plugin's challenge, without the trailing NUL (20 bytes for the built-in plugins). */
  readonly scramble: Buffer;
  /** '' when the server does not speak CLIENT_PLUGIN_AUTH. */
  readonly plugin: string;
}

export function buildGreeting(g: Greeting): Buffer {
  const data = g.scramble;
  const part2 = Buffer.concat([data.subarray(8), Buffer.from([0])]);
  const head = Buffer.from([10]); // protocol version
  const fixed = Buffer.alloc(4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10);
  let at = 0;
  fixed.writeUInt32LE(g.connectionId >>> 0, at);
  at += 4;
  data.copy(fixed, at, 0, 8);
  at += 8;
  fixed[at++] = 0; // filler
  fixed.writeUInt16LE(g.capabilities & 0xffff, at);
  at += 2;
  fixed[at++] = g.charset;
  fixed.writeUInt16LE(g.status, at);
  at += 2;
  fixed.writeUInt16LE(g.capabilities >>> 16, at);
  at += 2;
  fixed[at] = data.length + 1; // auth-plugin-data length, NUL included
  // 10 reserved bytes (MariaDB puts extended capabilities in the last 4; we offer none).
  // Latin-1, as parseGreeting reads them: a name passed on keeps its bytes.
  return Buffer.concat([head, Buffer.from(`${g.serverVersion}\0`, 'latin1'), fixed, part2, Buffer.from(`${g.plugin}\0`, 'latin1')]);
}

/** Parses a server greeting; a malformed one is the backend's fault. */
export function parseGreeting(payload: Buffer): Greeting {
  const r = new Reader(payload, 'server greeting', 0, 'backend');
  const version = r.u8('protocol version');
  if (version !== 10) throw r.fail(`unsupported protocol version ${version}`);
  const serverVersion = r.zstring('server version').toString('latin1');
  const connectionId = r.u32('connection id');
  const part1 = r.bytes(8, 'auth-plugin-data-part-1');
  r.u8('filler');
  let capabilities = r.u16('capability flags');
  let charset = 0;
  let status = 0;
  let dataLength = 0;
  if (r.left > 0) {
    charset = r.u8('character set');
    status = r.u16('status flags');
    capabilities = (capabilities | (r.u16('capability flags') << 16)) >>> 0;
    dataLength = r.u8('auth-plugin-data length');
    r.bytes(10, 'reserved');
  }
  let scramble: Buffer = Buffer.from(part1);
  if ((capabilities & CLIENT_SECURE_CONNECTION) !== 0) {
    // max(13, length - 8) bytes, the last of which is a NUL terminator.
    const part2 = r.bytes(Math.max(13, dataLength - 8), 'auth-plugin-data-part-2');
    const end = part2.indexOf(0);
    scramble = Buffer.concat([part1, end < 0 ? part2 : part2.subarray(0, end)]);
  }
  let plugin = '';
  if ((capabilities & CLIENT_PLUGIN_AUTH) !== 0) plugin = r.zstring('auth plugin name', true).toString('latin1');
  return { serverVersion, connectionId, capabilities, charset, status, scramble, plugin };
}

// ---- the client's answer (SSLRequest / HandshakeResponse41) ------------------

export interface SslRequest {
  readonly type: 'ssl';
  readonly capabilities: number;
  readonly maxPacket: number;
  readonly charset: number;
}

export interface HandshakeResponse {
  readonly type: 'response';
  readonly capabilities: number;
  readonly maxPacket: number;
  readonly charset: number;
  /** The 23 reserved bytes (MariaDB carries extended capabilities in the last 4). */
  readonly reserved: Buffer;
  readonly user: string;
  readonly authResponse: Buffer;
  /** '' when CLIENT_CONNECT_WITH_DB is not set. */
  readonly database: string;
  /** '' when the client did not name one. */
  readonly plugin: string;
  /** Connection attributes in order, or null without CLIENT_CONNECT_ATTRS. */
  readonly attributes: ReadonlyMap<string, string> | null;
  /** The attributes block as sent (without its length prefix), to forward unchanged. */
  readonly rawAttributes: Buffer | null;
}

/**
 * Parses the client's first answer: an SSLRequest (the 32-byte prefix
 * alone, with CLIENT_SSL) or a HandshakeResponse41. The old 3.20
 * HandshakeResponse320 is refused.
 */
export function parseHandshakeResponse(payload: Buffer): SslRequest | HandshakeResponse {
  const r = new Reader(payload, 'handshake response');
  if (payload.length < 4) throw r.fail('truncated capability flags');
  const capabilities = r.u32('capability flags');
  if ((capabilities & CLIENT_PROTOCOL_41) === 0) throw r.fail('clients older than protocol 4.1 are not supported');
  const maxPacket = r.u32('max packet size');
  const charset = r.u8('character set');
  const reserved = Buffer.from(r.bytes(23, 'reserved bytes'));
  if (r.left === 0) {
    // The 32-byte prefix alone is an SSLRequest.
    if ((capabilities & CLIENT_SSL) === 0) throw r.fail('truncated user name');
    return { type: 'ssl', capabilities, maxPacket, charset };
  }
  const user = r.zstring('user name').toString('utf8');
  let authResponse: Buffer;
  if ((capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) !== 0) authResponse = r.lenencBytes('auth response');
  else if ((capabilities & CLIENT_SECURE_CONNECTION) !== 0) authResponse = r.bytes(r.u8('auth response length'), 'auth response');
  else authResponse = r.zstring('auth response');
  let database = '';
  // Some clients end the packet early when there is nothing more to say.
  if ((capabilities & CLIENT_CONNECT_WITH_DB) !== 0 && r.left > 0) database = r.zstring('database', true).toString('utf8');
  let plugin = '';
  if ((capabilities & CLIENT_PLUGIN_AUTH) !== 0 && r.left > 0) plugin = r.zstring('auth plugin name', true).toString('latin1');
  let attributes: Map<string, string> | null = null;
  let rawAttributes: Buffer | null = null;
  if ((capabilities & CLIENT_CONNECT_ATTRS) !== 0 && r.left > 0) {
    rawAttributes = Buffer.from(r.lenencBytes('connection attributes'));
    attributes = new Map();
    const a = new Reader(rawAttributes, 'connection attributes');
    while (a.left > 0) {
      const key = a.lenencBytes('attribute name').toString('utf8');
      attributes.set(key, a.lenencBytes('attribute value').toString('utf8'));
    }
  }
  return { type: 'response', capabilities, maxPacket, charset, reserved, user, authResponse: Buffer.from(authResponse), database, plugin, attributes, rawAttributes };
}

export interface BackendResponse {
  readonly capabilities: number;
  readonly maxPacket: number;
  readonly charset: number;
  readonly user: string;
  readonly authResponse: Buffer;
  readonly database: string;
  readonly plugin: string;
  readonly rawAttributes: Buffer | null;
}

/** Builds a HandshakeResponse41; the fields present follow `capabilities`. */
export function buildHandshakeResponse(h: BackendResponse): Buffer {
  const caps = h.capabilities;
  const fixed = Buffer.alloc(32);
  fixed.writeUInt32LE(caps >>> 0, 0);
  fixed.writeUInt32LE(h.maxPacket >>> 0, 4);
  fixed[8] = h.charset;
  const parts: Buffer[] = [fixed, Buffer.from(`${h.user}\0`)];
  if ((caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) !== 0) parts.push(lenencBytes(h.authResponse));
  else if ((caps & CLIENT_SECURE_CONNECTION) !== 0) {
    if (h.authResponse.length > 255) throw new RangeError('auth response too long for CLIENT_SECURE_CONNECTION');
    parts.push(Buffer.from([h.authResponse.length]), h.authResponse);
  } else parts.push(h.authResponse, Buffer.from([0]));
  if ((caps & CLIENT_CONNECT_WITH_DB) !== 0) parts.push(Buffer.from(`${h.database}\0`));
  // The plugin name is read as Latin-1 (parseGreeting, parseHandshakeResponse): written back the same, its bytes survive.
  if ((caps & CLIENT_PLUGIN_AUTH) !== 0) parts.push(Buffer.from(`${h.plugin}\0`, 'latin1'));
  if ((caps & CLIENT_CONNECT_ATTRS) !== 0) parts.push(lenencBytes(h.rawAttributes ?? Buffer.alloc(0)));
  return Buffer.concat(parts);
}

/** AuthSwitchRequest: 0xFE, plugin name, the plugin's challenge (NUL-terminated, as servers send it). */
export function buildAuthSwitchRequest(plugin: string, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0xfe]), Buffer.from(`${plugin}\0`, 'latin1'), data, Buffer.from([0])]);
}

// ---- OK / ERR ---------------------------------------------------------------

export const OK_HEADER = 0x00;
export const ERR_HEADER = 0xff;
export const AUTH_SWITCH_HEADER = 0xfe;
export const AUTH_MORE_DATA_HEADER = 0x01;

/**
 * An ERR packet. With `sqlState` (clients that spoke PROTOCOL_41) the state
 * follows a '#'; before the client's answer is known it is left out, as
 * servers do for errors sent in place of the greeting.
 */
export function errPacket(seq: number, code: number, sqlState: string | null, message: string): Buffer {
  const text = Buffer.from(message, 'utf8');
  const head = Buffer.alloc(sqlState === null ? 3 : 9);
  head[0] = ERR_HEADER;
  head.writeUInt16LE(code, 1);
  if (sqlState !== null) head.write(`#${sqlState.padEnd(5, '0').slice(0, 5)}`, 3, 'latin1');
  return encodePacket(seq, Buffer.concat([head, text]));
}

export interface ErrInfo {
  readonly code: number;
  readonly sqlState: string | null;
  readonly message: string;
}

export function parseErr(payload: Buffer): ErrInfo {
  const r = new Reader(payload, 'ERR packet');
  if (r.u8('header') !== ERR_HEADER) throw r.fail('not an ERR packet');
  const code = r.u16('error code');
  let sqlState: string | null = null;
  if (r.left >= 6 && payload[r.at] === 0x23 /* # */) {
    r.at++;
    sqlState = r.bytes(5, 'sql state').toString('latin1');
  }
  return { code, sqlState, message: r.bytes(r.left, 'message').toString('utf8') };
}

/** A copy of a whole packet with another sequence id. */
export function withSeq(packet: Packet, seq: number): Buffer {
  return encodePacket(seq, packet.payload);
}
