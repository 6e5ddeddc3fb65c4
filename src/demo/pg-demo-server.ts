/**
 * A tiny embedded PostgreSQL wire-protocol (v3) server.
 *
 * Used by `polyproxy demo` (so new users can watch the proxy route PostgreSQL
 * traffic without installing PostgreSQL) and by benchmarks as a cheap backend.
 * It answers every query with a single row; see `classifyQuery` for the rules.
 *
 * Memory per connection is kept small: the socket listeners are shared named
 * functions, per-connection state lives in one small object (looked up through
 * a WeakMap), prepared statement / portal maps are created lazily, and there are
 * no per-connection timers.
 */
import net from 'node:net';
import { randomInt } from 'node:crypto';

export interface PgDemoServer {
  port: number;
  close(): Promise<void>;
  connections: number;
}

export interface PgDemoServerOptions {
  name: string;
  host?: string;
  port?: number;
}

/** Largest message (length field value) accepted from a client. */
const MAX_MESSAGE_LENGTH = 1024 * 1024;

const SSL_REQUEST_CODE = 80877103;
const GSSENC_REQUEST_CODE = 80877104;
const CANCEL_REQUEST_CODE = 80877102;
const PROTOCOL_MAJOR = 3;

const OID_INT4 = 23;
const OID_TEXT = 25;

const PHASE_STARTUP = 0;
const PHASE_READY = 1;
const PHASE_CLOSED = 2;

interface ServerContext {
  name: string;
  sockets: Set<net.Socket>;
}

interface PreparedStatement {
  query: string;
  paramTypes: number[];
}

interface Portal {
  query: string;
  binary: boolean;
}

interface ConnState {
  ctx: ServerContext;
  phase: number;
  /** Bytes received but not yet forming a complete message. */
  pending: Buffer | null;
  database: string;
  statements: Map<string, PreparedStatement> | null;
  portals: Map<string, Portal> | null;
  /** An extended-protocol message arrived since the last Sync. */
  extended: boolean;
  /** An error happened in an extended-protocol sequence: discard until Sync. */
  ignoreTillSync: boolean;
}

const connStates = new WeakMap<net.Socket, ConnState>();

/** Thrown for malformed message bodies; reported as SQLSTATE 08P01 and the connection closed. */
class ProtocolViolation extends Error {}

// ---------------------------------------------------------------------------
// Message encoding
// ---------------------------------------------------------------------------

function message(type: string, body?: Buffer): Buffer {
  const bodyLength = body === undefined ? 0 : body.length;
  const out = Buffer.allocUnsafe(5 + bodyLength);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + bodyLength, 1);
  if (body !== undefined) body.copy(out, 5);
  return out;
}

function cstring(value: string): Buffer {
  return Buffer.from(value + '\0', 'utf8');
}

function int16(value: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeInt16BE(value, 0);
  return b;
}

function int32(value: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(value, 0);
  return b;
}

function parameterStatus(name: string, value: string): Buffer {
  return message('S', Buffer.concat([cstring(name), cstring(value)]));
}

function errorResponse(severity: 'ERROR' | 'FATAL', code: string, text: string): Buffer {
  return message(
    'E',
    Buffer.concat([
      Buffer.from('S'),
      cstring(severity),
      Buffer.from('V'),
      cstring(severity),
      Buffer.from('C'),
      cstring(code),
      Buffer.from('M'),
      cstring(text),
      Buffer.from([0]),
    ]),
  );
}

function rowDescription(column: string, typeOid: number, binary: boolean): Buffer {
  return message(
    'T',
    Buffer.concat([
      int16(1),
      cstring(column),
      int32(0), // table oid
      int16(0), // column attribute number
      int32(typeOid),
      int16(typeOid === OID_INT4 ? 4 : -1), // type length
      int32(-1), // type modifier
      int16(binary ? 1 : 0),
    ]),
  );
}

function dataRow(value: Buffer): Buffer {
  const out = Buffer.allocUnsafe(11 + value.length);
  out[0] = 0x44; // 'D'
  out.writeInt32BE(10 + value.length, 1);
  out.writeInt16BE(1, 5);
  out.writeInt32BE(value.length, 7);
  value.copy(out, 11);
  return out;
}

const READY_IDLE = message('Z', Buffer.from('I'));
const AUTH_OK = message('R', int32(0));
const PARSE_COMPLETE = message('1');
const BIND_COMPLETE = message('2');
const CLOSE_COMPLETE = message('3');
const NO_DATA = message('n');
const EMPTY_QUERY = message('I');
const SSL_REFUSED = Buffer.from('N');
const SELECT_1_COMPLETE = message('C', cstring('SELECT 1'));

// ---------------------------------------------------------------------------
// Query classification
// ---------------------------------------------------------------------------

const KIND_EMPTY = 0;
const KIND_HELLO = 1;
const KIND_CURRENT_DATABASE = 2;
const KIND_ONE = 3;
type QueryKind = typeof KIND_EMPTY | typeof KIND_HELLO | typeof KIND_CURRENT_DATABASE | typeof KIND_ONE;

function classifyQuery(query: string): QueryKind {
  const normalized = query
    .trim()
    .replace(/;+\s*$/, '')
    .trim()
    .replace(/\s+/g, ' ')
    .toLowerCase();
  if (normalized === '') return KIND_EMPTY;
  if (normalized === 'select current_database()') return KIND_CURRENT_DATABASE;
  if (normalized === 'select 1') return KIND_ONE;
  return KIND_HELLO;
}

const ROW_DESCRIPTIONS: Record<Exclude<QueryKind, typeof KIND_EMPTY>, [text: Buffer, binary: Buffer]> = {
  [KIND_HELLO]: [rowDescription('answer', OID_TEXT, false), rowDescription('answer', OID_TEXT, true)],
  [KIND_CURRENT_DATABASE]: [
    rowDescription('current_database', OID_TEXT, false),
    rowDescription('current_database', OID_TEXT, true),
  ],
  [KIND_ONE]: [rowDescription('?column?', OID_INT4, false), rowDescription('?column?', OID_INT4, true)],
};

const ONE_TEXT_ROW = dataRow(Buffer.from('1'));
const ONE_BINARY_ROW = dataRow(int32(1));

function describeRows(kind: QueryKind, binary: boolean): Buffer {
  if (kind === KIND_EMPTY) return NO_DATA;
  return ROW_DESCRIPTIONS[kind][binary ? 1 : 0];
}

/** DataRow for a (non-empty) query kind. Text values are identical in text and binary format. */
function resultRow(state: ConnState, kind: QueryKind, binary: boolean): Buffer {
  if (kind === KIND_ONE) return binary ? ONE_BINARY_ROW : ONE_TEXT_ROW;
  if (kind === KIND_CURRENT_DATABASE) return dataRow(Buffer.from(state.database, 'utf8'));
  return dataRow(Buffer.from(`hello from ${state.ctx.name} backend, database ${state.database}`, 'utf8'));
}

/**
 * Split a simple-query string into statements on `;`, ignoring semicolons inside
 * quoted strings / identifiers. Empty statements are dropped.
 */
function splitStatements(sql: string): string[] {
  if (!sql.includes(';')) return sql.trim() === '' ? [] : [sql];
  const statements: string[] = [];
  let start = 0;
  let quote = '';
  for (let i = 0; i < sql.length; i++) {
    const ch = sql[i];
    if (quote !== '') {
      if (ch === quote) quote = '';
    } else if (ch === "'" || ch === '"') {
      quote = ch;
    } else if (ch === ';') {
      statements.push(sql.slice(start, i));
      start = i + 1;
    }
  }
  statements.push(sql.slice(start));
  return statements.filter((s) => s.trim() !== '');
}

// ---------------------------------------------------------------------------
// Message body reading (bounds-checked)
// ---------------------------------------------------------------------------

interface Reader {
  buf: Buffer;
  pos: number;
  end: number;
}

function readCString(r: Reader): string {
  const nul = r.buf.indexOf(0, r.pos);
  if (nul < 0 || nul >= r.end) throw new ProtocolViolation('invalid string in message');
  const value = r.buf.toString('utf8', r.pos, nul);
  r.pos = nul + 1;
  return value;
}

function readInt16(r: Reader): number {
  if (r.pos + 2 > r.end) throw new ProtocolViolation('insufficient data left in message');
  const value = r.buf.readInt16BE(r.pos);
  r.pos += 2;
  return value;
}

function readInt32(r: Reader): number {
  if (r.pos + 4 > r.end) throw new ProtocolViolation('insufficient data left in message');
  const value = r.buf.readInt32BE(r.pos);
  r.pos += 4;
  return value;
}

function readByte(r: Reader): number {
  if (r.pos + 1 > r.end) throw new ProtocolViolation('insufficient data left in message');
  return r.buf[r.pos++] as number;
}

function skip(r: Reader, n: number): void {
  if (n < 0 || r.pos + n > r.end) throw new ProtocolViolation('insufficient data left in message');
  r.pos += n;
}

// ---------------------------------------------------------------------------
// Connection handling
// ---------------------------------------------------------------------------

function onSocketData(this: net.Socket, chunk: Buffer): void {
  const state = connStates.get(this);
  if (state === undefined || state.phase === PHASE_CLOSED) return;
  const out: Buffer[] = [];
  try {
    processInput(this, state, chunk, out);
  } catch (err) {
    // Defensive: never let bad input crash the process.
    const text = err instanceof ProtocolViolation ? err.message : 'internal error in demo server';
    out.push(errorResponse('FATAL', err instanceof ProtocolViolation ? '08P01' : 'XX000', text));
    state.phase = PHASE_CLOSED;
    state.pending = null;
  }
  if (state.phase === PHASE_CLOSED) {
    connStates.delete(this);
    if (out.length > 0) this.end(joined(out));
    else this.end();
    return;
  }
  if (out.length > 0) {
    const flushed = this.write(joined(out));
    // Back-pressure: a client pipelining queries without reading replies gets paused.
    if (!flushed) this.pause();
  }
}

function joined(out: Buffer[]): Buffer {
  return out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out);
}

function onSocketDrain(this: net.Socket): void {
  this.resume();
}

function onSocketError(this: net.Socket): void {
  // Errors (ECONNRESET, EPIPE, ...) are followed by 'close'; nothing to do.
}

function processInput(socket: net.Socket, state: ConnState, chunk: Buffer, out: Buffer[]): void {
  let buf = chunk;
  if (state.pending !== null) {
    buf = Buffer.concat([state.pending, chunk]);
    state.pending = null;
  }
  let pos = 0;
  while (state.phase !== PHASE_CLOSED) {
    const available = buf.length - pos;
    if (state.phase === PHASE_STARTUP) {
      // Startup-phase messages have no type byte: int32 length (self-inclusive) + body.
      if (available < 4) break;
      const length = buf.readUInt32BE(pos);
      if (length < 8 || length > MAX_MESSAGE_LENGTH) {
        out.push(errorResponse('FATAL', '08P01', 'invalid length of startup packet'));
        state.phase = PHASE_CLOSED;
        break;
      }
      if (available < length) break;
      handleStartupMessage(socket, state, { buf, pos: pos + 4, end: pos + length }, out);
      pos += length;
    } else {
      if (available < 5) break;
      const type = buf[pos] as number;
      const length = buf.readUInt32BE(pos + 1);
      if (length < 4 || length > MAX_MESSAGE_LENGTH) {
        out.push(errorResponse('FATAL', '08P01', `invalid message length ${length}`));
        state.phase = PHASE_CLOSED;
        break;
      }
      if (available < 1 + length) break;
      handleMessage(state, type, { buf, pos: pos + 5, end: pos + 1 + length }, out);
      pos += 1 + length;
    }
  }
  if (state.phase !== PHASE_CLOSED && pos < buf.length) {
    // Copy so the (possibly large) chunk is not retained by a small remainder.
    state.pending = Buffer.from(buf.subarray(pos));
  }
}

function handleStartupMessage(socket: net.Socket, state: ConnState, r: Reader, out: Buffer[]): void {
  const code = readInt32(r);
  if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
    out.push(SSL_REFUSED);
    return;
  }
  if (code === CANCEL_REQUEST_CODE) {
    state.phase = PHASE_CLOSED;
    return;
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== PROTOCOL_MAJOR) {
    out.push(
      errorResponse(
        'FATAL',
        '0A000',
        `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.0`,
      ),
    );
    state.phase = PHASE_CLOSED;
    return;
  }
  const params = new Map<string, string>();
  while (r.pos < r.end) {
    const key = readCString(r);
    if (key === '') break;
    params.set(key, readCString(r));
  }
  const user = params.get('user');
  if (user === undefined || user === '') {
    out.push(errorResponse('FATAL', '28000', 'no PostgreSQL user name specified in startup packet'));
    state.phase = PHASE_CLOSED;
    return;
  }
  const database = params.get('database');
  state.database = database === undefined || database === '' ? user : database;

  const unrecognized = [...params.keys()].filter((k) => k.startsWith('_pq_.'));
  if (minor > 0 || unrecognized.length > 0) {
    // Client asked for a newer minor version or protocol options: negotiate down to 3.0.
    out.push(
      message('v', Buffer.concat([int32(0), int32(unrecognized.length), ...unrecognized.map((k) => cstring(k))])),
    );
  }

  out.push(
    AUTH_OK,
    parameterStatus('server_version', '16.0 (polyproxy demo)'),
    parameterStatus('server_encoding', 'UTF8'),
    parameterStatus('client_encoding', 'UTF8'),
    parameterStatus('DateStyle', 'ISO, MDY'),
    parameterStatus('IntervalStyle', 'postgres'),
    parameterStatus('TimeZone', 'UTC'),
    parameterStatus('integer_datetimes', 'on'),
    parameterStatus('standard_conforming_strings', 'on'),
    parameterStatus('is_superuser', 'off'),
    parameterStatus('session_authorization', user),
    parameterStatus('application_name', params.get('application_name') ?? ''),
    message('K', Buffer.concat([int32(randomInt(1, 0x7fffffff)), int32(randomInt(0, 0x7fffffff))])),
    READY_IDLE,
  );
  state.phase = PHASE_READY;
  socket.setNoDelay(true);
}

/** Report an error in the extended protocol: discard further messages until Sync. */
function extendedError(state: ConnState, out: Buffer[], code: string, text: string): void {
  out.push(errorResponse('ERROR', code, text));
  state.ignoreTillSync = true;
}

function handleMessage(state: ConnState, type: number, r: Reader, out: Buffer[]): void {
  if (state.ignoreTillSync && type !== 0x53 /* S */ && type !== 0x58 /* X */) return;
  switch (type) {
    case 0x51: // 'Q' simple query
      handleSimpleQuery(state, readCString(r), out);
      return;
    case 0x50: {
      // 'P' Parse
      state.extended = true;
      const name = readCString(r);
      const query = readCString(r);
      const count = readInt16(r);
      const paramTypes: number[] = [];
      for (let i = 0; i < count; i++) paramTypes.push(readInt32(r));
      if (state.statements === null) state.statements = new Map();
      if (name !== '' && state.statements.has(name)) {
        extendedError(state, out, '42P05', `prepared statement "${name}" already exists`);
        return;
      }
      state.statements.set(name, { query, paramTypes });
      out.push(PARSE_COMPLETE);
      return;
    }
    case 0x42: {
      // 'B' Bind
      state.extended = true;
      const portalName = readCString(r);
      const statementName = readCString(r);
      const formatCount = readInt16(r);
      skip(r, formatCount * 2);
      const paramCount = readInt16(r);
      for (let i = 0; i < paramCount; i++) {
        const len = readInt32(r);
        if (len > 0) skip(r, len);
      }
      const resultFormatCount = readInt16(r);
      const binary = resultFormatCount > 0 && readInt16(r) === 1;
      const statement = state.statements?.get(statementName);
      if (statement === undefined) {
        extendedError(state, out, '26000', `prepared statement "${statementName}" does not exist`);
        return;
      }
      if (state.portals === null) state.portals = new Map();
      state.portals.set(portalName, { query: statement.query, binary });
      out.push(BIND_COMPLETE);
      return;
    }
    case 0x44: {
      // 'D' Describe
      state.extended = true;
      const target = readByte(r);
      const name = readCString(r);
      if (target === 0x53 /* S */) {
        const statement = state.statements?.get(name);
        if (statement === undefined) {
          extendedError(state, out, '26000', `prepared statement "${name}" does not exist`);
          return;
        }
        out.push(parameterDescription(statement), describeRows(classifyQuery(statement.query), false));
      } else if (target === 0x50 /* P */) {
        const portal = state.portals?.get(name);
        if (portal === undefined) {
          extendedError(state, out, '34000', `portal "${name}" does not exist`);
          return;
        }
        out.push(describeRows(classifyQuery(portal.query), portal.binary));
      } else {
        throw new ProtocolViolation('invalid DESCRIBE message subtype');
      }
      return;
    }
    case 0x45: {
      // 'E' Execute
      state.extended = true;
      const name = readCString(r);
      const portal = state.portals?.get(name);
      if (portal === undefined) {
        extendedError(state, out, '34000', `portal "${name}" does not exist`);
        return;
      }
      const kind = classifyQuery(portal.query);
      if (kind === KIND_EMPTY) {
        out.push(EMPTY_QUERY);
      } else {
        out.push(resultRow(state, kind, portal.binary), SELECT_1_COMPLETE);
      }
      return;
    }
    case 0x43: {
      // 'C' Close
      state.extended = true;
      const target = readByte(r);
      const name = readCString(r);
      if (target === 0x53 /* S */) state.statements?.delete(name);
      else if (target === 0x50 /* P */) state.portals?.delete(name);
      else throw new ProtocolViolation('invalid CLOSE message subtype');
      out.push(CLOSE_COMPLETE);
      return;
    }
    case 0x48: // 'H' Flush: replies are flushed after every chunk anyway
      state.extended = true;
      return;
    case 0x53: // 'S' Sync: ends the implicit transaction, which closes all portals
      state.extended = false;
      state.ignoreTillSync = false;
      state.portals = null;
      if (state.statements !== null && state.statements.size === 0) state.statements = null;
      out.push(READY_IDLE);
      return;
    case 0x58: // 'X' Terminate
      state.phase = PHASE_CLOSED;
      return;
    default: {
      const printable = type >= 0x20 && type < 0x7f ? `"${String.fromCharCode(type)}"` : `0x${type.toString(16)}`;
      const text = `message type ${printable} is not supported by the polyproxy demo server`;
      if (state.extended) {
        extendedError(state, out, '0A000', text);
      } else {
        out.push(errorResponse('ERROR', '0A000', text), READY_IDLE);
      }
    }
  }
}

function parameterDescription(statement: PreparedStatement): Buffer {
  // Parameters are $1..$n; unspecified types are reported as text.
  let count = statement.paramTypes.length;
  for (const match of statement.query.matchAll(/\$(\d+)/g)) {
    const n = Number(match[1]);
    if (n > count && n <= 65535) count = n;
  }
  const body = Buffer.allocUnsafe(2 + 4 * count);
  body.writeInt16BE(count, 0);
  for (let i = 0; i < count; i++) {
    const oid = statement.paramTypes[i];
    body.writeUInt32BE(oid === undefined || oid === 0 ? OID_TEXT : oid >>> 0, 2 + 4 * i);
  }
  return message('t', body);
}

function handleSimpleQuery(state: ConnState, sql: string, out: Buffer[]): void {
  const statements = splitStatements(sql);
  if (statements.length === 0) {
    out.push(EMPTY_QUERY, READY_IDLE);
    return;
  }
  for (const statement of statements) {
    const kind = classifyQuery(statement);
    out.push(describeRows(kind, false), resultRow(state, kind, false), SELECT_1_COMPLETE);
  }
  out.push(READY_IDLE);
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

export function startPgDemoServer(options: PgDemoServerOptions): Promise<PgDemoServer> {
  const ctx: ServerContext = { name: options.name, sockets: new Set() };

  function onSocketClose(this: net.Socket): void {
    ctx.sockets.delete(this);
    connStates.delete(this);
  }

  const server = net.createServer(function onConnection(socket) {
    ctx.sockets.add(socket);
    connStates.set(socket, {
      ctx,
      phase: PHASE_STARTUP,
      pending: null,
      database: '',
      statements: null,
      portals: null,
      extended: false,
      ignoreTillSync: false,
    });
    socket.on('data', onSocketData);
    socket.on('drain', onSocketDrain);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      // Keep later server errors from becoming uncaught exceptions.
      server.on('error', () => {});
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : (options.port ?? 0);
      let closing: Promise<void> | null = null;
      resolve({
        port,
        get connections() {
          return ctx.sockets.size;
        },
        close() {
          if (closing === null) {
            closing = new Promise<void>((done) => {
              server.close(() => done());
              for (const socket of ctx.sockets) socket.destroy();
              ctx.sockets.clear();
            });
          }
          return closing;
        },
      });
    });
  });
}
