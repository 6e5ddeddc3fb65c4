/**
 * Property tests for the PostgreSQL startup parser and the backend key
 * scanner: whatever a client or backend sends, the parser fails only with
 * PROTOCOL and never over-consumes, and chunking never changes a result.
 * Not tied to one src file (the property suite over parse.ts and its scanner), so it keeps its own name.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  BackendKeyScanner,
  CANCEL_REQUEST_CODE,
  GSSENC_REQUEST_CODE,
  SSL_REQUEST_CODE,
  parseStartupPacket,
} from '../../../../src/protocols/postgres/parse.ts';
import { isProtocolError } from './wire.ts';

const RUNS = 1000;

function u32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value >>> 0, 0);
  return out;
}

/** Cuts `bytes` at the given points (taken modulo its length + 1, so any nat works). */
function chunked(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const point of points) {
    chunks.push(bytes.subarray(from, point));
    from = point;
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}

function backendMessage(type: number, body: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([type]), u32(4 + body.length), body]);
}

/** Pushes every chunk, asserting the scanner is done exactly once `doneAt` bytes are in. */
function pushAll(scanner: BackendKeyScanner, chunks: readonly Buffer[], doneAt: number): void {
  let fed = 0;
  for (const chunk of chunks) {
    fed += chunk.length;
    assert.equal(scanner.push(chunk), fed >= doneAt, `after ${fed} bytes`);
  }
}

// --- parseStartupPacket ------------------------------------------------------

/** Bytes that look like a startup packet often enough to get past the header checks. */
const startupish = fc
  .tuple(
    // null: the declared length matches the bytes, so the body gets parsed.
    fc.oneof({ arbitrary: fc.constant(null), weight: 3 }, fc.integer({ min: 0, max: 600 }), fc.integer({ min: 0, max: 0xffffffff })),
    fc.oneof(
      { arbitrary: fc.constantFrom(SSL_REQUEST_CODE, GSSENC_REQUEST_CODE, CANCEL_REQUEST_CODE, 196608, 196609, 196610, 0x20000, 0x40000), weight: 3 },
      fc.integer({ min: 0, max: 0xffffffff }),
    ),
    fc.oneof(
      // Bodies rich in NULs and in the letters of "user", so that parameter lists half-work.
      fc.array(fc.oneof(fc.constant(0), fc.constantFrom(0x75, 0x73, 0x65, 0x72), fc.integer({ min: 0, max: 255 })), { maxLength: 600 }),
      // A valid parameter list with one byte changed, dropped or added.
      fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'drop', 'add', 'none')).map(([at, byte, how]) => {
        const body = [...Buffer.from('user\0alice\0database\0shop\0\0')];
        const i = at % (body.length + 1);
        if (how === 'set' && i < body.length) body[i] = byte;
        else if (how === 'drop') body.splice(i, 1);
        else if (how === 'add') body.splice(i, 0, byte);
        return body;
      }),
    ),
  )
  .map(([length, code, body]) => Buffer.concat([u32(length ?? 8 + body.length), u32(code), Buffer.from(body)]));

const anyBytes = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
  { arbitrary: startupish, weight: 3 },
  // Any of the above, truncated anywhere.
  fc.tuple(startupish, fc.nat()).map(([bytes, cut]) => bytes.subarray(0, cut % (bytes.length + 1))),
);

/** Text without NUL (the wire's string terminator); 'binary' covers all of Unicode except lone surrogates. */
const cstring = (minLength: number, maxLength: number): fc.Arbitrary<string> =>
  fc.string({ unit: 'binary', minLength, maxLength }).filter((text) => !text.includes('\0'));

describe('parseStartupPacket properties', () => {
  it('throws nothing but PROTOCOL and never consumes more than it was given', () => {
    fc.assert(
      fc.property(anyBytes, (bytes) => {
        let result: ReturnType<typeof parseStartupPacket>;
        try {
          result = parseStartupPacket(bytes);
        } catch (err) {
          return isProtocolError(err);
        }
        if (result === undefined) return true;
        assert.ok(result.consumed >= 8 && result.consumed <= bytes.length, `consumed ${result.consumed} of ${bytes.length}`);
        assert.equal(result.consumed, bytes.readUInt32BE(0), 'consumes exactly the declared length');
        if (result.value.type === 'cancel' || result.value.type === 'startup') {
          assert.deepStrictEqual(result.value.raw, bytes.subarray(0, result.consumed));
        }
        return true;
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips any parameter map with a non-empty user, whole or split at any offset', () => {
    const packetArb = fc.record({
      user: cstring(1, 16),
      // Names are never empty: an empty name is the list terminator.
      others: fc.uniqueArray(fc.tuple(cstring(1, 16).filter((name) => name !== 'user'), cstring(0, 24)), {
        selector: ([name]) => name,
        maxLength: 8,
      }),
      userAt: fc.nat(),
      version: fc.constantFrom(196608, 196609, 196610),
      cut: fc.nat(),
      trailing: fc.uint8Array({ maxLength: 16 }),
    });
    fc.assert(
      fc.property(packetArb, ({ user, others, userAt, version, cut, trailing }) => {
        const entries: Array<[string, string]> = [...others];
        entries.splice(userAt % (others.length + 1), 0, ['user', user]);
        const body = Buffer.concat([...entries.map(([name, value]) => Buffer.from(`${name}\0${value}\0`, 'utf8')), Buffer.from([0])]);
        const packet = Buffer.concat([u32(8 + body.length), u32(version), body]);
        const expected = { type: 'startup', version, params: new Map(entries), raw: packet };

        assert.deepStrictEqual(parseStartupPacket(packet), { value: expected, consumed: packet.length });
        // Bytes the client pipelined behind the packet are left alone.
        assert.deepStrictEqual(parseStartupPacket(Buffer.concat([packet, trailing])), { value: expected, consumed: packet.length });
        const at = cut % (packet.length + 1);
        if (at < packet.length) assert.equal(parseStartupPacket(packet.subarray(0, at)), undefined, `prefix of ${at}`);
        const rejoined = Buffer.concat([packet.subarray(0, at), packet.subarray(at)]);
        assert.deepStrictEqual(parseStartupPacket(rejoined), { value: expected, consumed: packet.length });
      }),
      { numRuns: RUNS },
    );
  });
});

// --- BackendKeyScanner -------------------------------------------------------

/** Message-shaped bytes with arbitrary types and lengths, sometimes right, sometimes not. */
const messageish = fc
  .array(
    fc.tuple(
      fc.oneof(fc.constantFrom(0x4b, 0x5a, 0x45, 0x52, 0x53), fc.integer({ min: 0, max: 255 })),
      fc.option(fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 0xffffffff }))),
      fc.uint8Array({ maxLength: 300 }),
    ),
    { maxLength: 8 },
  )
  .map((messages) =>
    Buffer.concat(messages.map(([type, length, body]) => Buffer.concat([Buffer.from([type]), u32(length ?? 4 + body.length), body]))),
  );

describe('BackendKeyScanner properties', () => {
  it('never throws on arbitrary chunk sequences, and once done stays done', () => {
    const chunksArb = fc.oneof(
      fc.array(
        fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
        { maxLength: 16 },
      ),
      fc.tuple(messageish, fc.array(fc.nat(), { maxLength: 12 })).map(([bytes, cuts]) => chunked(bytes, cuts)),
    );
    fc.assert(
      fc.property(chunksArb, (chunks) => {
        const scanner = new BackendKeyScanner();
        let wasDone = false;
        for (const chunk of chunks) {
          const done = scanner.push(chunk);
          assert.equal(done, scanner.done);
          if (wasDone) assert.equal(done, true, 'done is final');
          wasDone = done;
        }
        if (scanner.key !== null) {
          assert.match(scanner.key, /^(?:[0-9a-f]{2}){8,260}$/, 'key is hex of pid + 4..256-byte secret');
        }
      }),
      { numRuns: RUNS },
    );
  });

  const otherMessage = fc
    .tuple(
      fc.integer({ min: 0, max: 255 }).filter((type) => type !== 0x4b && type !== 0x5a && type !== 0x45),
      fc.uint8Array({ maxLength: 80 }),
    )
    .map(([type, body]) => backendMessage(type, body));

  it('finds the one BackendKeyData among arbitrary valid messages, however the stream is chunked', () => {
    const streamArb = fc.record({
      before: fc.array(otherMessage, { maxLength: 8 }),
      after: fc.array(otherMessage, { maxLength: 4 }),
      pid: fc.uint8Array({ minLength: 4, maxLength: 4 }),
      secret: fc.uint8Array({ minLength: 4, maxLength: 256 }),
      cuts: fc.array(fc.nat(), { maxLength: 24 }),
    });
    fc.assert(
      fc.property(streamArb, ({ before, after, pid, secret, cuts }) => {
        const key = Buffer.concat([pid, secret]);
        const stream = Buffer.concat([...before, backendMessage(0x4b, key), ...after, backendMessage(0x5a, Buffer.from('I'))]);
        const scanner = new BackendKeyScanner();
        pushAll(scanner, chunked(stream, cuts), stream.length);
        assert.equal(scanner.key, key.toString('hex'));
      }),
      { numRuns: RUNS },
    );
  });

  it('ends without a key at an ErrorResponse among arbitrary valid messages, however chunked', () => {
    const streamArb = fc.record({
      before: fc.array(otherMessage, { maxLength: 8 }),
      error: fc.uint8Array({ maxLength: 120 }),
      cuts: fc.array(fc.nat(), { maxLength: 24 }),
    });
    fc.assert(
      fc.property(streamArb, ({ before, error, cuts }) => {
        const stream = Buffer.concat([...before, backendMessage(0x45, error)]);
        const scanner = new BackendKeyScanner();
        pushAll(scanner, chunked(stream, cuts), stream.length);
        assert.equal(scanner.key, null);
      }),
      { numRuns: RUNS },
    );
  });
});
