/**
 * Property tests: whatever a client (or backend) sends, the MongoDB parsers
 * fail only with PROTOCOL, never consume more than the declared message, and
 * chunking never changes a result.
 * Not tied to one src file (wire.ts, bson.ts and crc32c.ts together), so it keeps its own name.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BSON } from 'mongodb';
import { decodeDocument } from '../../../../src/protocols/mongodb/bson.ts';
import { crc32c } from '../../../../src/protocols/mongodb/crc32c.ts';
import { OP_MSG, OP_QUERY, parseClientMessage, parseServerReply } from '../../../../src/protocols/mongodb/wire.ts';
import { feed, isProtocolError } from './helpers.ts';

function int32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeInt32LE(value | 0);
  return out;
}

const smallDoc = fc
  .dictionary(
    fc.string({ maxLength: 6 }).filter((text) => !text.includes('\0') && text !== '__proto__'),
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
  .tuple(fc.oneof(validOpMsg.map((valid) => valid.message), validOpQuery), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'drop', 'add')), { minLength: 1, maxLength: 4 }), fc.boolean())
  .map(([message, edits, keepLength]) => {
    const bytes = [...message];
    for (const [at, byte, how] of edits) {
      const i = at % (bytes.length + 1);
      if (how === 'set' && i < bytes.length) bytes[i] = byte;
      else if (how === 'drop') bytes.splice(i, 1);
      else if (how === 'add') bytes.splice(i, 0, byte);
    }
    const out = Buffer.from(bytes);
    // Often keep the length field honest so the body gets parsed.
    if (keepLength && out.length >= 4) out.writeInt32LE(out.length, 0);
    return out;
  });

const anyBytes = fc.oneof(fc.uint8Array({ maxLength: 96 }).map((bytes) => Buffer.from(bytes)), { arbitrary: mutated, weight: 4 });

function onlyProtocolErrors<T>(run: () => T): T | undefined {
  try {
    return run();
  } catch (err) {
    isProtocolError(err);
    return undefined;
  }
}

describe('MongoDB parser properties', () => {
  it('parseClientMessage throws nothing but PROTOCOL and consumes exactly the declared length', () => {
    fc.assert(
      fc.property(anyBytes, (bytes) => {
        const result = onlyProtocolErrors(() => parseClientMessage(bytes));
        if (result !== undefined) {
          assert.equal(result.consumed, bytes.readInt32LE(0));
          assert.ok(result.consumed <= bytes.length);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('parseServerReply and decodeDocument throw nothing but PROTOCOL', () => {
    fc.assert(
      fc.property(anyBytes, fc.nat(), (bytes, offset) => {
        onlyProtocolErrors(() => parseServerReply(bytes));
        const at = bytes.length === 0 ? 0 : offset % bytes.length;
        onlyProtocolErrors(() => decodeDocument(bytes, at));
      }),
      { numRuns: 3000 },
    );
  });

  it('valid OP_MSGs parse the same whole or cut anywhere, with their body and sequences', () => {
    fc.assert(
      fc.property(validOpMsg, fc.array(fc.nat(), { maxLength: 6 }), ({ message, requestID, db, sequences }, cuts) => {
        const points = [...new Set(cuts.map((cut) => cut % (message.length + 1)))].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let from = 0;
        for (const point of points) {
          chunks.push(message.subarray(from, point));
          from = point;
        }
        chunks.push(message.subarray(from));
        const result = feed(parseClientMessage, chunks);
        assert.ok(result !== undefined);
        assert.equal(result.consumed, message.length);
        const value = result.value;
        assert.equal(value.op, 'msg');
        if (value.op !== 'msg') return;
        assert.equal(value.requestID, requestID);
        assert.equal(value.body.$db, db);
        assert.equal(value.command, 'insert');
        assert.deepStrictEqual(
          value.sequences.map((sequence) => [sequence.identifier, sequence.documents.length]),
          sequences.map(([identifier, docs]) => [identifier, docs.length]),
        );
      }),
      { numRuns: 1000 },
    );
  });
});
