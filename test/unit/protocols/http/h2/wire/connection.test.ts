/**
 * The proxy's own HTTP/2 server framing layer (wire/connection.ts,
 * stream.ts, request-fields.ts) on its own, over a plain net server:
 * node:http2 clients for the ordinary traffic (concurrent streams, flow
 * control both ways with backpressure, trailers both ways, header blocks
 * over CONTINUATION, SETTINGS changes mid-stream, graceful GOAWAY), and a
 * raw frame client for every error the server must answer with an exact
 * frame: connection errors (GOAWAY with the code, then the close) and
 * stream errors (RST_STREAM with the code, the connection going on), the
 * oversized header list (the HPACK table stays in step), PING and
 * SETTINGS acknowledgements. Test names carry the RFC 9113 section.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http2 from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { H2ServerConnection } from '../../../../../../src/protocols/http/h2/wire/connection.ts';
import type { H2ConnectionHandler, H2ConnectionSettings } from '../../../../../../src/protocols/http/h2/wire/connection.ts';
import {
  COMPRESSION_ERROR,
  CONTINUATION,
  DATA,
  ENHANCE_YOUR_CALM,
  FLAG_ACK,
  FLAG_END_HEADERS,
  FLAG_END_STREAM,
  FLAG_PADDED,
  FLOW_CONTROL_ERROR,
  FRAME_SIZE_ERROR,
  GOAWAY,
  HEADERS,
  NO_ERROR,
  PING,
  PRIORITY,
  PROTOCOL_ERROR,
  PUSH_PROMISE,
  REFUSED_STREAM,
  RST_STREAM,
  SETTINGS,
  SETTINGS_ENABLE_PUSH,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SETTINGS_MAX_FRAME_SIZE,
  STREAM_CLOSED,
  WINDOW_UPDATE,
} from '../../../../../../src/protocols/http/h2/wire/frames.ts';
import { HpackDecoder, HpackEncoder, maxEncodedLength } from '../../../../../../src/protocols/http/h2/wire/hpack.ts';
import { checkRequest } from '../../../../../../src/protocols/http/h2/wire/request-fields.ts';
import type { RequestHead } from '../../../../../../src/protocols/http/h2/wire/request-fields.ts';
import type { H2Stream, StreamOwner } from '../../../../../../src/protocols/http/h2/wire/stream.ts';

/** Every test: a hang fails instead of stalling the run. */
const T = { timeout: 20_000 };

// ---- the server under test ---------------------------------------------------

const DEFAULTS: H2ConnectionSettings = {
  maxConcurrentStreams: 100,
  initialWindowSize: 65535,
  connectionWindowSize: 1 << 20,
  maxHeaderListSize: 64 * 1024,
  maxHeaders: 100,
};

interface Seen {
  id: number;
  head: RequestHead;
  fields: string[];
}

/** What the handlers saw, for the tests to assert on. */
interface Log {
  streams: Seen[];
  oversized: number[];
  errors: { flood: boolean; code: number; message: string }[];
  closes: number;
  /** Streams the /hold route keeps open, by id. */
  held: Map<number, H2Stream>;
  /** Per stream id: write() false count and drains heard, for /big. */
  backpressure: Map<number, { falses: number; drains: number }>;
  /** /echo?pause: the request bytes the server held when the client had to stop. */
  pausedAt: number[];
}

interface TestServer {
  port: number;
  conns: H2ServerConnection[];
  log: Log;
  /** Resolves when `n` streams have been seen by onStream. */
  streamsSeen(n: number): Promise<void>;
  close(): Promise<void>;
}

const servers: TestServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

/** Resolves when `check()` holds, tried after each turn of the event loop (the test runner's timeout bounds it). */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setImmediate(resolve));
}

/** Deterministic body bytes. */
function pattern(n: number, seed = 7): Buffer {
  const buf = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = x & 0xff;
  }
  return buf;
}

function sha(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

function owner(partial: Partial<StreamOwner>): StreamOwner {
  return { onClientAborted() {}, onClientClose() {}, onClientDrain() {}, onWantTrailers() {}, ...partial };
}

/** Writes `total` bytes of pattern() in `chunk`-sized pieces with backpressure, then end() (or trailers). */
function writeBig(stream: H2Stream, total: number, chunk: number, log: Log): void {
  const data = pattern(total);
  const bp = { falses: 0, drains: 0 };
  log.backpressure.set(stream.id, bp);
  let off = 0;
  const pump = (): void => {
    while (off < total) {
      const n = Math.min(chunk, total - off);
      const ok = stream.write(data.subarray(off, off + n));
      off += n;
      if (!ok) {
        bp.falses++;
        return;
      }
    }
    stream.end();
  };
  stream.owner = owner({
    onClientDrain() {
      bp.drains++;
      pump();
    },
  });
  pump();
}

function route(stream: H2Stream, head: RequestHead, fields: string[], log: Log, conn: H2ServerConnection): void {
  const url = new URL(head.path, 'http://x');
  const json = (value: unknown, extra: Record<string, string> = {}): void => {
    const body = Buffer.from(JSON.stringify(value));
    if (head.method === 'HEAD') stream.respond({ ':status': 200, 'content-type': 'application/json', 'content-length': body.length, ...extra }, { endStream: true });
    else {
      stream.respond({ ':status': 200, 'content-type': 'application/json', ...extra });
      stream.end(body);
    }
  };
  switch (url.pathname) {
    case '/info':
      stream.resume();
      json({ id: stream.id, method: head.method, path: head.path, authority: head.authority, fields });
      return;
    case '/echo': {
      stream.respond({ ':status': 200 });
      stream.on('data', (chunk: Buffer) => {
        if (!stream.write(chunk)) stream.pause();
      });
      stream.on('drain', () => stream.resume());
      stream.on('end', () => stream.end());
      if (url.searchParams.has('pause')) {
        // Not reading until the client has filled the stream's window: it must wait, not fail.
        void until(() => stream.recvWindow === 0 || stream.closed).then(async () => {
          const held = stream.received;
          // A few more turns: nothing more may come while the window is shut.
          for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
          log.pausedAt.push(held, stream.received);
          stream.resume();
        });
      } else stream.resume();
      return;
    }
    case '/sink': {
      let n = 0;
      stream.on('data', (chunk: Buffer) => {
        n += chunk.length;
      });
      stream.on('end', () => json({ received: n }));
      stream.resume();
      return;
    }
    case '/big': {
      stream.resume();
      stream.respond({ ':status': 200 });
      writeBig(stream, Number(url.searchParams.get('n')), Number(url.searchParams.get('chunk') ?? 65536), log);
      return;
    }
    case '/trailers': {
      stream.resume();
      const empty = url.searchParams.has('empty');
      const body = pattern(100_000);
      stream.owner = owner({
        onWantTrailers() {
          stream.sendTrailers(empty ? [] : { 'x-checksum': sha(body), 'grpc-status': '0' });
        },
      });
      stream.respond({ ':status': 200 }, { waitForTrailers: true });
      stream.write(body.subarray(0, 50_000));
      stream.end(body.subarray(50_000));
      return;
    }
    case '/long-header': {
      stream.resume();
      const value = fields[fields.indexOf('x-long') + 1] ?? '';
      json({ length: value.length, sha: sha(Buffer.from(value, 'latin1')) }, { 'x-long-reply': 'r'.repeat(40_000) });
      return;
    }
    case '/hold':
      log.held.set(stream.id, stream);
      return;
    case '/goaway':
      stream.resume();
      conn.goaway();
      json({ id: stream.id });
      return;
    default:
      stream.respond({ ':status': 404 }, { endStream: true });
  }
}

async function startServer(settings: Partial<H2ConnectionSettings> = {}, hooks: Partial<H2ConnectionHandler> = {}): Promise<TestServer> {
  const log: Log = { streams: [], oversized: [], errors: [], closes: 0, held: new Map(), backpressure: new Map(), pausedAt: [] };
  const conns: H2ServerConnection[] = [];
  const sockets = new Set<net.Socket>();
  const waiters: (() => void)[] = [];
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const conn = new H2ServerConnection(socket, { ...DEFAULTS, ...settings });
    conns.push(conn);
    conn.start(
      {
        onStream(stream, head, fields) {
          // Whatever reaches a handler was accepted by the request checks.
          assert.deepEqual(checkRequest(fields, true), head);
          log.streams.push({ id: stream.id, head, fields });
          for (const w of waiters.splice(0)) w();
          if (hooks.onStream !== undefined) hooks.onStream(stream, head, fields);
          else route(stream, head, fields, log, conn);
        },
        onOversized(stream) {
          log.oversized.push(stream.id);
          if (hooks.onOversized !== undefined) hooks.onOversized(stream);
          else stream.respond({ ':status': 431 }, { endStream: true });
        },
        onConnectionError(flood, code, message) {
          log.errors.push({ flood, code, message });
        },
        onClose() {
          log.closes++;
        },
      },
      null,
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const s: TestServer = {
    port: (server.address() as AddressInfo).port,
    conns,
    log,
    async streamsSeen(n) {
      while (log.streams.length < n) await new Promise<void>((resolve) => waiters.push(resolve));
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  servers.push(s);
  return s;
}

// ---- node:http2 clients ----------------------------------------------------------

async function connect(server: TestServer, options: http2.ClientSessionOptions = {}): Promise<ClientHttp2Session> {
  const session = http2.connect(`http://127.0.0.1:${server.port}`, options);
  session.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    session.once('remoteSettings', () => resolve());
    session.once('error', reject);
  });
  return session;
}

interface Reply {
  headers: IncomingHttpHeaders;
  body: Buffer;
  trailers: IncomingHttpHeaders | null;
}

function collect(req: ClientHttp2Stream): Promise<Reply> {
  return new Promise((resolve, reject) => {
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders | null = null;
    const chunks: Buffer[] = [];
    req.on('response', (h) => {
      headers = h;
    });
    req.on('trailers', (t) => {
      trailers = t;
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve({ headers, body: Buffer.concat(chunks), trailers }));
    req.on('error', reject);
  });
}

function get(session: ClientHttp2Session, path: string, extra: OutgoingHttpHeaders = {}): Promise<Reply> {
  const req = session.request({ ':path': path, ...extra });
  req.end();
  return collect(req);
}

function closeSession(session: ClientHttp2Session): Promise<void> {
  return new Promise((resolve) => {
    if (session.closed || session.destroyed) resolve();
    else session.close(() => resolve());
  });
}

// ---- the raw frame client ----------------------------------------------------------

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

function frame(type: number, flags: number, id: number, payload: Buffer | number[] = Buffer.alloc(0)): Buffer {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const head = Buffer.alloc(9);
  head.writeUIntBE(body.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(id, 5);
  return Buffer.concat([head, body]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function settingsPayload(entries: [number, number][]): Buffer {
  const b = Buffer.alloc(entries.length * 6);
  entries.forEach(([id, value], i) => {
    b.writeUInt16BE(id, i * 6);
    b.writeUInt32BE(value, i * 6 + 2);
  });
  return b;
}

function hpack(fields: string[]): Buffer {
  const buf = Buffer.alloc(maxEncodedLength(fields));
  return buf.subarray(0, new HpackEncoder().encode(fields, buf, 0));
}

function request(path: string, extra: string[] = [], method = 'GET'): string[] {
  return [':method', method, ':scheme', 'http', ':path', path, ':authority', 'test.local', ...extra];
}

function headersFrame(id: number, fields: string[], endStream = true): Buffer {
  return frame(HEADERS, FLAG_END_HEADERS | (endStream ? FLAG_END_STREAM : 0), id, hpack(fields));
}

class RawClient {
  readonly socket: net.Socket;
  readonly decoder = new HpackDecoder(4096);
  #buf = Buffer.alloc(0);
  #frames: Frame[] = [];
  #closed = false;
  #wake: (() => void) | null = null;

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, chunk]);
      while (this.#buf.length >= 9) {
        const length = this.#buf.readUIntBE(0, 3);
        if (this.#buf.length < 9 + length) break;
        this.#frames.push({ type: this.#buf[3] as number, flags: this.#buf[4] as number, id: this.#buf.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(this.#buf.subarray(9, 9 + length)) });
        this.#buf = this.#buf.subarray(9 + length);
      }
      this.#notify();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#notify();
    });
    socket.on('error', () => {});
  }

  /** Connects, sends the preface and `settings`, and (handshake) waits for the server's SETTINGS and the ACK of ours. */
  static async open(port: number, options: { settings?: [number, number][]; handshake?: boolean } = {}): Promise<RawClient> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new RawClient(socket);
    if (options.handshake === false) return client;
    client.send(PREFACE, frame(SETTINGS, 0, 0, settingsPayload(options.settings ?? [])));
    const settings = await client.until((f) => f.type === SETTINGS && f.flags === 0);
    assert.equal(settings.id, 0);
    client.send(frame(SETTINGS, FLAG_ACK, 0));
    await client.until((f) => f.type === SETTINGS && f.flags === FLAG_ACK);
    return client;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  send(...chunks: Buffer[]): void {
    this.socket.write(Buffer.concat(chunks));
  }

  /** The next frame, or null once the connection closed. */
  async next(): Promise<Frame | null> {
    while (this.#frames.length === 0) {
      if (this.#closed) return null;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
    return this.#frames.shift() as Frame;
  }

  /** The next frame `match` accepts (others before it are dropped); fails if the connection closes first. */
  async until(match: (f: Frame) => boolean): Promise<Frame> {
    for (;;) {
      const f = await this.next();
      assert.ok(f !== null, 'the connection closed before the frame expected');
      if (match(f)) return f;
    }
  }

  /** The frames before the close. */
  async rest(): Promise<Frame[]> {
    const out: Frame[] = [];
    for (let f = await this.next(); f !== null; f = await this.next()) out.push(f);
    return out;
  }

  /** A response's HEADERS (decoded, keeping our decoder in step) on stream `id`. */
  async responseHeaders(id: number): Promise<Map<string, string>> {
    const f = await this.until((x) => x.id === id && (x.type === HEADERS || x.type === RST_STREAM));
    assert.equal(f.type, HEADERS, `stream ${id} was reset (code ${f.type === RST_STREAM ? f.payload.readUInt32BE(0) : ''})`);
    assert.ok((f.flags & FLAG_END_HEADERS) !== 0);
    return this.decode(f.payload);
  }

  decode(block: Buffer): Map<string, string> {
    const out: string[] = [];
    this.decoder.decode(block, 0, block.length, out, 1 << 20);
    const map = new Map<string, string>();
    for (let i = 0; i < out.length; i += 2) map.set(out[i] as string, out[i + 1] as string);
    return map;
  }

  /** A whole response on stream `id`: status and body. */
  async response(id: number): Promise<{ status: string; body: Buffer }> {
    const headers = await this.responseHeaders(id);
    const chunks: Buffer[] = [];
    let ended = false;
    for (let f = await this.next(); f !== null; f = await this.next()) {
      if (f.id !== id) continue;
      if (f.type === DATA) chunks.push(f.payload);
      if (f.type === HEADERS || (f.type === DATA && (f.flags & FLAG_END_STREAM) !== 0)) {
        if (f.type === HEADERS) this.decode(f.payload);
        ended = true;
        break;
      }
    }
    assert.ok(ended, `stream ${id} did not end`);
    return { status: headers.get(':status') ?? '', body: Buffer.concat(chunks) };
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The connection error: GOAWAY with `code` naming `lastStreamId`, then only the close. */
async function expectGoaway(raw: RawClient, code: number, lastStreamId?: number): Promise<void> {
  const goaway = await raw.until((f) => f.type === GOAWAY);
  assert.equal(goaway.id, 0);
  assert.equal(goaway.payload.readUInt32BE(4), code, `GOAWAY code ${goaway.payload.readUInt32BE(4)}, expected ${code}`);
  if (lastStreamId !== undefined) assert.equal(goaway.payload.readUInt32BE(0) & 0x7fffffff, lastStreamId);
  assert.deepEqual(await raw.rest(), [], 'nothing follows a GOAWAY for an error but the close');
}

/** The stream error: RST_STREAM on `id` with `code`. */
async function expectReset(raw: RawClient, id: number, code: number): Promise<void> {
  const rst = await raw.until((f) => f.id === id && (f.type === RST_STREAM || f.type === HEADERS || f.type === GOAWAY));
  assert.equal(rst.type, RST_STREAM, `expected RST_STREAM on stream ${id}, got frame type ${rst.type}`);
  assert.equal(rst.payload.readUInt32BE(0), code, `RST_STREAM code ${rst.payload.readUInt32BE(0)}, expected ${code}`);
}

/** The connection goes on: a request on stream `id` is answered. */
async function expectServed(raw: RawClient, id: number): Promise<void> {
  raw.send(headersFrame(id, request('/info')));
  const res = await raw.response(id);
  assert.equal(res.status, '200');
  assert.equal((JSON.parse(res.body.toString()) as { id: number }).id, id);
}

// ---- tests ---------------------------------------------------------------------------------

describe('H2ServerConnection with node:http2 clients', () => {
  it('serves GET and HEAD (RFC 9113 §8.1)', T, async () => {
    const server = await startServer();
    const session = await connect(server);
    const res = await get(session, '/info?q=1', { 'x-custom': 'yes' });
    assert.equal(res.headers[':status'], 200);
    const info = JSON.parse(res.body.toString()) as { method: string; path: string; authority: string; fields: string[] };
    assert.equal(info.method, 'GET');
    assert.equal(info.path, '/info?q=1');
    assert.equal(info.authority, `127.0.0.1:${server.port}`);
    assert.equal(info.fields[info.fields.indexOf('x-custom') + 1], 'yes');
    const head = await get(session, '/info', { ':method': 'HEAD' });
    assert.equal(head.headers[':status'], 200);
    assert.ok(Number(head.headers['content-length']) > 0);
    assert.equal(head.body.length, 0);
    const missing = await get(session, '/nothing');
    assert.equal(missing.headers[':status'], 404);
    await closeSession(session);
    await until(() => server.log.closes === 1);
  });

  it('runs concurrent streams on one connection, answered in any order (§5)', T, async () => {
    const n = 12;
    const pending: H2Stream[] = [];
    const server = await startServer(
      {},
      {
        onStream(stream) {
          stream.resume();
          pending.push(stream);
          // All in, then answered last first.
          if (pending.length === n) for (const s of pending.reverse()) s.respond({ ':status': 200, 'x-id': String(s.id) }, { endStream: true });
        },
      },
    );
    const session = await connect(server);
    const order: number[] = [];
    const replies = await Promise.all(
      Array.from({ length: n }, (_, i) => {
        const req = session.request({ ':path': `/r${i}` });
        req.end();
        return collect(req).then((r) => {
          order.push(req.id as number);
          return { id: req.id as number, status: r.headers[':status'], tag: r.headers['x-id'] };
        });
      }),
    );
    assert.equal(new Set(replies.map((r) => r.id)).size, n);
    for (const r of replies) {
      assert.equal(r.status, 200);
      assert.equal(r.tag, String(r.id));
    }
    assert.deepEqual(order, [...order].sort((a, b) => b - a), 'the last stream answered first');
    assert.equal(server.conns.length, 1);
    await closeSession(session);
  });

  it('takes a 1 MB body through a 65535-byte stream window and echoes it byte-exact (§6.9)', T, async () => {
    const server = await startServer({ initialWindowSize: 65535, connectionWindowSize: 65535 });
    const session = await connect(server);
    const body = pattern(1 << 20, 11);
    const req = session.request({ ':method': 'POST', ':path': '/echo' });
    req.end(body);
    const res = await collect(req);
    assert.equal(res.headers[':status'], 200);
    assert.equal(res.body.length, body.length);
    assert.equal(sha(res.body), sha(body));
    await closeSession(session);
  });

  it('blocks a client while the handler pauses the body, then takes the rest (§6.9.1)', T, async () => {
    const server = await startServer({ initialWindowSize: 65535 });
    const session = await connect(server);
    const body = pattern(1 << 20, 12);
    const req = session.request({ ':method': 'POST', ':path': '/echo?pause' });
    req.end(body);
    const res = await collect(req);
    assert.equal(sha(res.body), sha(body));
    // The client stopped at the stream's window while nobody read.
    assert.deepEqual(server.log.pausedAt, [65535, 65535]);
    await closeSession(session);
  });

  it('sends a 5 MB response through a client window of 16384 byte-exact, with backpressure (§6.9)', T, async () => {
    const server = await startServer();
    const session = await connect(server, { settings: { initialWindowSize: 16384 } });
    const n = 5 * 1024 * 1024;
    const res = await get(session, `/big?n=${n}`);
    assert.equal(res.body.length, n);
    assert.equal(sha(res.body), sha(pattern(n)));
    const bp = server.log.backpressure.get(1);
    assert.ok(bp !== undefined && bp.falses > 0, 'write() returned false');
    assert.equal(bp.drains, bp.falses, 'every false was followed by a drain');
    await closeSession(session);
  });

  it('sends response trailers after the body (§8.1)', T, async () => {
    const server = await startServer();
    const session = await connect(server);
    const res = await get(session, '/trailers');
    assert.equal(sha(res.body), sha(pattern(100_000)));
    assert.ok(res.trailers !== null);
    assert.equal(res.trailers['x-checksum'], sha(pattern(100_000)));
    assert.equal(res.trailers['grpc-status'], '0');
    await closeSession(session);
  });

  it('ends the stream cleanly on an empty trailers list (§8.1)', T, async () => {
    const server = await startServer();
    const session = await connect(server);
    const res = await get(session, '/trailers?empty');
    assert.equal(sha(res.body), sha(pattern(100_000)));
    assert.equal(res.trailers, null);
    // And the connection goes on.
    assert.equal((await get(session, '/info')).headers[':status'], 200);
    await closeSession(session);
  });

  it("ends the request stream on the client's trailers (§8.1)", T, async () => {
    const server = await startServer();
    const session = await connect(server);
    const body = pattern(200_000, 3);
    const req = session.request({ ':method': 'POST', ':path': '/echo' }, { waitForTrailers: true });
    req.on('wantTrailers', () => req.sendTrailers({ 'x-request-trailer': 'done' }));
    req.end(body);
    const res = await collect(req);
    assert.equal(sha(res.body), sha(body));
    await closeSession(session);
  });

  it('decodes a header block split over CONTINUATION frames, and splits its own (§6.10, §4.3)', T, async () => {
    const server = await startServer({ maxHeaderListSize: 256 * 1024 });
    const session = await connect(server, { settings: { maxHeaderListSize: 1 << 20 } });
    const value = 'v'.repeat(40_000);
    const res = await get(session, '/long-header', { 'x-long': value });
    assert.equal(res.headers[':status'], 200);
    assert.deepEqual(JSON.parse(res.body.toString()), { length: 40_000, sha: sha(Buffer.from(value)) });
    assert.equal(res.headers['x-long-reply'], 'r'.repeat(40_000));
    await closeSession(session);
  });

  it('moves stream send windows when the client changes SETTINGS_INITIAL_WINDOW_SIZE mid-stream (§6.9.2)', T, async () => {
    const server = await startServer();
    const session = await connect(server, { settings: { initialWindowSize: 16384 } });
    session.setLocalWindowSize(16 * 1024 * 1024);
    const n = 1 << 20;
    const req = session.request({ ':path': `/big?n=${n}` });
    req.end();
    req.pause();
    await server.streamsSeen(1);
    const stream = server.conns[0]?.streams.get(1);
    assert.ok(stream !== undefined);
    // The client does not read: the stream stalls at its window.
    await until(() => stream.sendWindow === 0 && stream.outQueued > 0);
    const queued = stream.outQueued;
    await new Promise<void>((resolve) => session.settings({ initialWindowSize: 16384 + 50_000 }, () => resolve()));
    // The 50000 more the new setting allows went out without any WINDOW_UPDATE.
    await until(() => stream.outQueued === queued - 50_000);
    assert.equal(stream.sendWindow, 0);
    req.resume();
    const res = await collect(req);
    assert.equal(sha(res.body), sha(pattern(n)));
    await closeSession(session);
  });

  it('acknowledges SETTINGS before the DATA a larger INITIAL_WINDOW_SIZE lets out (§6.5.3, §6.9.2)', T, async () => {
    const server = await startServer();
    const raw = await RawClient.open(server.port, { settings: [[SETTINGS_INITIAL_WINDOW_SIZE, 1000]] });
    raw.send(frame(WINDOW_UPDATE, 0, 0, u32(1 << 20)));
    raw.send(headersFrame(1, request('/big?n=5000')));
    await raw.responseHeaders(1);
    const first = await raw.until((f) => f.type === DATA);
    assert.equal(first.payload.length, 1000);
    raw.send(frame(SETTINGS, 0, 0, settingsPayload([[SETTINGS_INITIAL_WINDOW_SIZE, 3000]])));
    const next = await raw.until((f) => f.type === SETTINGS || f.type === DATA);
    assert.equal(next.type, SETTINGS, 'the ACK comes first');
    assert.equal(next.flags, FLAG_ACK);
    const more = await raw.until((f) => f.type === DATA);
    assert.equal(more.payload.length, 2000);
    raw.close();
  });

  it('sends DATA up to the MAX_FRAME_SIZE the client announced, byte-exact (§4.2, §6.5.2)', T, async () => {
    const server = await startServer();
    const session = await connect(server, { settings: { maxFrameSize: 65536, initialWindowSize: 1 << 20 } });
    const n = 1 << 20;
    const res = await get(session, `/big?n=${n}&chunk=${n}`);
    assert.equal(sha(res.body), sha(pattern(n)));
    await closeSession(session);

    const raw = await RawClient.open(server.port, { settings: [[SETTINGS_MAX_FRAME_SIZE, 65536], [SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20]] });
    raw.send(frame(WINDOW_UPDATE, 0, 0, u32(4 << 20)));
    raw.send(headersFrame(1, request(`/big?n=${n}&chunk=${n}`)));
    await raw.responseHeaders(1);
    const sizes: number[] = [];
    const chunks: Buffer[] = [];
    for (;;) {
      const f = await raw.until((x) => x.type === DATA && x.id === 1);
      sizes.push(f.payload.length);
      chunks.push(f.payload);
      if ((f.flags & FLAG_END_STREAM) !== 0) break;
    }
    assert.equal(sha(Buffer.concat(chunks)), sha(pattern(n)));
    assert.equal(Math.max(...sizes), 65536);
    raw.close();
  });

  it('goaway(): GOAWAY NO_ERROR with the last stream id, streams in flight finish, then the close (§6.8)', T, async () => {
    const server = await startServer();
    const session = await connect(server);
    const held = session.request({ ':path': '/hold' });
    held.end();
    const heldReply = collect(held);
    await server.streamsSeen(1);
    const goaway = new Promise<[number, number]>((resolve) => session.once('goaway', (code: number, last: number) => resolve([code, last])));
    const closed = new Promise<void>((resolve) => session.once('close', resolve));
    const conn = server.conns[0] as H2ServerConnection;
    conn.goaway();
    assert.deepEqual(await goaway, [NO_ERROR, 1]);
    assert.equal(server.log.closes, 0);
    const stream = server.log.held.get(1) as H2Stream;
    stream.respond({ ':status': 200 });
    stream.end(Buffer.from('finished'));
    assert.equal((await heldReply).body.toString(), 'finished');
    await closed;
    await until(() => server.log.closes === 1);
  });
});

describe('H2ServerConnection: connection errors (GOAWAY, then the close)', () => {
  const cases: { name: string; code: number; frames: () => Buffer[]; settings?: Partial<H2ConnectionSettings>; before?: (raw: RawClient) => Promise<void> }[] = [
    { name: 'DATA on stream 0 (§6.1)', code: PROTOCOL_ERROR, frames: () => [frame(DATA, 0, 0, Buffer.from('x'))] },
    { name: 'a frame longer than 16384 bytes (§4.2)', code: FRAME_SIZE_ERROR, frames: () => [frame(PING, 0, 0, Buffer.alloc(16385))] },
    { name: 'HEADERS on an even stream id (§5.1.1)', code: PROTOCOL_ERROR, frames: () => [headersFrame(2, request('/info'))] },
    { name: 'HEADERS on stream 0 (§6.2)', code: PROTOCOL_ERROR, frames: () => [headersFrame(0, request('/info'))] },
    { name: 'PUSH_PROMISE from a client (§8.4)', code: PROTOCOL_ERROR, frames: () => [frame(PUSH_PROMISE, FLAG_END_HEADERS, 1, Buffer.concat([u32(2), hpack(request('/'))]))] },
    {
      name: 'a frame other than CONTINUATION inside a header block (§6.10)',
      code: PROTOCOL_ERROR,
      frames: () => [frame(HEADERS, FLAG_END_STREAM, 1, hpack(request('/info'))), frame(PING, 0, 0, Buffer.alloc(8))],
    },
    {
      name: 'CONTINUATION on another stream inside a header block (§6.10)',
      code: PROTOCOL_ERROR,
      frames: () => [frame(HEADERS, FLAG_END_STREAM, 1, hpack(request('/info'))), frame(CONTINUATION, FLAG_END_HEADERS, 3, Buffer.alloc(0))],
    },
    { name: 'CONTINUATION without HEADERS (§6.10)', code: PROTOCOL_ERROR, frames: () => [frame(CONTINUATION, FLAG_END_HEADERS, 1, hpack(request('/info')))] },
    { name: 'WINDOW_UPDATE of 0 on stream 0 (§6.9)', code: PROTOCOL_ERROR, frames: () => [frame(WINDOW_UPDATE, 0, 0, u32(0))] },
    { name: 'WINDOW_UPDATE not 4 bytes (§6.9)', code: FRAME_SIZE_ERROR, frames: () => [frame(WINDOW_UPDATE, 0, 0, Buffer.alloc(5, 1))] },
    { name: 'the connection send window past 2^31-1 (§6.9.1)', code: FLOW_CONTROL_ERROR, frames: () => [frame(WINDOW_UPDATE, 0, 0, u32(0x7fffffff))] },
    { name: 'SETTINGS of a length not a multiple of 6 (§6.5)', code: FRAME_SIZE_ERROR, frames: () => [frame(SETTINGS, 0, 0, Buffer.alloc(5))] },
    { name: 'SETTINGS ACK with a payload (§6.5)', code: FRAME_SIZE_ERROR, frames: () => [frame(SETTINGS, FLAG_ACK, 0, Buffer.alloc(6))] },
    { name: 'SETTINGS on a stream (§6.5)', code: PROTOCOL_ERROR, frames: () => [frame(SETTINGS, 0, 1, Buffer.alloc(0))] },
    { name: 'SETTINGS_ENABLE_PUSH of 2 (§6.5.2)', code: PROTOCOL_ERROR, frames: () => [frame(SETTINGS, 0, 0, settingsPayload([[SETTINGS_ENABLE_PUSH, 2]]))] },
    { name: 'SETTINGS_MAX_FRAME_SIZE below 16384 (§6.5.2)', code: PROTOCOL_ERROR, frames: () => [frame(SETTINGS, 0, 0, settingsPayload([[SETTINGS_MAX_FRAME_SIZE, 16383]]))] },
    { name: 'SETTINGS_MAX_FRAME_SIZE past 2^24-1 (§6.5.2)', code: PROTOCOL_ERROR, frames: () => [frame(SETTINGS, 0, 0, settingsPayload([[SETTINGS_MAX_FRAME_SIZE, 1 << 24]]))] },
    { name: 'SETTINGS_INITIAL_WINDOW_SIZE past 2^31-1 (§6.5.2)', code: FLOW_CONTROL_ERROR, frames: () => [frame(SETTINGS, 0, 0, settingsPayload([[SETTINGS_INITIAL_WINDOW_SIZE, 0x80000000]]))] },
    { name: 'PING of 7 bytes (§6.7)', code: FRAME_SIZE_ERROR, frames: () => [frame(PING, 0, 0, Buffer.alloc(7))] },
    { name: 'PING on a stream (§6.7)', code: PROTOCOL_ERROR, frames: () => [frame(PING, 0, 1, Buffer.alloc(8))] },
    { name: 'GOAWAY on a stream (§6.8)', code: PROTOCOL_ERROR, frames: () => [frame(GOAWAY, 0, 1, Buffer.alloc(8))] },
    { name: 'RST_STREAM on an idle stream (§5.1)', code: PROTOCOL_ERROR, frames: () => [frame(RST_STREAM, 0, 1, u32(CANCEL_CODE))] },
    { name: 'RST_STREAM on stream 0 (§6.4)', code: PROTOCOL_ERROR, frames: () => [frame(RST_STREAM, 0, 0, u32(CANCEL_CODE))] },
    { name: 'RST_STREAM not 4 bytes (§6.4)', code: FRAME_SIZE_ERROR, frames: () => [headersFrame(1, request('/hold')), frame(RST_STREAM, 0, 1, Buffer.alloc(3))] },
    { name: 'PRIORITY on stream 0 (§6.3)', code: PROTOCOL_ERROR, frames: () => [frame(PRIORITY, 0, 0, Buffer.alloc(5))] },
    { name: 'DATA on an idle stream (§5.1)', code: PROTOCOL_ERROR, frames: () => [frame(DATA, 0, 5, Buffer.from('x'))] },
    { name: 'DATA padding past the frame (§6.1)', code: PROTOCOL_ERROR, frames: () => [headersFrame(1, request('/sink', [], 'POST'), false), frame(DATA, FLAG_PADDED, 1, Buffer.from([9, 1, 2]))] },
    { name: 'HPACK garbage (§4.3)', code: COMPRESSION_ERROR, frames: () => [frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, Buffer.from([0x80]))] },
    { name: 'an HPACK index past the table (§4.3)', code: COMPRESSION_ERROR, frames: () => [frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, Buffer.from([0xff, 0x80, 0x01]))] },
    { name: 'an HPACK table size update past SETTINGS_HEADER_TABLE_SIZE (§4.3)', code: COMPRESSION_ERROR, frames: () => [frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, Buffer.concat([Buffer.from([0x3f, 0xe2, 0x1f]), hpack(request('/info'))]))] },
    {
      name: 'DATA past the connection window (§6.9.1)',
      code: FLOW_CONTROL_ERROR,
      // A connection window of 100: given back once half is used, so a frame of 101 bytes cannot fit.
      settings: { connectionWindowSize: 100, initialWindowSize: 1 << 20 },
      frames: () => [headersFrame(1, request('/sink', [], 'POST'), false), ...Array.from({ length: 4 }, () => frame(DATA, 0, 1, Buffer.alloc(16383))), frame(DATA, 0, 1, Buffer.alloc(101))],
    },
  ];
  for (const c of cases) {
    it(c.name, T, async () => {
      const server = await startServer(c.settings);
      const raw = await RawClient.open(server.port);
      raw.send(...c.frames());
      await expectGoaway(raw, c.code);
      assert.equal(server.log.errors.length, 1);
      assert.equal(server.log.errors[0]?.code, c.code);
      assert.equal(server.log.errors[0]?.flood, false);
      await until(() => server.log.closes === 1);
    });
  }

  it('a first frame other than SETTINGS (§3.4)', T, async () => {
    const server = await startServer();
    const raw = await RawClient.open(server.port, { handshake: false });
    raw.send(PREFACE, frame(PING, 0, 0, Buffer.alloc(8)));
    const settings = await raw.next();
    assert.equal(settings?.type, SETTINGS);
    await expectGoaway(raw, PROTOCOL_ERROR, 0);
  });

  it('a wrong connection preface (§3.4)', T, async () => {
    const server = await startServer();
    const raw = await RawClient.open(server.port, { handshake: false });
    raw.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await expectGoaway(raw, PROTOCOL_ERROR, 0);
  });

  it('the preface and frames cut into single bytes are read alike (§4.1)', T, async () => {
    const server = await startServer();
    const raw = await RawClient.open(server.port, { handshake: false });
    const bytes = Buffer.concat([PREFACE, frame(SETTINGS, 0, 0), headersFrame(1, request('/info')), frame(PING, 0, 0, Buffer.from('12345678'))]);
    for (const byte of bytes) {
      raw.send(Buffer.from([byte]));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const res = await raw.response(1);
    assert.equal(res.status, '200');
    const ping = await raw.until((f) => f.type === PING);
    assert.equal(ping.payload.toString(), '12345678');
    raw.close();
  });

  it('the GOAWAY names the last stream the server saw (§6.8)', T, async () => {
    const server = await startServer();
    const raw = await RawClient.open(server.port);
    await expectServed(raw, 1);
    raw.send(headersFrame(7, request('/hold')));
    await server.streamsSeen(2);
    raw.send(frame(PING, 0, 0, Buffer.alloc(7)));
    await expectGoaway(raw, FRAME_SIZE_ERROR, 7);
    // The stream in flight was aborted.
    assert.equal(server.log.held.get(7)?.closed, true);
  });

  it('HEADERS on an even stream id below the last stream (§5.1.1)', T, async () => {
    const server = await startServer();
    const raw = await RawClient.open(server.port);
    await expectServed(raw, 3);
    raw.send(headersFrame(2, request('/info')));
    await expectGoaway(raw, PROTOCOL_ERROR, 3);
  });

  it('a GOAWAY for an error after goaway() does not raise the last stream id (§6.8)', T, async () => {
    const server = await startServer();
    const raw = await RawClient.open(server.port);
    raw.send(headersFrame(1, request('/hold')));
    await server.streamsSeen(1);
    (server.conns[0] as H2ServerConnection).goaway();
    const graceful = await raw.until((f) => f.type === GOAWAY);
    assert.deepEqual([graceful.payload.readUInt32BE(0), graceful.payload.readUInt32BE(4)], [1, NO_ERROR]);
    // A stream the client opened before it heard the GOAWAY is refused, its DATA dropped.
    raw.send(headersFrame(3, request('/sink', [], 'POST'), false), frame(DATA, 0, 3, Buffer.from('body')));
    await expectReset(raw, 3, REFUSED_STREAM);
    raw.send(frame(PING, 0, 0, Buffer.alloc(7)));
    await expectGoaway(raw, FRAME_SIZE_ERROR, 1);
  });

  it('a CONTINUATION flood: ENHANCE_YOUR_CALM, reported as a flood (§10.5)', T, async () => {
    const server = await startServer({ maxHeaderListSize: 16 * 1024 });
    const raw = await RawClient.open(server.port);
    raw.send(frame(HEADERS, FLAG_END_STREAM, 1, hpack(request('/info'))), ...Array.from({ length: 64 }, () => frame(CONTINUATION, 0, 1)));
    await expectGoaway(raw, ENHANCE_YOUR_CALM);
    assert.deepEqual(
      server.log.errors.map((e) => [e.flood, e.code]),
      [[true, ENHANCE_YOUR_CALM]],
    );
    assert.equal(server.log.streams.length, 0);
  });

  it('a CONTINUATION flood of bytes: ENHANCE_YOUR_CALM (§10.5)', T, async () => {
    const server = await startServer({ maxHeaderListSize: 16 * 1024 });
    const raw = await RawClient.open(server.port);
    raw.send(frame(HEADERS, FLAG_END_STREAM, 1, hpack(request('/info'))), ...Array.from({ length: 6 }, () => frame(CONTINUATION, 0, 1, Buffer.alloc(16384, 0x82))));
    await expectGoaway(raw, ENHANCE_YOUR_CALM);
    assert.equal(server.log.errors[0]?.flood, true);
  });

  it('a PING flood from a client that does not read: ENHANCE_YOUR_CALM, reported as a flood (§10.5)', T, async () => {
    const server = await startServer();
    const raw = await RawClient.open(server.port);
    raw.socket.pause();
    const batch = Buffer.concat(Array.from({ length: 200 }, (_, i) => frame(PING, 0, 0, Buffer.concat([u32(i), u32(i)]))));
    while (server.log.errors.length === 0 && !raw.socket.destroyed) {
      await new Promise<void>((resolve) => raw.socket.write(batch, () => resolve()));
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.deepEqual(
      server.log.errors.map((e) => [e.flood, e.code]),
      [[true, ENHANCE_YOUR_CALM]],
    );
    raw.socket.resume();
    // Behind the acknowledgements already queued: the GOAWAY.
    const goaway = await raw.until((f) => f.type === GOAWAY);
    assert.equal(goaway.payload.readUInt32BE(4), ENHANCE_YOUR_CALM);
    assert.deepEqual(await raw.rest(), []);
  });
});

const CANCEL_CODE = 0x8;

describe('H2ServerConnection: stream errors (RST_STREAM, the connection goes on)', () => {
  const malformed: [string, string[]][] = [
    ['an uppercase field name (§8.2.1)', request('/info', ['X-Upper', '1'])],
    ['a connection field (§8.2.2)', request('/info', ['connection', 'keep-alive'])],
    ['a transfer-encoding field (§8.2.2)', request('/info', ['transfer-encoding', 'chunked'])],
    ['te other than trailers (§8.2.2)', request('/info', ['te', 'gzip'])],
    ['no :path (§8.3.1)', [':method', 'GET', ':scheme', 'http', ':authority', 'test.local']],
    ['no :method (§8.3.1)', [':scheme', 'http', ':path', '/', ':authority', 'test.local']],
    ['no :scheme (§8.3.1)', [':method', 'GET', ':path', '/', ':authority', 'test.local']],
    ['an empty :path (§8.3.1)', request('')],
    ['a :path without a leading / (§8.3.1)', request('info')],
    ['a :path with a space (§8.3.1)', request('/in fo')],
    ['a value with a trailing space (§8.2.1)', request('/info', ['x-a', 'b '])],
    ['a value with a leading tab (§8.2.1)', request('/info', ['x-a', '\tb'])],
    ['a value with NUL (§8.2.1)', request('/info', ['x-a', 'b\0c'])],
    ['a value with CR (§8.2.1)', request('/info', ['x-a', 'b\rc'])],
    ['a value with LF (§8.2.1)', request('/info', ['x-a', 'b\nc'])],
    ['an empty field name (§8.2.1)', request('/info', ['', 'x'])],
    ['a pseudo-header after a regular field (§8.3)', [':method', 'GET', ':scheme', 'http', 'x-a', '1', ':path', '/info']],
    ['a duplicate :method (§8.3.1)', [':method', 'GET', ...request('/info')]],
    ['a duplicate :path (§8.3.1)', request('/info', [':path', '/other'])],
    ['an unknown pseudo-header (§8.3)', [':method', 'GET', ':scheme', 'http', ':path', '/info', ':foo', 'bar']],
    ['a response pseudo-header in a request (§8.3)', [':status', '200', ...request('/info')]],
    [':protocol without CONNECT (RFC 8441 §4)', request('/info', [':protocol', 'websocket'])],
    ['CONNECT with :path but no :protocol (§8.5)', [':method', 'CONNECT', ':authority', 'x:1', ':path', '/']],
    ['extended CONNECT without :path (RFC 8441 §4)', [':method', 'CONNECT', ':protocol', 'websocket', ':scheme', 'http', ':authority', 'x']],
    ['a bad :authority (§8.3.1)', [':method', 'GET', ':scheme', 'http', ':path', '/info', ':authority', 'a b']],
    ['a non-numeric content-length (§8.1.1)', request('/info', ['content-length', '1x'])],
    ['two content-length fields (§8.1.1)', request('/info', ['content-length', '0', 'content-length', '0'])],
  ];
  for (const [name, fields] of malformed) {
    it(`a malformed request: ${name}`, T, async () => {
      const server = await startServer();
      const raw = await RawClient.open(server.port);
      raw.send(headersFrame(1, fields));
      await expectReset(raw, 1, PROTOCOL_ERROR);
      await expectServed(raw, 3);
      assert.deepEqual(
        server.log.streams.map((s) => s.id),
        [3],
      );
      raw.close();
    });
  }

  it('CONNECT and extended CONNECT are accepted (§8.5, RFC 8441 §4)', T, async () => {
    const server = await startServer({}, { onStream: (stream) => stream.respond({ ':status': 200 }, { endStream: true }) });
    const raw = await RawClient.open(server.port);
    raw.send(headersFrame(1, [':method', 'CONNECT', ':authority', 'example.com:443']));
    assert.equal((await raw.responseHeaders(1)).get(':status'), '200');
    raw.send(headersFrame(3, [':method', 'CONNECT', ':protocol', 'websocket', ':scheme', 'https', ':path', '/chat', ':authority', 'example.com']));
    assert.equal((await raw.responseHeaders(3)).get(':status'), '200');
    assert.deepEqual(
      server.log.streams.map((s) => [s.head.method, s.head.protocol]),
      [
        ['CONNECT', undefined],
        ['CONNECT', 'websocket'],
      ],
    );
    raw.close();
  });

  const streamCases: { name: string; code: number; frames: (id: number) => Buffer[]; settings?: Partial<H2ConnectionSettings> }[] = [
    {
      name: 'a body shorter than its content-length (§8.1.1)',
      code: PROTOCOL_ERROR,
      frames: (id) => [headersFrame(id, request('/sink', ['content-length', '10'], 'POST'), false), frame(DATA, FLAG_END_STREAM, id, Buffer.alloc(5))],
    },
    {
      name: 'a body longer than its content-length (§8.1.1)',
      code: PROTOCOL_ERROR,
      frames: (id) => [headersFrame(id, request('/sink', ['content-length', '3'], 'POST'), false), frame(DATA, 0, id, Buffer.alloc(5))],
    },
    {
      name: 'END_STREAM on HEADERS with a positive content-length (§8.1.1)',
      code: PROTOCOL_ERROR,
      frames: (id) => [headersFrame(id, request('/sink', ['content-length', '3'], 'POST'), true)],
    },
    {
      name: 'trailers before the content-length was received (§8.1.1)',
      code: PROTOCOL_ERROR,
      frames: (id) => [headersFrame(id, request('/sink', ['content-length', '3'], 'POST'), false), frame(DATA, 0, id, Buffer.alloc(2)), headersFrame(id, ['x-t', '1'], true)],
    },
    {
      name: 'trailers without END_STREAM (§8.1)',
      code: PROTOCOL_ERROR,
      frames: (id) => [headersFrame(id, request('/sink', [], 'POST'), false), headersFrame(id, ['x-t', '1'], false)],
    },
    {
      name: 'trailers with a pseudo-header (§8.1)',
      code: PROTOCOL_ERROR,
      frames: (id) => [headersFrame(id, request('/sink', [], 'POST'), false), headersFrame(id, [':path', '/x'], true)],
    },
    {
      name: 'DATA after END_STREAM (§5.1)',
      code: STREAM_CLOSED,
      frames: (id) => [headersFrame(id, request('/hold'), true), frame(DATA, 0, id, Buffer.from('late'))],
    },
    {
      name: 'HEADERS after END_STREAM (§5.1)',
      code: STREAM_CLOSED,
      frames: (id) => [headersFrame(id, request('/hold'), true), headersFrame(id, ['x-t', '1'], true)],
    },
    {
      name: 'the stream send window past 2^31-1 by WINDOW_UPDATE (§6.9.1)',
      code: FLOW_CONTROL_ERROR,
      frames: (id) => [headersFrame(id, request('/hold')), frame(WINDOW_UPDATE, 0, id, u32(0x7fffffff))],
    },
    {
      name: 'WINDOW_UPDATE of 0 on a stream (§6.9)',
      code: PROTOCOL_ERROR,
      frames: (id) => [headersFrame(id, request('/hold')), frame(WINDOW_UPDATE, 0, id, u32(0))],
    },
    {
      name: 'DATA past the stream window (§6.9.1)',
      code: FLOW_CONTROL_ERROR,
      settings: { initialWindowSize: 65535 },
      frames: (id) => [headersFrame(id, request('/hold', [], 'POST'), false), ...Array.from({ length: 4 }, () => frame(DATA, 0, id, Buffer.alloc(16384)))],
    },
    {
      name: 'PRIORITY not 5 bytes (§6.3)',
      code: FRAME_SIZE_ERROR,
      frames: (id) => [frame(PRIORITY, 0, id, Buffer.alloc(4))],
    },
  ];
  for (const c of streamCases) {
    it(c.name, T, async () => {
      const server = await startServer(c.settings);
      const raw = await RawClient.open(server.port);
      raw.send(...c.frames(1));
      await expectReset(raw, 1, c.code);
      await expectServed(raw, 3);
      assert.deepEqual(server.log.errors, []);
      raw.close();
    });
  }

  it('streams past SETTINGS_MAX_CONCURRENT_STREAMS are refused (§5.1.2)', T, async () => {
    const server = await startServer({ maxConcurrentStreams: 2 });
    const raw = await RawClient.open(server.port);
    raw.send(headersFrame(1, request('/hold')), headersFrame(3, request('/hold')), headersFrame(5, request('/hold')));
    await expectReset(raw, 5, REFUSED_STREAM);
    assert.deepEqual([...server.log.held.keys()], [1, 3]);
    // One finishes: a new stream fits.
    const first = server.log.held.get(1) as H2Stream;
    first.respond({ ':status': 204 }, { endStream: true });
    assert.equal((await raw.responseHeaders(1)).get(':status'), '204');
    await expectServed(raw, 7);
    raw.close();
  });

  it('a stream the client resets is aborted for its owner (§6.4)', T, async () => {
    const server = await startServer();
    const raw = await RawClient.open(server.port);
    raw.send(headersFrame(1, request('/hold')));
    await server.streamsSeen(1);
    const stream = server.log.held.get(1) as H2Stream;
    const heard: string[] = [];
    stream.owner = owner({ onClientAborted: () => heard.push('aborted'), onClientClose: () => heard.push('close') });
    raw.send(frame(RST_STREAM, 0, 1, u32(CANCEL_CODE)));
    await until(() => stream.closed);
    assert.deepEqual(heard, ['aborted', 'close']);
    assert.equal(stream.rstCode, CANCEL_CODE);
    // Frames in flight on the closed stream are dropped; the connection goes on.
    raw.send(frame(WINDOW_UPDATE, 0, 1, u32(100)), frame(DATA, 0, 1, Buffer.from('x')));
    await expectServed(raw, 3);
    raw.close();
  });
});

describe('H2ServerConnection: header list size, PING, SETTINGS', () => {
  it('a header list past maxHeaderListSize goes to onOversized, and the HPACK table stays in step (§6.5.2, §4.3)', T, async () => {
    const server = await startServer({ maxHeaderListSize: 4096 });
    const raw = await RawClient.open(server.port);
    // The oversized block: a big field first (past the limit), then one inserted into the dynamic table (0x40, §6.2.1).
    const oversized = Buffer.concat([hpack(request('/info', ['x-pad', 'a'.repeat(5000)])), Buffer.from([0x40, 7]), Buffer.from('x-small'), Buffer.from([5]), Buffer.from('hello')]);
    raw.send(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, oversized));
    assert.equal((await raw.responseHeaders(1)).get(':status'), '431');
    assert.deepEqual(server.log.oversized, [1]);
    assert.equal(server.log.streams.length, 0);
    // The next request names the entry by its dynamic index (62, §2.3.3).
    raw.send(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, Buffer.concat([hpack(request('/info')), Buffer.from([0x80 | 62])])));
    const res = await raw.response(3);
    assert.equal(res.status, '200');
    const fields = (JSON.parse(res.body.toString()) as { fields: string[] }).fields;
    assert.equal(fields[fields.indexOf('x-small') + 1], 'hello');
    assert.deepEqual(server.log.errors, []);
    raw.close();
  });

  it('more fields than maxHeaders go to onOversized (§10.5.1)', T, async () => {
    const server = await startServer({ maxHeaders: 4 });
    const raw = await RawClient.open(server.port);
    const many = Array.from({ length: 12 }, (_, i) => [`x-f${i}`, 'v']).flat();
    raw.send(headersFrame(1, request('/info', many)));
    assert.equal((await raw.responseHeaders(1)).get(':status'), '431');
    assert.deepEqual(server.log.oversized, [1]);
    await expectServed(raw, 3);
    raw.close();
  });

  it('PING: a PING ACK with the same 8 bytes (§6.7)', T, async () => {
    const server = await startServer();
    const raw = await RawClient.open(server.port);
    raw.send(frame(PING, 0, 0, Buffer.from('pingpong')));
    const ack = await raw.until((f) => f.type === PING);
    assert.equal(ack.flags, FLAG_ACK);
    assert.equal(ack.id, 0);
    assert.equal(ack.payload.toString(), 'pingpong');
    // A PING ACK from the client is not answered.
    raw.send(frame(PING, FLAG_ACK, 0, Buffer.from('ackackac')), frame(PING, 0, 0, Buffer.from('second!!')));
    const next = await raw.until((f) => f.type === PING);
    assert.equal(next.payload.toString(), 'second!!');
    raw.close();
  });

  it('SETTINGS: a SETTINGS ACK; the server announces its own first (§6.5.3)', T, async () => {
    const server = await startServer({ maxConcurrentStreams: 7, initialWindowSize: 12345, maxHeaderListSize: 5000, connectionWindowSize: 1 << 20 });
    const raw = await RawClient.open(server.port, { handshake: false });
    raw.send(PREFACE, frame(SETTINGS, 0, 0, settingsPayload([[SETTINGS_INITIAL_WINDOW_SIZE, 1000]])));
    const first = await raw.next();
    assert.ok(first !== null);
    assert.equal(first.type, SETTINGS);
    assert.equal(first.flags, 0);
    const announced = new Map<number, number>();
    for (let at = 0; at < first.payload.length; at += 6) announced.set(first.payload.readUInt16BE(at), first.payload.readUInt32BE(at + 2));
    assert.deepEqual(
      announced,
      new Map([
        [3, 7],
        [4, 12345],
        [6, 5000],
        [8, 1],
      ]),
    );
    const wu = await raw.next();
    assert.equal(wu?.type, WINDOW_UPDATE);
    assert.equal(wu.payload.readUInt32BE(0), (1 << 20) - 65535);
    const ack = await raw.next();
    assert.equal(ack?.type, SETTINGS);
    assert.equal(ack.flags, FLAG_ACK);
    assert.equal(ack.payload.length, 0);
    raw.send(frame(SETTINGS, 0, 0));
    const again = await raw.next();
    assert.equal(again?.type, SETTINGS);
    assert.equal(again.flags, FLAG_ACK);
    raw.close();
  });

  it('unknown frame types and settings are ignored (§5.5, §6.5.2)', T, async () => {
    const server = await startServer();
    const raw = await RawClient.open(server.port);
    raw.send(frame(0x42, 0xff, 0, Buffer.from('whatever')), frame(0x42, 0, 9, Buffer.alloc(3)), frame(SETTINGS, 0, 0, settingsPayload([[0x99, 12345]])));
    await raw.until((f) => f.type === SETTINGS && f.flags === FLAG_ACK);
    await expectServed(raw, 1);
    raw.close();
  });
});

describe('H2ServerConnection: a client that never closes its side', () => {
  it('after GOAWAY and our FIN, the socket is destroyed even if the client keeps its half open', T, async () => {
    const server = await startServer();
    const socket = net.connect({ port: server.port, host: '127.0.0.1', allowHalfOpen: true });
    socket.on('error', () => {});
    socket.resume();
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0)]));
    await until(() => server.conns.length === 1);
    const conn = server.conns[0] as H2ServerConnection;
    await until(() => conn.lastStreamId === 0 && server.log.closes === 0);
    conn.goaway();
    // The client got our FIN ('end') and does not answer with its own.
    await new Promise<void>((resolve) => socket.once('end', resolve));
    await until(() => server.log.closes === 1);
    socket.destroy();
  });
});
