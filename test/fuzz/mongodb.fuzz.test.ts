/**
 * Fuzzing the MongoDB parsers (issue 15): the BSON codec writes the
 * driver's bytes and reads them back; a document the proxy accepts, the
 * driver reads with the same keys and the same `$db`; client messages fail
 * only with PROTOCOL, are framed by their declared length and parse the same
 * whole or cut anywhere, and what is forwarded (raw) re-parses the same;
 * server replies the proxy encodes parse back.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BSON } from 'mongodb';
import { Binary, Double, ObjectId, RawBsonValue, Timestamp, decodeDocument, encodeDocument } from '../../src/protocols/mongodb/bson.ts';
import type { BsonDocument, BsonValue } from '../../src/protocols/mongodb/bson.ts';
import { crc32c } from '../../src/protocols/mongodb/crc32c.ts';
import { OP_MSG, OP_QUERY, OP_REPLY, encodeOpMsg, encodeOpReply, parseClientMessage, parseServerReply } from '../../src/protocols/mongodb/wire.ts';
import { chunked, cuts, fuzz, text } from '../helpers/fuzz.ts';
import { feed, isProtocolError } from '../unit/protocols/mongodb/helpers.ts';

function int32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeInt32LE(value | 0);
  return out;
}

function onlyProtocolErrors<T>(run: () => T): T | undefined {
  try {
    return run();
  } catch (err) {
    isProtocolError(err);
    return undefined;
  }
}

// --- BSON against the driver ---------------------------------------------------

function toDriver(value: BsonValue): unknown {
  if (value instanceof ObjectId) return new BSON.ObjectId(value.bytes);
  if (value instanceof Binary) return new BSON.Binary(value.data, value.subtype);
  if (value instanceof Timestamp) return new BSON.Timestamp({ t: value.t, i: value.i });
  if (value instanceof Double) return new BSON.Double(value.value);
  if (Array.isArray(value)) return value.map(toDriver);
  if (value !== null && typeof value === 'object' && !(value instanceof Date) && !(value instanceof RawBsonValue)) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, toDriver(item)]));
  }
  return value;
}

function fromDriver(value: unknown): BsonValue {
  if (value instanceof BSON.ObjectId) return new ObjectId(value.id);
  if (value instanceof BSON.Binary) return new Binary(value.buffer.subarray(0, value.position), value.sub_type);
  if (value instanceof BSON.Timestamp) return new Timestamp(value.t, value.i);
  if (Array.isArray(value)) return value.map(fromDriver);
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, fromDriver(item)]));
  }
  return value as BsonValue;
}

const key = text(0, 12, '\0').filter((name) => name !== '__proto__');

const scalar: fc.Arbitrary<BsonValue> = fc.oneof(
  text(0, 24),
  fc.integer({ min: -2147483648, max: 2147483647 }),
  fc.double(),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  fc.boolean(),
  fc.constant(null),
  fc.date({ noInvalidDate: true }),
  fc.uint8Array({ minLength: 12, maxLength: 12 }).map((bytes) => new ObjectId(bytes)),
  fc.tuple(fc.uint8Array({ maxLength: 32 }), fc.constantFrom(0, 1, 3, 4, 5, 6, 7, 0x80)).map(([data, subtype]) => new Binary(data, subtype)),
  fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff })).map(([t, i]) => new Timestamp(t, i)),
);

const { document } = fc.letrec<{ value: BsonValue; document: BsonDocument; array: BsonValue[] }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, tie('document'), tie('array')),
  document: fc.dictionary(key, tie('value'), { maxKeys: 6, noNullPrototype: true }) as fc.Arbitrary<BsonDocument>,
  array: fc.array(tie('value'), { maxLength: 5 }),
}));

/** Byte edits: set, drop or insert a byte anywhere. */
const edits = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'drop', 'add')), { minLength: 1, maxLength: 4 });

function applyEdits(message: Buffer, changes: ReadonlyArray<readonly [number, number, string]>, keepLength: boolean): Buffer {
  const bytes = [...message];
  for (const [at, byte, how] of changes) {
    const i = at % (bytes.length + 1);
    if (how === 'set' && i < bytes.length) bytes[i] = byte;
    else if (how === 'drop') bytes.splice(i, 1);
    else if (how === 'add') bytes.splice(i, 0, byte);
  }
  const out = Buffer.from(bytes);
  // Often keep the length field honest so the body gets parsed.
  if (keepLength && out.length >= 4) out.writeInt32LE(out.length, 0);
  return out;
}

describe('BSON', () => {
  it("encodes generated documents to the driver's bytes and decodes them back", (t) => {
    fuzz(
      t,
      fc.property(document, (doc) => {
        const mine = encodeDocument(doc);
        const theirs = Buffer.from(BSON.serialize(toDriver(doc) as Record<string, unknown>));
        assert.ok(mine.equals(theirs), `bytes differ:\n${mine.toString('hex')}\n${theirs.toString('hex')}`);
        assert.deepStrictEqual(decodeDocument(theirs), doc);
        assert.deepStrictEqual(fromDriver(BSON.deserialize(mine, { useBigInt64: true })), doc);
      }),
    );
  });

  it('a document the proxy accepts, the driver reads too, with the same keys in order and the same $db', (t) => {
    const withDb = fc.tuple(document, fc.constantFrom('admin', 'tenant_a', 'x')).map(([doc, db]) => encodeDocument({ find: 'c', ...doc, $db: db }));
    fuzz(
      t,
      fc.property(withDb, edits, fc.boolean(), (bytes, changes, keepLength) => {
        const mutated = applyEdits(bytes, changes, keepLength);
        const mine = onlyProtocolErrors(() => decodeDocument(mutated));
        if (mine === undefined) return;
        const theirs = BSON.deserialize(mutated, { useBigInt64: true, validation: { utf8: false } });
        assert.deepStrictEqual(Object.keys(mine), Object.keys(theirs));
        if (typeof mine.$db === 'string') assert.equal(theirs.$db, mine.$db);
      }),
    );
  });
});

// --- client messages ---------------------------------------------------------------

const smallDoc = fc
  .dictionary(
    fc.string({ maxLength: 6 }).filter((name) => !name.includes('\0') && name !== '__proto__'),
    fc.oneof(fc.integer(), fc.string({ maxLength: 8 }), fc.boolean(), fc.constant(null), fc.double()),
    { maxKeys: 4, noNullPrototype: true },
  )
  .map((doc) => Buffer.from(BSON.serialize(doc)));

/** A well-formed OP_MSG: a body naming a command and a database, optional sequences, optional checksum. */
const validOpMsg = fc
  .record({
    requestID: fc.integer({ min: -2147483648, max: 2147483647 }),
    db: fc.constantFrom('admin', 'tenant_a', 'x'),
    extra: smallDoc,
    sequences: fc.array(fc.tuple(fc.constantFrom('documents', 'updates', 'deletes'), fc.array(smallDoc, { maxLength: 3 })), { maxLength: 2 }),
    checksum: fc.boolean(),
    exhaust: fc.boolean(),
  })
  .map(({ requestID, db, extra, sequences, checksum, exhaust }) => {
    const body = Buffer.from(BSON.serialize({ insert: 'c', $db: db, extra: BSON.deserialize(extra) }));
    const parts: Buffer[] = [Buffer.from([0]), body];
    for (const [identifier, docs] of sequences) {
      const payload = Buffer.concat([Buffer.from(`${identifier}\0`), ...docs]);
      parts.push(Buffer.from([1]), int32(4 + payload.length), payload);
    }
    const head = Buffer.alloc(20);
    head.writeInt32LE(requestID, 4);
    head.writeInt32LE(OP_MSG, 12);
    head.writeUInt32LE((checksum ? 1 : 0) | (exhaust ? 1 << 16 : 0), 16);
    const message = Buffer.concat([head, ...parts, checksum ? Buffer.alloc(4) : Buffer.alloc(0)]);
    message.writeInt32LE(message.length, 0);
    if (checksum) message.writeUInt32LE(crc32c(message, 0, message.length - 4), message.length - 4);
    return { message, requestID, db, sequences };
  });

const validOpQuery = fc.tuple(fc.constantFrom('admin.$cmd', 'tenant_a.$cmd'), smallDoc).map(([collection, query]) => {
  const head = Buffer.alloc(20);
  head.writeInt32LE(OP_QUERY, 12);
  const message = Buffer.concat([head, Buffer.from(`${collection}\0`), int32(0), int32(-1), query]);
  message.writeInt32LE(message.length, 0);
  return message;
});

/** Valid messages with bytes changed, dropped, inserted, or the message truncated. */
const mutated = fc
  .tuple(fc.oneof(validOpMsg.map((valid) => valid.message), validOpQuery), edits, fc.boolean())
  .map(([message, changes, keepLength]) => applyEdits(message, changes, keepLength));

const anyBytes = fc.oneof(fc.uint8Array({ maxLength: 96 }).map((bytes) => Buffer.from(bytes)), { arbitrary: mutated, weight: 4 });

describe('MongoDB client messages', () => {
  it('parseClientMessage throws nothing but PROTOCOL, consumes exactly the declared length, and its raw copy re-parses the same', (t) => {
    fuzz(
      t,
      fc.property(anyBytes, (bytes) => {
        const result = onlyProtocolErrors(() => parseClientMessage(bytes));
        if (result === undefined) return;
        assert.equal(result.consumed, bytes.readInt32LE(0));
        assert.ok(result.consumed <= bytes.length);
        assert.deepStrictEqual(result.value.raw, bytes.subarray(0, result.consumed));
        assert.deepStrictEqual(parseClientMessage(result.value.raw), result);
      }),
    );
  });

  it('parseServerReply and decodeDocument throw nothing but PROTOCOL on any bytes', (t) => {
    fuzz(
      t,
      fc.property(anyBytes, fc.nat(), (bytes, offset) => {
        onlyProtocolErrors(() => parseServerReply(bytes));
        const at = bytes.length === 0 ? 0 : offset % bytes.length;
        onlyProtocolErrors(() => decodeDocument(bytes, at));
      }),
    );
  });

  it('valid OP_MSGs parse the same whole or cut anywhere, with their body and sequences', (t) => {
    fuzz(
      t,
      fc.property(validOpMsg, cuts, ({ message, requestID, db, sequences }, points) => {
        const result = feed(parseClientMessage, chunked(message, points));
        assert.ok(result !== undefined);
        assert.equal(result.consumed, message.length);
        const value = result.value;
        assert.equal(value.op, 'msg');
        if (value.op !== 'msg') return;
        assert.equal(value.requestID, requestID);
        assert.equal(value.body.$db, db);
        assert.equal(value.command, 'insert');
        assert.deepStrictEqual(
          value.sequences.map((sequence) => [sequence.identifier, sequence.documents.map((doc) => encodeDocument(doc).toString('hex'))]),
          sequences.map(([identifier, docs]) => [identifier, docs.map((doc) => encodeDocument(decodeDocument(doc)).toString('hex'))]),
        );
      }),
    );
  });
});

describe('MongoDB server replies', () => {
  it('OP_MSG and OP_REPLY the proxy encodes parse back to the same header, flags and document', (t) => {
    fuzz(
      t,
      fc.property(
        fc.integer({ min: -2147483648, max: 2147483647 }),
        fc.integer({ min: -2147483648, max: 2147483647 }),
        // OP_MSG: moreToCome and exhaustAllowed (encodeOpMsg writes no checksum); OP_REPLY: any responseFlags.
        fc.oneof(fc.constantFrom(0, 2, 1 << 16, 2 | (1 << 16)), fc.integer({ min: 0, max: 0xffffffff })),
        document,
        fc.boolean(),
        fc.uint8Array({ maxLength: 8 }),
        (requestID, responseTo, flags, doc, msg, more) => {
          fc.pre(!msg || (flags & ~(2 | (1 << 16))) === 0);
          const bytes = msg ? encodeOpMsg(requestID, responseTo, doc, flags) : encodeOpReply(requestID, responseTo, doc, flags | 0);
          const reply = parseServerReply(Buffer.concat([bytes, more]));
          assert.deepStrictEqual(reply, {
            value: { opCode: msg ? OP_MSG : OP_REPLY, requestID, responseTo, flags: msg ? flags : flags | 0, document: decodeDocument(encodeDocument(doc)) },
            consumed: bytes.length,
          });
        },
      ),
    );
  });
});
