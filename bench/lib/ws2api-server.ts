/**
 * The HTTP API behind the ws-bridge benchmark (the ws2api "API server"):
 * GET /api/<id> → `ok` (upgrade allowed), POST /api/<id> → the body back
 * with the request's content-type (so each client message gets a reply
 * message), DELETE (and any other method) → empty. Every path answers.
 * Prints {"type":"ready","port":N,"pid":N,"pids":[…]}; `stats` on stdin →
 * {"type":"stats","get":..,"post":..,"delete":..,"other":..} (summed over
 * processes).
 *
 * A raw HTTP/1.1 server on node:net, not node:http: ws-scale sends 10,000
 * requests/s through it on a shared 2-core machine, where node:http's ~30 µs
 * of CPU per request (IncomingMessage/ServerResponse objects, header maps,
 * streams) is taken from the bridge under test. This one parses the
 * requests of a read in place, byte by byte (keep-alive, pipelining, a
 * request split over reads, Content-Length or chunked bodies, `Connection:
 * close`), and writes all the responses of that read in one socket.write.
 * Measured at 4,000 requests/s: ~37 µs → ~19 µs of CPU per request (user
 * ~25 → ~9; the rest is the kernel's read, write and wake-ups). Always
 * Content-Length, keep-alive by default (HTTP/1.1; HTTP/1.0 only with
 * `Connection: keep-alive`), connections idle for 120–240 s dropped (one
 * sweep timer, no timer per socket). Malformed requests →
 * 400 and close; heads over 16 KiB → 431; bodies over 64 MiB → 413;
 * transfer codings other than chunked → 501.
 *
 * `--processes N` (ws-scale: 10,000 messages/s is more than one Node
 * process answers on a shared core) runs N processes on one port
 * (SO_REUSEPORT): this one and N − 1 forked copies that report their
 * counts over IPC.
 *
 *   node bench/lib/ws2api-server.ts [--port N] [--processes N]
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' }, processes: { type: 'string', default: '1' }, child: { type: 'boolean', default: false } } });
type Counts = { get: number; post: number; delete: number; other: number };
const counts: Counts = { get: 0, post: 0, delete: 0, other: 0 };

const MAX_HEAD = 16 * 1024;
const MAX_BODY = 64 * 1024 * 1024;
/** Connections idle for a whole sweep (120–240 s) are dropped (node:http's keepAliveTimeout was 120 s). */
const IDLE_SWEEP_MS = 120_000;
const HEAD_END = Buffer.from('\r\n\r\n');
const EMPTY = Buffer.alloc(0);
/** The `connection` field of a response: none (HTTP/1.1 keep-alive), close, or keep-alive (to an HTTP/1.0 client that asked for it). */
const CONNECTION = ['', 'connection: close\r\n', 'connection: keep-alive\r\n'] as const;
const KEEP = 0;
const CLOSE = 1;
const KEEP_10 = 2;
/** The fixed responses, by CONNECTION index. */
const GET_RESPONSES = CONNECTION.map((c) => Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n${c}\r\nok`, 'latin1'));
const EMPTY_RESPONSES = CONNECTION.map((c) => Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: 0\r\n${c}\r\n`, 'latin1'));
const POST_PREFIX = Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: ', 'latin1');
const TEXT_PLAIN = Buffer.from('text/plain', 'latin1');
const errorResponse = (status: string): Buffer => Buffer.from(`HTTP/1.1 ${status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`, 'latin1');
const BAD_REQUEST = errorResponse('400 Bad Request');
const HEAD_TOO_LARGE = errorResponse('431 Request Header Fields Too Large');
const BODY_TOO_LARGE = errorResponse('413 Content Too Large');
const NOT_IMPLEMENTED = errorResponse('501 Not Implemented');

/** 1 for the bytes of an HTTP token (RFC 9110 tchar): methods and field names. */
const TCHAR = new Uint8Array(256);
for (const ch of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[ch.charCodeAt(0)] = 1;
const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const bytes = (text: string): Buffer => Buffer.from(text, 'latin1');
const CONNECTION_NAME = bytes('connection');
const CONTENT_TYPE = bytes('content-type');
const CONTENT_LENGTH = bytes('content-length');
const TRANSFER_ENCODING = bytes('transfer-encoding');
const CHUNKED = bytes('chunked');
const HTTP_1 = bytes('HTTP/1.');
const CLOSE_TOKEN = /(?:^|,)[ \t]*close[ \t]*(?:,|$)/i;
const KEEP_ALIVE_TOKEN = /(?:^|,)[ \t]*keep-alive[ \t]*(?:,|$)/i;
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,8})[ \t]*(?:;.*)?$/;

/** Whether data[at, at + word.length) is `word` (lower-case letters and '-'), ASCII case ignored; for bytes known to be tchar or visible (no CR). */
function isWord(data: Buffer, at: number, word: Buffer): boolean {
  for (let i = 0; i < word.length; i++) if (((data[at + i] as number) | 0x20) !== ((word[i] as number) | 0x20)) return false;
  return true;
}

/** One connection's state. */
interface Conn {
  socket: Socket;
  /** Bytes received and not yet parsed (a request split over reads), as received. */
  parts: Buffer[];
  partsLength: number;
  /** partsLength the next parse needs (a known request length), 0 when unknown. */
  need: number;
  /** A close was decided: the rest of the input is ignored. */
  done: boolean;
  /** Data arrived since the last idle sweep. */
  active: boolean;
}

type Chunked = { end: number; body: Buffer } | { error: Buffer };

/** Decodes the chunked body at `start`: its end and the body, an error response, or null while incomplete. */
function decodeChunked(data: Buffer, start: number): Chunked | null {
  const chunks: Buffer[] = [];
  let size = 0;
  let p = start;
  for (;;) {
    const eol = data.indexOf('\r\n', p, 'latin1');
    if (eol < 0) return data.length - p > 1024 ? { error: BAD_REQUEST } : null;
    const m = CHUNK_SIZE.exec(data.toString('latin1', p, eol));
    if (m === null) return { error: BAD_REQUEST };
    const n = parseInt(m[1] as string, 16);
    p = eol + 2;
    if (n === 0) {
      // Trailer fields (ignored) until an empty line.
      for (;;) {
        const end = data.indexOf('\r\n', p, 'latin1');
        if (end < 0) return data.length - p > MAX_HEAD ? { error: HEAD_TOO_LARGE } : null;
        if (end === p) return { end: p + 2, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size) };
        p = end + 2;
      }
    }
    size += n;
    if (size > MAX_BODY) return { error: BODY_TOO_LARGE };
    if (data.length - p < n + 2) return null;
    if (data[p + n] !== CR || data[p + n + 1] !== LF) return { error: BAD_REQUEST };
    chunks.push(data.subarray(p, p + n));
    p += n + 2;
  }
}

/** 200 to a POST: the body back with the request's content-type (`data[typeStart, typeEnd)`, text/plain when absent). */
function postResponse(data: Buffer, typeStart: number, typeEnd: number, body: Buffer, connection: number): Buffer {
  const type = typeStart < 0 ? TEXT_PLAIN : data.subarray(typeStart, typeEnd);
  const rest = `\r\ncontent-length: ${body.length}\r\n${CONNECTION[connection]}\r\n`;
  const out = Buffer.allocUnsafe(POST_PREFIX.length + type.length + rest.length + body.length);
  let at = POST_PREFIX.copy(out, 0);
  at += type.copy(out, at);
  at += out.write(rest, at, 'latin1');
  body.copy(out, at);
  return out;
}

/**
 * Answers the complete requests in `data`: pushes their responses to `out`
 * and returns where the unparsed rest starts, or -1 when the connection is
 * to close after `out` (Connection: close, or an error response).
 * `conn.need` is set to the length of an incomplete request when known.
 * Parses bytes in place: request line, then `name ":" OWS value OWS` per
 * CRLF-terminated line; only the fields it needs are looked at.
 */
function serve(conn: Conn, data: Buffer, out: Buffer[]): number {
  let pos = 0;
  const len = data.length;
  while (pos < len) {
    // Tolerate empty lines before a request line (RFC 9112 §2.2).
    while (pos + 1 < len && data[pos] === CR && data[pos + 1] === LF) pos += 2;
    const headEnd = data.indexOf(HEAD_END, pos);
    if (headEnd < 0) {
      if (len - pos > MAX_HEAD) return fail(out, HEAD_TOO_LARGE);
      break;
    }
    if (headEnd - pos > MAX_HEAD) return fail(out, HEAD_TOO_LARGE);

    // Request line: method SP target SP HTTP/1.x
    let p = pos;
    while (TCHAR[data[p] as number] === 1) p++;
    const methodLength = p - pos;
    if (methodLength === 0 || data[p] !== SP) return fail(out, BAD_REQUEST);
    const b0 = data[pos];
    const method = methodLength === 3 && b0 === 0x47 && data[pos + 1] === 0x45 && data[pos + 2] === 0x54 ? 'GET' : methodLength === 4 && b0 === 0x50 && data[pos + 1] === 0x4f && data[pos + 2] === 0x53 && data[pos + 3] === 0x54 ? 'POST' : methodLength === 6 && data.toString('latin1', pos, p) === 'DELETE' ? 'DELETE' : 'other';
    const targetStart = ++p;
    for (let b = data[p] as number; p < headEnd && b > SP && b !== 0x7f; b = data[++p] as number);
    if (p === targetStart || data[p] !== SP) return fail(out, BAD_REQUEST);
    p++;
    if (headEnd - p < 8 || data.compare(HTTP_1, 0, HTTP_1.length, p, p + HTTP_1.length) !== 0 || (data[p + 7] !== 0x31 && data[p + 7] !== 0x30)) return fail(out, BAD_REQUEST);
    const http10 = data[p + 7] === 0x30;
    p += 8;
    if (p < headEnd) {
      if (data[p] !== CR || data[p + 1] !== LF) return fail(out, BAD_REQUEST);
      p += 2;
    }

    let close = http10;
    let contentLength = -1;
    let chunked = false;
    let typeStart = -1;
    let typeEnd = -1;
    while (p < headEnd) {
      const nameStart = p;
      while (TCHAR[data[p] as number] === 1) p++;
      const nameLength = p - nameStart;
      // No name, or whitespace before the colon (also obs-fold continuation lines).
      if (nameLength === 0 || data[p] !== 0x3a) return fail(out, BAD_REQUEST);
      p++;
      while (data[p] === SP || data[p] === HTAB) p++;
      const valueStart = p;
      for (; p < headEnd; p++) {
        const b = data[p] as number;
        if (b === CR) break;
        if ((b < SP && b !== HTAB) || b === 0x7f) return fail(out, BAD_REQUEST);
      }
      if (p < headEnd && data[p + 1] !== LF) return fail(out, BAD_REQUEST);
      let valueEnd = p;
      while (valueEnd > valueStart && (data[valueEnd - 1] === SP || data[valueEnd - 1] === HTAB)) valueEnd--;
      p = p < headEnd ? p + 2 : headEnd;
      switch (nameLength) {
        case 10:
          if (isWord(data, nameStart, CONNECTION_NAME)) {
            const value = data.toString('latin1', valueStart, valueEnd);
            if (CLOSE_TOKEN.test(value)) close = true;
            else if (http10 && KEEP_ALIVE_TOKEN.test(value)) close = false;
          }
          break;
        case 12:
          if (isWord(data, nameStart, CONTENT_TYPE)) {
            typeStart = valueStart;
            typeEnd = valueEnd;
          }
          break;
        case 14:
          if (isWord(data, nameStart, CONTENT_LENGTH)) {
            if (valueEnd === valueStart || valueEnd - valueStart > 15) return fail(out, BAD_REQUEST);
            let n = 0;
            for (let i = valueStart; i < valueEnd; i++) {
              const d = (data[i] as number) - 0x30;
              if (d < 0 || d > 9) return fail(out, BAD_REQUEST);
              n = n * 10 + d;
            }
            if (contentLength >= 0 && contentLength !== n) return fail(out, BAD_REQUEST);
            contentLength = n;
          }
          break;
        case 17:
          if (isWord(data, nameStart, TRANSFER_ENCODING)) {
            if (chunked || valueEnd - valueStart !== CHUNKED.length || !isWord(data, valueStart, CHUNKED)) return fail(out, NOT_IMPLEMENTED);
            chunked = true;
          }
          break;
      }
    }
    if (chunked && contentLength >= 0) return fail(out, BAD_REQUEST);
    if (contentLength > MAX_BODY) return fail(out, BODY_TOO_LARGE);

    const bodyStart = headEnd + 4;
    let body: Buffer = EMPTY;
    let end = bodyStart;
    if (chunked) {
      const decoded = decodeChunked(data, bodyStart);
      if (decoded === null) {
        conn.need = 0;
        break;
      }
      if ('error' in decoded) return fail(out, decoded.error);
      body = decoded.body;
      end = decoded.end;
    } else if (contentLength > 0) {
      end = bodyStart + contentLength;
      if (end > len) {
        conn.need = end - pos;
        break;
      }
      body = data.subarray(bodyStart, end);
    }
    pos = end;

    const connection = close ? CLOSE : http10 ? KEEP_10 : KEEP;
    if (method === 'GET') {
      counts.get++;
      out.push(GET_RESPONSES[connection] as Buffer);
    } else if (method === 'POST') {
      counts.post++;
      out.push(postResponse(data, typeStart, typeEnd, body, connection));
    } else {
      if (method === 'DELETE') counts.delete++;
      else counts.other++;
      out.push(EMPTY_RESPONSES[connection] as Buffer);
    }
    if (close) return -1;
  }
  return pos;
}

function fail(out: Buffer[], response: Buffer): number {
  out.push(response);
  return -1;
}

const conns = new Set<Conn>();
setInterval(() => {
  for (const conn of conns) {
    if (!conn.active) conn.socket.destroy();
    conn.active = false;
  }
}, IDLE_SWEEP_MS).unref();

function onConnection(socket: Socket): void {
  const conn: Conn = { socket, parts: [], partsLength: 0, need: 0, done: false, active: true };
  conns.add(conn);
  socket.on('close', () => conns.delete(conn));
  socket.on('error', () => {});
  socket.on('data', (chunk: Buffer) => {
    conn.active = true;
    if (conn.done) return;
    let data = chunk;
    if (conn.partsLength > 0) {
      conn.parts.push(chunk);
      conn.partsLength += chunk.length;
      // A request of known length still incomplete: wait for more without copying.
      if (conn.need > conn.partsLength) return;
      data = Buffer.concat(conn.parts, conn.partsLength);
      conn.parts = [];
      conn.partsLength = 0;
    }
    conn.need = 0;
    const out: Buffer[] = [];
    const rest = serve(conn, data, out);
    if (rest >= 0 && rest < data.length) {
      conn.parts.push(data.subarray(rest));
      conn.partsLength = data.length - rest;
    }
    if (out.length === 0) return;
    // All the responses of this read in one write.
    const response = out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out);
    if (rest < 0) {
      conn.done = true;
      conn.parts = [];
      conn.partsLength = 0;
      socket.end(response);
    } else if (!socket.write(response)) {
      // The peer does not read its responses: stop reading its requests until it does.
      socket.pause();
      socket.once('drain', () => socket.resume());
    }
  });
}

const server = net.createServer({ noDelay: true }, onConnection);

const processes = Math.max(1, Number(values.processes));
const reusePort = processes > 1 || values.child;
await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: Number(values.port), backlog: 4096, reusePort }, resolve));
const port = (server.address() as AddressInfo).port;

if (values.child) {
  process.on('message', (m) => {
    if (m === 'stats') process.send?.({ stats: counts });
  });
  process.on('disconnect', () => process.exit(0));
  process.send?.({ ready: true });
} else {
  const children: ChildProcess[] = [];
  for (let i = 1; i < processes; i++) {
    const child = fork(new URL(import.meta.url).pathname, ['--child', '--port', String(port)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    await new Promise<void>((resolve) => child.once('message', () => resolve()));
    children.push(child);
  }
  const childCounts = (child: ChildProcess): Promise<Counts> =>
    new Promise((resolve) => {
      child.once('message', (m) => resolve((m as { stats: Counts }).stats));
      child.send('stats');
    });
  process.stdout.write(`${JSON.stringify({ type: 'ready', port, pid: process.pid, pids: [process.pid, ...children.map((c) => c.pid)] })}\n`);
  createInterface({ input: process.stdin })
    .on('line', (line) => {
      if (line.trim() !== 'stats') return;
      void Promise.all(children.map(childCounts)).then((list) => {
        const total = { ...counts };
        for (const c of list) for (const k of Object.keys(total) as Array<keyof Counts>) total[k] += c[k];
        process.stdout.write(`${JSON.stringify({ type: 'stats', ...total })}\n`);
      });
    })
    .on('close', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}
