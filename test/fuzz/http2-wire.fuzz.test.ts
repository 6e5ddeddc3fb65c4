/**
 * The proxy's own HTTP/2 server framing layer (src/protocols/http/h2/wire/
 * connection.ts) fed random but structured client byte streams: the
 * preface and a SETTINGS frame, then a mix of well-formed and mutated
 * frames of every type (random lengths, flags and stream ids; header
 * blocks from HpackEncoder, hand-made ones that use the dynamic table, and
 * random bytes), cut into chunks at random points and read as the socket
 * would hand them over (views into a shared read buffer that is scribbled
 * over after each read, or chunks of their own). Properties:
 * - read() never throws;
 * - every byte written parses as whole HTTP/2 frames, starting with our
 *   SETTINGS; header blocks decode; DATA stays within the client's
 *   connection window and frame size;
 * - after a GOAWAY with an error code, nothing but the close follows;
 * - onStream only ever sees requests checkRequest accepts;
 * - the same bytes cut at other points (or not at all) give the same
 *   frames and the same handler calls.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { H2ServerConnection } from '../../src/protocols/http/h2/wire/connection.ts';
import type { H2ConnectionHandler } from '../../src/protocols/http/h2/wire/connection.ts';
import {
  CONTINUATION,
  DATA,
  FLAG_ACK,
  FLAG_END_HEADERS,
  FLAG_END_STREAM,
  FLAG_PADDED,
  FLAG_PRIORITY,
  GOAWAY,
  HEADERS,
  NO_ERROR,
  PING,
  PRIORITY,
  PUSH_PROMISE,
  RST_STREAM,
  SETTINGS,
  SETTINGS_MAX_FRAME_SIZE,
  WINDOW_UPDATE,
} from '../../src/protocols/http/h2/wire/frames.ts';
import { HpackDecoder, HpackEncoder, maxEncodedLength } from '../../src/protocols/http/h2/wire/hpack.ts';
import { checkRequest } from '../../src/protocols/http/h2/wire/request-fields.ts';
import type { H2Stream } from '../../src/protocols/http/h2/wire/stream.ts';
import { chunked, cuts, fuzzAsync } from '../helpers/fuzz.ts';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

// ---- an in-memory socket ---------------------------------------------------------

/** What connection.ts needs of a socket: on/write/cork/uncork/end/destroy/isPaused/resume; writes are collected. */
class MemorySocket extends Duplex {
  readonly written: Buffer[] = [];
  ended = false;
  writesAfterEnd = 0;

  constructor() {
    super({ highWaterMark: 1 << 30 });
    this.on('error', () => {
      this.writesAfterEnd++;
    });
  }

  override _read(): void {}

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.written.push(Buffer.from(chunk));
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.ended = true;
    callback();
  }
}

// ---- frames ------------------------------------------------------------------------

function frame(type: number, flags: number, id: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(id >>> 0, 5);
  return Buffer.concat([head, payload]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function hpack(fields: string[]): Buffer {
  const buf = Buffer.alloc(maxEncodedLength(fields));
  return buf.subarray(0, new HpackEncoder().encode(fields, buf, 0));
}

interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

/** Whole frames from `bytes`; the remainder (not a whole frame) too. */
function parseFrames(bytes: Buffer): { frames: Frame[]; rest: number } {
  const frames: Frame[] = [];
  let at = 0;
  while (bytes.length - at >= 9) {
    const length = bytes.readUIntBE(at, 3);
    if (bytes.length - at - 9 < length) break;
    frames.push({ type: bytes[at + 3] as number, flags: bytes[at + 4] as number, id: bytes.readUInt32BE(at + 5) & 0x7fffffff, payload: bytes.subarray(at + 9, at + 9 + length) });
    at += 9 + length;
  }
  return { frames, rest: bytes.length - at };
}

// ---- the client's bytes ------------------------------------------------------------

/** `arb` one time in `n`, else null. */
function sometimes<T>(arb: fc.Arbitrary<T>, n: number): fc.Arbitrary<T | null> {
  return fc.oneof({ arbitrary: fc.constant(null), weight: n - 1 }, { arbitrary: arb, weight: 1 });
}

const latin1 = (maxLength: number): fc.Arbitrary<string> => fc.array(fc.integer({ min: 0, max: 255 }), { maxLength }).map((codes) => String.fromCharCode(...codes));
const bytes = (maxLength: number): fc.Arbitrary<Buffer> => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));

/**
 * A frame is built against what the client has done so far (stream ids
 * mostly as a client uses them: a new stream takes the next odd id, other
 * frames name a stream already opened), so that sequences get past their
 * first few frames; a random id now and then.
 */
interface Ctx {
  next: number;
  opened: number[];
}
type Gen = (ctx: Ctx) => Buffer;

const streamId = fc.oneof(
  { arbitrary: fc.constantFrom(1, 3, 5, 7, 9, 11), weight: 6 },
  { arbitrary: fc.constantFrom(0, 2, 4), weight: 2 },
  { arbitrary: fc.integer({ min: 0, max: 0x7fffffff }), weight: 1 },
);

/** A stream already opened (else the next one), or any id. */
const target = fc.oneof({ arbitrary: fc.nat().map((n) => (ctx: Ctx): number => (ctx.opened.length === 0 ? ctx.next : (ctx.opened[n % ctx.opened.length] as number))), weight: 40 }, { arbitrary: streamId.map((id) => (): number => id), weight: 1 });

/** For a new request: the next odd id; sometimes an opened one (trailers) or any. */
const newStream = fc.oneof(
  {
    arbitrary: fc.constant((ctx: Ctx): number => {
      const id = ctx.next;
      ctx.next += 2;
      ctx.opened.push(id);
      return id;
    }),
    weight: 10,
  },
  { arbitrary: target, weight: 3 },
);

const field = fc.oneof(
  { arbitrary: fc.constantFrom<[string, string]>(['x-a', '1'], ['content-type', 'text/plain'], ['accept', '*/*'], ['te', 'trailers'], ['content-length', '0'], ['content-length', '5'], ['host', 'h'], ['cookie', 'a=b']), weight: 16 },
  {
    arbitrary: fc.constantFrom<[string, string]>(['X-Up', '1'], ['connection', 'close'], ['te', 'gzip'], [':path', '/dup'], [':method', 'GET'], ['x-sp', 'a '], ['x-nul', 'a\0b'], ['x-lf', 'a\nb'], [':foo', '1'], ['', 'x'], [':protocol', 'websocket'], ['content-length', 'x']),
    weight: 3,
  },
  { arbitrary: fc.tuple(latin1(8), latin1(12)), weight: 1 },
);

const requestFields = fc
  .record({
    method: fc.oneof({ arbitrary: fc.constantFrom('GET', 'POST', 'HEAD'), weight: 8 }, fc.constantFrom('CONNECT', 'get', '', 'OPTIONS')),
    path: fc.oneof({ arbitrary: fc.constantFrom('/a', '/b', '/c', '/c', '/d', '/e', '/f', '/x'), weight: 8 }, fc.constantFrom('a', '*', '/a b', '')),
    drop: sometimes(fc.constantFrom(':method', ':scheme', ':path', ':authority'), 12),
    extra: fc.array(field, { maxLength: 4 }),
    big: sometimes(fc.integer({ min: 1000, max: 5000 }), 10),
  })
  .map(({ method, path, drop, extra, big }) => {
    const fields: string[] = [];
    for (const [name, value] of [
      [':method', method],
      [':scheme', 'http'],
      [':path', path],
      [':authority', 'h.test'],
    ] as const) {
      if (name !== drop) fields.push(name, value);
    }
    for (const [name, value] of extra) fields.push(name, value);
    if (big !== null) fields.push('x-big', 'b'.repeat(big));
    return fields;
  });

/** A header block: HpackEncoder's, one that inserts into the dynamic table and then names the entry, or random bytes. */
const headerBlock = fc.oneof(
  { arbitrary: requestFields.map(hpack), weight: 20 },
  // §6.2.1 literal with incremental indexing, then §6.1 indexed fields naming it (62) or past the table.
  {
    arbitrary: fc.tuple(requestFields, fc.constantFrom(0xbe, 0xbe, 0xbe, 0xbe, 0xbf)).map(([fields, index]) => Buffer.concat([hpack(fields), Buffer.from([0x40, 5]), Buffer.from('x-dyn'), Buffer.from([2]), Buffer.from('ok'), Buffer.from([index])])),
    weight: 2,
  },
  { arbitrary: bytes(24), weight: 1 },
  // A dynamic table size update first.
  { arbitrary: fc.tuple(fc.constantFrom(0x20, 0x3f), requestFields).map(([update, fields]) => Buffer.concat([Buffer.from([update, ...(update === 0x3f ? [0xe1, 0x1f] : [])]), hpack(fields)])), weight: 1 },
);

/** HEADERS (maybe padded, with priority fields, split over CONTINUATION frames). */
const headersFrames = fc
  .record({
    id: newStream,
    block: headerBlock,
    endStream: fc.boolean(),
    pad: sometimes(fc.nat({ max: 20 }), 5),
    priority: fc.boolean(),
    splits: fc.array(fc.nat(), { maxLength: 3 }),
    continuationId: sometimes(streamId, 20),
  })
  .map(
    ({ id, block, endStream, pad, priority, splits, continuationId }): Gen =>
      (ctx) => {
        const sid = id(ctx);
        const pieces = chunked(block, splits).filter((p, i) => i === 0 || p.length > 0);
        let first = pieces[0] as Buffer;
        let flags = (endStream ? FLAG_END_STREAM : 0) | (pieces.length === 1 ? FLAG_END_HEADERS : 0);
        if (priority) {
          flags |= FLAG_PRIORITY;
          first = Buffer.concat([u32(1), Buffer.from([16]), first]);
        }
        if (pad !== null) {
          flags |= FLAG_PADDED;
          first = Buffer.concat([Buffer.from([pad]), first, Buffer.alloc(pad)]);
        }
        const out = [frame(HEADERS, flags, sid, first)];
        for (let i = 1; i < pieces.length; i++) out.push(frame(CONTINUATION, i === pieces.length - 1 ? FLAG_END_HEADERS : 0, continuationId ?? sid, pieces[i] as Buffer));
        return Buffer.concat(out);
      },
  );

const dataFrames = (large: boolean): fc.Arbitrary<Gen> =>
  fc
  .record({
    id: target,
    length: large ? fc.oneof({ arbitrary: fc.nat({ max: 300 }), weight: 8 }, { arbitrary: fc.constantFrom(5, 16384, 16383), weight: 2 }) : fc.nat({ max: 300 }),
    endStream: fc.boolean(),
    pad: sometimes(fc.oneof({ arbitrary: fc.nat({ max: 30 }), weight: 20 }, fc.nat({ max: 255 })), 6),
    fill: fc.nat({ max: 255 }),
  })
  .map(
    ({ id, length, endStream, pad, fill }): Gen =>
      (ctx) => {
        let payload = Buffer.alloc(length, fill);
        let flags = endStream ? FLAG_END_STREAM : 0;
        if (pad !== null) {
          flags |= FLAG_PADDED;
          payload = Buffer.concat([Buffer.from([pad]), payload.subarray(0, Math.max(0, length - 1))]);
        }
        return frame(DATA, flags, id(ctx), payload);
      },
  );
const dataFrame = dataFrames(true);

const settingId = fc.constantFrom(1, 2, 3, 4, 5, 6, 8, 0x99);
const settingValue = fc.oneof(fc.constantFrom(0, 1, 2, 16383, 16384, 65535, 65536, 0x7fffffff, 0x80000000, 0xffffff, 0x1000000), fc.nat());
function settingsPayload(entries: readonly (readonly [number, number])[]): Buffer {
  return Buffer.concat(entries.map(([id, v]) => Buffer.concat([Buffer.from([id >> 8, id & 0xff]), u32(v)])));
}
/** A SETTINGS frame the server accepts (the preface's). */
const validSettings = fc
  .array(
    fc.oneof(
      fc.tuple(fc.constantFrom(1, 3, 6, 0x99), fc.nat()),
      fc.tuple(fc.constantFrom(2, 8), fc.nat({ max: 1 })),
      fc.tuple(fc.constant(4), fc.oneof(fc.constantFrom(0, 1, 100, 16384, 65535, 0x7fffffff), fc.nat({ max: 0x7fffffff }))),
      fc.tuple(fc.constant(5), fc.oneof(fc.constantFrom(16384, 65536, 0xffffff), fc.integer({ min: 16384, max: 0xffffff }))),
    ),
    { maxLength: 4 },
  )
  .map((entries) => frame(SETTINGS, 0, 0, settingsPayload(entries)));
const settingsFrame = fc.oneof(
  { arbitrary: validSettings, weight: 6 },
  { arbitrary: fc.array(fc.tuple(settingId, settingValue), { maxLength: 4 }).map((entries) => frame(SETTINGS, 0, 0, settingsPayload(entries))), weight: 1 },
  { arbitrary: fc.constant(frame(SETTINGS, FLAG_ACK, 0, Buffer.alloc(0))), weight: 2 },
  { arbitrary: fc.tuple(fc.nat({ max: 13 }), fc.nat({ max: 1 }), streamId).map(([n, ack, id]) => frame(SETTINGS, ack, id, Buffer.alloc(n))), weight: 1 },
);

const increment = fc.oneof(fc.constantFrom(0, 1, 100, 65535, 1 << 20, 0x7fffffff, 0x80000001), fc.nat());
const controlFrame: fc.Arbitrary<Gen> = fc.oneof(
  { arbitrary: fc.tuple(fc.oneof(target, fc.constant(() => 0)), increment).map(([id, inc]): Gen => (ctx) => frame(WINDOW_UPDATE, 0, id(ctx), u32(inc))), weight: 4 },
  { arbitrary: fc.tuple(fc.nat({ max: 1 }), fc.constant(8), bytes(8)).map(([ack, n, p]): Gen => () => frame(PING, ack, 0, Buffer.concat([p, Buffer.alloc(8)]).subarray(0, n))), weight: 3 },
  { arbitrary: fc.tuple(target, fc.constantFrom(0, 1, 5, 8, 0xffff)).map(([id, code]): Gen => (ctx) => frame(RST_STREAM, 0, id(ctx), u32(code))), weight: 2 },
  { arbitrary: fc.tuple(target, fc.constantFrom(5, 5, 4)).map(([id, n]): Gen => (ctx) => frame(PRIORITY, 0, id(ctx), Buffer.alloc(n))), weight: 2 },
  { arbitrary: fc.constantFrom(8, 8, 12, 4).map((n): Gen => () => frame(GOAWAY, 0, 0, Buffer.alloc(n))), weight: 1 },
);

/** Frames a client never sends well: PUSH_PROMISE, a stray CONTINUATION, PING of the wrong size or on a stream. */
const strayFrame: fc.Arbitrary<Gen> = fc.oneof(
  fc.tuple(target, bytes(12)).map(([id, p]): Gen => (ctx) => frame(PUSH_PROMISE, FLAG_END_HEADERS, id(ctx), p)),
  fc.tuple(target, fc.nat({ max: 0xff }), bytes(12)).map(([id, flags, p]): Gen => (ctx) => frame(CONTINUATION, flags, id(ctx), p)),
  fc.tuple(fc.oneof(fc.constant(0), streamId), fc.nat({ max: 1 }), fc.constantFrom(7, 9, 0)).map(([id, ack, n]): Gen => () => frame(PING, ack, id, Buffer.alloc(n))),
);

/** Any frame header with random bytes: any type (unknown ones too), flags and length up to a little past the frame size limit. */
const randomFrame: fc.Arbitrary<Gen> = fc.oneof(
  { arbitrary: fc.tuple(fc.nat({ max: 12 }), fc.nat({ max: 0xff }), target, bytes(40)).map(([type, flags, id, p]): Gen => (ctx) => frame(type, flags, id(ctx), p)), weight: 4 },
  {
    arbitrary: fc.tuple(fc.nat({ max: 12 }), fc.constantFrom(16384, 16385, 0xffffff)).map(([type, length]): Gen => () => Buffer.concat([Buffer.from([length >> 16, (length >> 8) & 0xff, length & 0xff, type, 0, 0, 0, 0, 1]), Buffer.alloc(Math.min(length, 16384))])),
    weight: 1,
  },
);

const wellFormed: fc.Arbitrary<Gen> = fc.oneof(
  { arbitrary: headersFrames, weight: 6 },
  { arbitrary: dataFrame, weight: 5 },
  { arbitrary: settingsFrame.map((f): Gen => () => f), weight: 1 },
  { arbitrary: controlFrame, weight: 3 },
);

/** A well-formed frame with a byte flipped, or cut short. */
const mutated = fc.tuple(wellFormed, fc.nat(), fc.nat({ max: 0xff }), fc.boolean()).map(
  ([gen, at, value, cut]): Gen =>
    (ctx) => {
      const out = Buffer.from(gen(ctx));
      if (cut) return out.subarray(0, at % (out.length + 1));
      out[at % out.length] = value;
      return out;
    },
);

/** The preface, an acceptable SETTINGS frame, then the frames. */
function build(gens: readonly Gen[], settings: Buffer): Buffer {
  const ctx: Ctx = { next: 1, opened: [] };
  return Buffer.concat([PREFACE, settings, ...gens.map((gen) => gen(ctx))]);
}

/** A request or three first (else most frames name idle streams), then anything, mostly well-formed. */
const clientBytes = fc
  .tuple(
    fc.array(headersFrames, { minLength: 1, maxLength: 3 }),
    fc.array(fc.oneof({ arbitrary: wellFormed, weight: 80 }, { arbitrary: mutated, weight: 2 }, { arbitrary: randomFrame, weight: 1 }, { arbitrary: strayFrame, weight: 1 }), { maxLength: 24 }),
    validSettings,
  )
  .map(([first, gens, settings]) => build([...first, ...gens], settings));

// ---- running the server -------------------------------------------------------------

interface Run {
  frames: Frame[];
  rest: number;
  events: string[];
  ended: boolean;
  writesAfterEnd: number;
  threw: unknown;
}

function handler(events: string[]): H2ConnectionHandler {
  return {
    onStream(stream: H2Stream, head, fields) {
      // Only requests the checks accept reach a handler, as read.
      assert.deepEqual(checkRequest(fields, true), head, 'onStream got a request checkRequest does not accept');
      events.push(`stream ${stream.id} ${head.method} ${head.path}`);
      stream.on('end', () => events.push(`end ${stream.id}`));
      stream.on('close', () => events.push(`close ${stream.id} ${String(stream.rstCode)}`));
      switch (head.path) {
        case '/a':
          stream.resume();
          stream.respond({ ':status': 200, 'content-type': 'text/plain' });
          stream.end(Buffer.from('hello'));
          return;
        case '/b': {
          // Trailers after the body.
          stream.resume();
          stream.owner = {
            onClientAborted() {},
            onClientClose() {},
            onClientDrain() {},
            onWantTrailers() {
              stream.sendTrailers({ 'grpc-status': '0' });
            },
          };
          stream.respond({ ':status': 200 }, { waitForTrailers: true });
          stream.end(Buffer.alloc(20_000, 0x62));
          return;
        }
        case '/f':
          // Past the client's windows: queued until WINDOW_UPDATEs or SETTINGS let it out.
          stream.resume();
          stream.respond({ ':status': 200 });
          stream.write(Buffer.alloc(50_000, 0x66));
          stream.end(Buffer.alloc(50_000, 0x67));
          return;
        case '/c':
          // Echo: each DATA frame's bytes back.
          stream.respond({ ':status': 200 });
          stream.on('data', (chunk: Buffer) => {
            events.push(`data ${stream.id} ${chunk.length} ${chunk.toString('latin1', 0, 8)}`);
            stream.write(chunk);
          });
          stream.on('end', () => stream.end());
          stream.resume();
          return;
        case '/d':
          // Never read: the body waits on the stream's window.
          return;
        case '/e':
          stream.close(0x8);
          return;
        default:
          stream.respond({ ':status': 404 }, { endStream: true });
      }
    },
    onOversized(stream) {
      events.push(`oversized ${stream.id}`);
      stream.respond({ ':status': 431 }, { endStream: true });
    },
    onConnectionError(flood, code) {
      events.push(`error ${flood} ${code}`);
    },
    onClose() {
      events.push('close');
    },
  };
}

/** A read buffer shared by the runs, as core's: views into it are valid during read() only. */
const shared = Buffer.alloc(1 << 20);

function run(chunks: readonly Buffer[], transient: boolean): Run {
  const socket = new MemorySocket();
  const conn = new H2ServerConnection(socket as unknown as Socket, { maxConcurrentStreams: 4, initialWindowSize: 65535, connectionWindowSize: 1 << 20, maxHeaderListSize: 4096, maxHeaders: 16 });
  const events: string[] = [];
  let threw: unknown = null;
  try {
    conn.start(handler(events), null);
    for (const chunk of chunks) {
      if (transient) {
        chunk.copy(shared, 0);
        conn.read(shared.subarray(0, chunk.length), true);
        // What the connection kept of a transient view would now read as garbage.
        shared.fill(0xee, 0, chunk.length);
      } else conn.read(Buffer.from(chunk), false);
    }
    conn.flush();
  } catch (err) {
    threw = err;
  }
  const { frames, rest } = parseFrames(Buffer.concat(socket.written));
  // Copies: the frames' bytes are compared across runs.
  return { frames: frames.map((f) => ({ ...f, payload: Buffer.from(f.payload) })), rest, events, ended: socket.ended, writesAfterEnd: socket.writesAfterEnd, threw };
}

/** The client's frames as the server reads them (the same framing), for the limits they set. */
function clientLimits(input: Buffer): { maxFrame: number; connectionCredit: number } {
  const { frames } = parseFrames(input.subarray(PREFACE.length));
  let maxFrame = 16384;
  let connectionCredit = 65535;
  for (const f of frames) {
    if (f.type === WINDOW_UPDATE && f.id === 0 && f.payload.length === 4) connectionCredit += f.payload.readUInt32BE(0) & 0x7fffffff;
    if (f.type === SETTINGS && f.id === 0 && (f.flags & FLAG_ACK) === 0 && f.payload.length % 6 === 0) {
      for (let at = 0; at < f.payload.length; at += 6) {
        if (f.payload.readUInt16BE(at) === SETTINGS_MAX_FRAME_SIZE) maxFrame = Math.max(maxFrame, Math.min(f.payload.readUInt32BE(at + 2), 0xffffff));
      }
    }
  }
  return { maxFrame, connectionCredit };
}

function checkOutput(r: Run, input: Buffer): void {
  if (r.threw !== null) throw r.threw;
  assert.equal(r.rest, 0, 'the output ends on a frame boundary');
  assert.equal(r.writesAfterEnd, 0, 'nothing written after end()');
  const first = r.frames[0];
  assert.ok(first !== undefined && first.type === SETTINGS && first.flags === 0 && first.id === 0, 'our SETTINGS come first');
  const { maxFrame, connectionCredit } = clientLimits(input);
  const decoder = new HpackDecoder(4096);
  let dataSent = 0;
  let block: Buffer[] | null = null;
  for (let i = 0; i < r.frames.length; i++) {
    const f = r.frames[i] as Frame;
    switch (f.type) {
      case SETTINGS:
      case PING:
        assert.equal(f.id, 0);
        if (f.type === PING) assert.equal(f.payload.length, 8);
        break;
      case GOAWAY: {
        assert.equal(f.id, 0);
        assert.equal(f.payload.length, 8);
        if (f.payload.readUInt32BE(4) !== NO_ERROR) {
          assert.equal(i, r.frames.length - 1, 'nothing follows a GOAWAY for an error');
          assert.ok(r.ended, 'the connection closes after a GOAWAY for an error');
        }
        break;
      }
      case WINDOW_UPDATE: {
        assert.equal(f.payload.length, 4);
        const inc = f.payload.readUInt32BE(0);
        assert.ok(inc > 0 && inc <= 0x7fffffff, `WINDOW_UPDATE of ${inc}`);
        break;
      }
      case RST_STREAM:
        assert.ok(f.id !== 0 && f.payload.length === 4);
        break;
      case DATA:
        assert.ok(f.id % 2 === 1, `DATA on stream ${f.id}`);
        assert.ok(f.payload.length <= maxFrame, `DATA of ${f.payload.length} bytes`);
        dataSent += f.payload.length;
        break;
      case HEADERS:
      case CONTINUATION: {
        assert.ok(f.id % 2 === 1);
        assert.ok(f.payload.length <= maxFrame);
        assert.equal(f.type === CONTINUATION, block !== null, 'CONTINUATION exactly within a header block');
        block = [...(block ?? []), f.payload];
        if ((f.flags & FLAG_END_HEADERS) !== 0) {
          const whole = Buffer.concat(block);
          const out: string[] = [];
          decoder.decode(whole, 0, whole.length, out, 1 << 20);
          assert.ok(out.length > 0);
          block = null;
        }
        break;
      }
      default:
        assert.fail(`a frame of type ${f.type} from the server`);
    }
    if (block !== null && f.type !== HEADERS && f.type !== CONTINUATION) assert.fail('a frame inside our header block');
  }
  assert.equal(block, null, 'our header blocks end');
  assert.ok(dataSent <= connectionCredit, `${dataSent} DATA bytes sent on a connection window of ${connectionCredit}`);
}

function sameRun(a: Run, b: Run): void {
  assert.deepEqual(
    a.frames.map((f) => [f.type, f.flags, f.id, f.payload.toString('hex')]),
    b.frames.map((f) => [f.type, f.flags, f.id, f.payload.toString('hex')]),
  );
  assert.deepEqual(a.events, b.events);
  assert.equal(a.ended, b.ended);
}

describe('fuzz: HTTP/2 server framing layer (wire/connection.ts)', () => {
  it('reads any client bytes, cut anywhere, into whole frames that agree however the bytes were cut', async (t) => {
    await fuzzAsync(
      t,
      fc.asyncProperty(clientBytes, cuts, fc.boolean(), async (input, at, transient) => {
        const whole = run([input], false);
        checkOutput(whole, input);
        const pieces = run(chunked(input, at), transient);
        checkOutput(pieces, input);
        sameRun(whole, pieces);
        // Lets the connections' shared flush turn run (their slabs go).
        await new Promise((resolve) => setImmediate(resolve));
      }),
    );
  });

  it('reads a well-formed request stream cut into single bytes as it reads it whole', async (t) => {
    const wellFormedOnly = fc
      .tuple(fc.array(headersFrames, { minLength: 1, maxLength: 2 }), fc.array(fc.oneof({ arbitrary: headersFrames, weight: 2 }, dataFrames(false), controlFrame), { maxLength: 10 }), validSettings)
      .map(([first, gens, settings]) => build([...first, ...gens], settings));
    await fuzzAsync(
      t,
      fc.asyncProperty(wellFormedOnly, fc.boolean(), async (input, transient) => {
        const whole = run([input], false);
        checkOutput(whole, input);
        const single = run(
          Array.from(input, (b) => Buffer.from([b])),
          transient,
        );
        sameRun(whole, single);
        await new Promise((resolve) => setImmediate(resolve));
      }),
      { smoke: 100 },
    );
  });
});
