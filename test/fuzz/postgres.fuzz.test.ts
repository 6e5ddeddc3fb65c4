/**
 * Fuzzing the PostgreSQL parsers (issue 15): the startup packet parser
 * agrees with a reference decoder written here from the protocol docs
 * (accept, reject or wait, and the parameter map), and the backend key
 * scanner finds what a whole-stream reference finds, however the stream is
 * chunked; ErrorResponses the proxy writes decode field for field.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  BackendKeyScanner,
  CANCEL_REQUEST_CODE,
  GSSENC_REQUEST_CODE,
  MAX_STARTUP_PACKET,
  SSL_REQUEST_CODE,
  parseStartupPacket,
} from '../../src/protocols/postgres/parse.ts';
import { errorResponse } from '../../src/protocols/postgres/errors.ts';
import { chunked, cuts, fuzz, text } from '../helpers/fuzz.ts';
import { errorFields, isProtocolError } from '../unit/protocols/postgres/wire.ts';

function u32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value >>> 0, 0);
  return out;
}

function backendMessage(type: number, body: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([type]), u32(4 + body.length), body]);
}

// --- startup packets ---------------------------------------------------------

type Outcome = 'wait' | 'reject' | { type: string; consumed: number; version?: number; key?: string; params?: Array<[string, string]> };

/**
 * The reference: a packet is int32 length (8..10000), int32 code, body.
 * SSLRequest/GSSENCRequest are exactly 8 bytes, CancelRequest 16..268
 * (pid + 4..256-byte secret), anything else must be protocol 3.x with a body
 * of NUL-terminated name/value strings closed by one more NUL, naming a
 * non-empty user. A bad code is refused as soon as the code is in.
 */
function referenceStartup(bytes: Buffer): Outcome {
  if (bytes.length < 4) return 'wait';
  const length = bytes.readUInt32BE(0);
  if (length < 8 || length > MAX_STARTUP_PACKET) return 'reject';
  if (bytes.length < 8) return 'wait';
  const code = bytes.readUInt32BE(4);
  const special = new Map<number, readonly [number, number, string]>([
    [SSL_REQUEST_CODE, [8, 8, 'ssl']],
    [GSSENC_REQUEST_CODE, [8, 8, 'gssenc']],
    [CANCEL_REQUEST_CODE, [16, 268, 'cancel']],
  ]);
  const rule = special.get(code);
  if (rule !== undefined ? length < rule[0] || length > rule[1] : Math.floor(code / 65536) !== 3) return 'reject';
  if (bytes.length < length) return 'wait';
  if (rule !== undefined) {
    return rule[2] === 'cancel' ? { type: 'cancel', consumed: length, key: bytes.toString('hex', 8, length) } : { type: rule[2], consumed: length };
  }
  // Split the body on NULs: "n1\0v1\0...\0" gives [n1, v1, ..., '', ''].
  const fields = bytes.toString('latin1', 8, length).split('\0');
  if (fields.length < 2 || fields.at(-1) !== '' || fields.at(-2) !== '') return 'reject';
  const strings = fields.slice(0, -2);
  if (strings.length % 2 !== 0) return 'reject';
  const params = new Map<string, string>();
  for (let i = 0; i < strings.length; i += 2) {
    const [name, value] = [strings[i] as string, strings[i + 1] as string].map((text) => Buffer.from(text, 'latin1').toString('utf8')) as [string, string];
    if (name === '') return 'reject'; // the terminator came early: bytes follow it
    params.set(name, value);
  }
  if ((params.get('user') ?? '') === '') return 'reject';
  return { type: 'startup', consumed: length, version: code, params: [...params] };
}

function actualStartup(bytes: Buffer): Outcome {
  let result: ReturnType<typeof parseStartupPacket>;
  try {
    result = parseStartupPacket(bytes);
  } catch (err) {
    isProtocolError(err);
    return 'reject';
  }
  if (result === undefined) return 'wait';
  const { value, consumed } = result;
  switch (value.type) {
    case 'ssl':
    case 'gssenc':
      return { type: value.type, consumed };
    case 'cancel':
      assert.deepStrictEqual(value.raw, bytes.subarray(0, consumed));
      return { type: 'cancel', consumed, key: value.key };
    case 'startup':
      assert.deepStrictEqual(value.raw, bytes.subarray(0, consumed));
      return { type: 'startup', consumed, version: value.version, params: [...value.params] };
  }
}

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
      // A valid parameter list with bytes changed, dropped or added.
      fc
        .array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'drop', 'add', 'none')), { minLength: 1, maxLength: 3 })
        .map((edits) => {
          const body = [...Buffer.from('user\0alice\0database\0shop\0\0')];
          for (const [at, byte, how] of edits) {
            const i = at % (body.length + 1);
            if (how === 'set' && i < body.length) body[i] = byte;
            else if (how === 'drop') body.splice(i, 1);
            else if (how === 'add') body.splice(i, 0, byte);
          }
          return body;
        }),
    ),
  )
  .map(([length, code, body]) => Buffer.concat([u32(length ?? 8 + body.length), u32(code), Buffer.from(body)]));

const anyStartupBytes = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
  { arbitrary: startupish, weight: 3 },
  // Any of the above, truncated anywhere or followed by pipelined bytes.
  fc.tuple(startupish, fc.nat()).map(([bytes, cut]) => bytes.subarray(0, cut % (bytes.length + 1))),
  fc.tuple(startupish, fc.uint8Array({ maxLength: 16 })).map(([bytes, more]) => Buffer.concat([bytes, more])),
);

/** Text without NUL (the wire's string terminator). */
const cstring = (minLength: number, maxLength: number): fc.Arbitrary<string> => text(minLength, maxLength, '\0');

describe('PostgreSQL startup packets', () => {
  it('accept, reject or wait as the reference decoder does, with the same parameters, key and length', (t) => {
    fuzz(
      t,
      fc.property(anyStartupBytes, (bytes) => {
        assert.deepStrictEqual(actualStartup(bytes), referenceStartup(bytes));
      }),
    );
  });

  it('round-trip any parameter map with a non-empty user, whole, cut anywhere, or with bytes behind', (t) => {
    const packetArb = fc.record({
      user: cstring(1, 16),
      // Names are never empty (an empty name is the list terminator) and never repeat: a repeated one is refused (below).
      others: fc.uniqueArray(fc.tuple(cstring(1, 16).filter((name) => name !== 'user'), cstring(0, 24)), { maxLength: 8, selector: ([name]) => name }),
      userAt: fc.nat(),
      version: fc.constantFrom(196608, 196609, 196610),
      cut: fc.nat(),
      trailing: fc.uint8Array({ maxLength: 16 }),
    });
    fuzz(
      t,
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
        // What the proxy forwards (raw) is the packet itself: it re-parses to the same meaning.
        const parsed = parseStartupPacket(packet);
        assert.ok(parsed?.value.type === 'startup');
        assert.deepStrictEqual(parseStartupPacket(parsed.value.raw), parsed);
        // The same name twice is refused (08P01): PostgreSQL keeps the last value, a pooler may keep the first.
        const repeated = entries[userAt % entries.length] as [string, string];
        const twice = Buffer.concat([...[...entries, repeated].map(([name, value]) => Buffer.from(`${name}\0${value}\0`, 'utf8')), Buffer.from([0])]);
        assert.throws(() => parseStartupPacket(Buffer.concat([u32(8 + twice.length), u32(version), twice])), (err: unknown) => {
          isProtocolError(err);
          return true;
        });
      }),
    );
  });
});

// --- BackendKeyScanner -------------------------------------------------------

interface Scan {
  key: string | null;
  /** Bytes after which the scan is finished; null: it never finishes on these bytes. */
  doneAt: number | null;
}

/**
 * The reference, over the whole stream at once: walk type + int32 length
 * messages; a length below 4 or a BackendKeyData ('K') whose body is not
 * pid + 4..256-byte secret stops the watch as soon as its header is in; a
 * complete 'K' sets the key; a complete ReadyForQuery ('Z') or
 * ErrorResponse ('E') ends the startup phase.
 */
function referenceScan(stream: Buffer): Scan {
  let key: string | null = null;
  let at = 0;
  while (at + 5 <= stream.length) {
    const type = stream[at] as number;
    const length = stream.readUInt32BE(at + 1);
    if (length < 4) return { key, doneAt: at + 5 };
    if (type === 0x4b && (length - 4 < 8 || length - 4 > 260)) return { key, doneAt: at + 5 };
    const end = at + 1 + length;
    if (end > stream.length) break;
    if (type === 0x4b) key = stream.toString('hex', at + 5, end);
    if (type === 0x5a || type === 0x45) return { key, doneAt: end };
    at = end;
  }
  return { key, doneAt: null };
}

/** Message-shaped bytes with arbitrary types and lengths, sometimes right, sometimes not. */
const messageish = fc
  .array(
    fc.tuple(
      fc.oneof(fc.constantFrom(0x4b, 0x5a, 0x45, 0x52, 0x53), fc.integer({ min: 0, max: 255 })),
      fc.option(fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 0xffffffff }))),
      fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ minLength: 8, maxLength: 12 })),
    ),
    { maxLength: 8 },
  )
  .map((messages) =>
    Buffer.concat(messages.map(([type, length, body]) => Buffer.concat([Buffer.from([type]), u32(length ?? 4 + body.length), body]))),
  );

const otherMessage = fc
  .tuple(
    fc.integer({ min: 0, max: 255 }).filter((type) => type !== 0x4b && type !== 0x5a && type !== 0x45),
    fc.uint8Array({ maxLength: 80 }),
  )
  .map(([type, body]) => backendMessage(type, body));

/** Pushes every chunk; returns the key and the byte count after which push first said done. */
function scanChunks(chunks: readonly Buffer[]): Scan {
  const scanner = new BackendKeyScanner();
  let fed = 0;
  let doneAt: number | null = null;
  for (const chunk of chunks) {
    fed += chunk.length;
    const done = scanner.push(chunk);
    assert.equal(done, scanner.done);
    if (doneAt !== null) assert.equal(done, true, 'done is final');
    else if (done) doneAt = fed;
  }
  return { key: scanner.key, doneAt };
}

/** Where a scan of non-empty chunks must say done: after the chunk that holds the reference's last needed byte. */
function chunkEnd(chunks: readonly Buffer[], doneAt: number | null): number | null {
  if (doneAt === null) return null;
  let fed = 0;
  for (const chunk of chunks) {
    fed += chunk.length;
    if (fed >= doneAt) return fed;
  }
  return null;
}

describe('PostgreSQL BackendKeyScanner', () => {
  it('finds the key and finishes where the reference does, however the stream is chunked', (t) => {
    const streamArb = fc.oneof(
      messageish,
      fc.tuple(fc.array(otherMessage, { maxLength: 4 }), messageish).map(([valid, rest]) => Buffer.concat([...valid, rest])),
      fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
    );
    fuzz(
      t,
      fc.property(streamArb, cuts, (stream, points) => {
        const chunks = chunked(stream, points).filter((chunk) => chunk.length > 0);
        const expected = referenceScan(stream);
        const actual = scanChunks(chunks);
        assert.deepStrictEqual(actual, { key: expected.key, doneAt: chunkEnd(chunks, expected.doneAt) });
      }),
    );
  });

  it('finds the one BackendKeyData among arbitrary valid messages, however the stream is chunked', (t) => {
    const streamArb = fc.record({
      before: fc.array(otherMessage, { maxLength: 8 }),
      after: fc.array(otherMessage, { maxLength: 4 }),
      pid: fc.uint8Array({ minLength: 4, maxLength: 4 }),
      secret: fc.uint8Array({ minLength: 4, maxLength: 256 }),
      cuts,
    });
    fuzz(
      t,
      fc.property(streamArb, ({ before, after, pid, secret, cuts: points }) => {
        const key = Buffer.concat([pid, secret]);
        const stream = Buffer.concat([...before, backendMessage(0x4b, key), ...after, backendMessage(0x5a, Buffer.from('I'))]);
        assert.deepStrictEqual(scanChunks(chunked(stream, points).filter((chunk) => chunk.length > 0)), { key: key.toString('hex'), doneAt: stream.length });
      }),
    );
  });

  it('ends without a key at an ErrorResponse among arbitrary valid messages, however chunked', (t) => {
    const streamArb = fc.record({
      before: fc.array(otherMessage, { maxLength: 8 }),
      error: fc.uint8Array({ maxLength: 120 }),
      cuts,
    });
    fuzz(
      t,
      fc.property(streamArb, ({ before, error, cuts: points }) => {
        const stream = Buffer.concat([...before, backendMessage(0x45, error)]);
        assert.deepStrictEqual(scanChunks(chunked(stream, points).filter((chunk) => chunk.length > 0)), { key: null, doneAt: stream.length });
      }),
    );
  });
});

describe('PostgreSQL ErrorResponse', () => {
  it('round-trips any text without NUL in its message and hint, framed as the protocol docs say', (t) => {
    const fieldText = text(0, 200, '\0');
    fuzz(
      t,
      fc.property(fieldText, fc.option(fieldText, { nil: undefined }), (message, hint) => {
        const expected: Array<[string, string]> = [
          ['S', 'FATAL'],
          ['V', 'FATAL'],
          ['C', '08P01'],
          ['M', message],
        ];
        if (hint !== undefined) expected.push(['H', hint]);
        assert.deepStrictEqual(errorFields(errorResponse('08P01', message, hint)), expected);
      }),
    );
  });
});
