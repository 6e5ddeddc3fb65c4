/**
 * The wire parser over hex fixtures (OP_MSG hello, OP_MSG with a CRC-32C
 * checksum, OP_MSG with a kind-1 document sequence, legacy OP_QUERY
 * isMaster), fed whole, byte by byte and split at every offset, plus every
 * framing rule's refusal, and the reply builders read back by hand.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BSON } from 'mongodb';
import { decodeDocument } from '../../../../src/protocols/mongodb/bson.ts';
import { crc32c } from '../../../../src/protocols/mongodb/crc32c.ts';
import {
  MAX_OPENING_MESSAGE,
  OP_MSG,
  OP_QUERY,
  OP_REPLY,
  encodeOpMsg,
  encodeOpReply,
  parseClientMessage,
  parseServerReply,
  requestDatabase,
} from '../../../../src/protocols/mongodb/wire.ts';
import type { ClientMessage } from '../../../../src/protocols/mongodb/wire.ts';
import { feed, hex, isProtocolError, splits } from './helpers.ts';

// --- fixtures ----------------------------------------------------------------

//                 length   | requestID | responseTo | OP_MSG   | flagBits | kind 0 | {hello: 1, $db: "admin"}
const HELLO = hex(`34000000 | 01000000  | 00000000   | dd070000 | 00000000 | 00 |
  1f000000 1068656c6c6f00 01000000 0224646200 06000000 61646d696e00 00`);
// flagBits = checksumPresent; {find: "c", $db: "tenant_a"}; CRC-32C of everything before it
const FIND_WITH_CHECKSUM = hex(`3c000000 | 07000000 | 00000000 | dd070000 | 01000000 | 00 |
  23000000 0266696e6400 02000000 6300 0224646200 09000000 74656e616e745f6100 00 |
  930ed17d`);
// {insert: "c", $db: "tenant_a"} + kind 1 "documents": [{x: 1}, {x: 2}]
const INSERT_WITH_SEQUENCE = hex(`61000000 | 09000000 | 00000000 | dd070000 | 00000000 |
  00 | 25000000 02696e7365727400 02000000 6300 0224646200 09000000 74656e616e745f6100 00 |
  01 | 26000000 | 646f63756d656e747300 | 0c000000 107800 01000000 00 | 0c000000 107800 02000000 00`);
// OP_QUERY: flags 0 | "admin.$cmd" | skip 0 | return -1 | {isMaster: 1, helloOk: true}
const LEGACY_HELLO = hex(`44000000 | 03000000 | 00000000 | d4070000 | 00000000 |
  61646d696e2e24636d6400 | 00000000 | ffffffff |
  1d000000 1069734d617374657200 01000000 0868656c6c6f4f6b00 01 00`);

interface Case {
  readonly name: string;
  readonly bytes: Buffer;
  readonly check: (message: ClientMessage) => void;
}

const CASES: readonly Case[] = [
  {
    name: 'OP_MSG hello',
    bytes: HELLO,
    check: (message) => {
      assert.equal(message.op, 'msg');
      assert.equal(message.requestID, 1);
      if (message.op !== 'msg') return;
      assert.equal(message.command, 'hello');
      assert.deepStrictEqual(message.body, { hello: 1, $db: 'admin' });
      assert.equal(requestDatabase(message), 'admin');
    },
  },
  {
    name: 'OP_MSG with checksum',
    bytes: FIND_WITH_CHECKSUM,
    check: (message) => {
      assert.equal(message.op, 'msg');
      if (message.op !== 'msg') return;
      assert.equal(message.flags, 1);
      assert.equal(message.command, 'find');
      assert.equal(requestDatabase(message), 'tenant_a');
    },
  },
  {
    name: 'OP_MSG with a kind-1 document sequence',
    bytes: INSERT_WITH_SEQUENCE,
    check: (message) => {
      assert.equal(message.op, 'msg');
      if (message.op !== 'msg') return;
      assert.equal(message.command, 'insert');
      assert.deepStrictEqual(message.sequences, [{ identifier: 'documents', documents: [{ x: 1 }, { x: 2 }] }]);
    },
  },
  {
    name: 'legacy OP_QUERY isMaster',
    bytes: LEGACY_HELLO,
    check: (message) => {
      assert.equal(message.op, 'query');
      if (message.op !== 'query') return;
      assert.equal(message.collection, 'admin.$cmd');
      assert.equal(message.numberToReturn, -1);
      assert.equal(message.commandName, 'isMaster');
      assert.deepStrictEqual(message.command, { isMaster: 1, helloOk: true });
      assert.equal(requestDatabase(message), 'admin');
    },
  },
];

describe('parseClientMessage', () => {
  for (const { name, bytes, check } of CASES) {
    it(`${name}: whole, byte by byte and split at every offset`, () => {
      for (const split of splits(bytes)) {
        const result = feed(parseClientMessage, split.chunks);
        assert.ok(result !== undefined, split.name);
        assert.equal(result.consumed, bytes.length, split.name);
        assert.deepStrictEqual(result.value.raw, bytes, split.name);
        check(result.value);
      }
    });

    it(`${name}: leaves pipelined bytes alone`, () => {
      const result = parseClientMessage(Buffer.concat([bytes, HELLO]));
      assert.equal(result?.consumed, bytes.length);
    });
  }

  it('unwraps a $query-wrapped legacy command', () => {
    const query = Buffer.from(BSON.serialize({ $query: { ismaster: 1 }, $readPreference: { mode: 'primaryPreferred' } }));
    const bytes = opQuery('admin.$cmd', query);
    const message = parseClientMessage(bytes)?.value;
    assert.equal(message?.op, 'query');
    if (message?.op !== 'query') return;
    assert.equal(message.commandName, 'ismaster');
    assert.deepStrictEqual(message.command, { ismaster: 1 });
  });

  const refusals: Array<[string, Buffer]> = [
    ['a length shorter than a header', hex('0f000000')],
    ['a negative length', hex('ffffffff')],
    ['a length past the opening limit', int32(MAX_OPENING_MESSAGE + 1)],
    ['OP_COMPRESSED (never negotiated)', withOpCode(HELLO, 2012)],
    ['OP_REPLY from a client', withOpCode(HELLO, OP_REPLY)],
    ['an unknown op code', withOpCode(HELLO, 1234)],
    ['unknown required flag bits', withFlags(HELLO, 1 << 4)],
    ['a bad checksum', flip(FIND_WITH_CHECKSUM, FIND_WITH_CHECKSUM.length - 1)],
    ['a checksum over changed bytes', flip(FIND_WITH_CHECKSUM, 30)],
    ['no body section', opMsg([kind1('documents', [{ x: 1 }])])],
    ['two body sections', opMsg([kind0({ ping: 1, $db: 'admin' }), kind0({ ping: 1, $db: 'admin' })])],
    ['an unknown section kind', opMsg([kind0({ ping: 1, $db: 'admin' }), Buffer.from([2])])],
    ['a body shorter than declared', truncateBody(HELLO)],
    ['a sequence size past the message', opMsg([kind0({ insert: 'c', $db: 'a' }), Buffer.concat([Buffer.from([1]), int32(500), Buffer.from('documents\0')])])],
    ['a sequence whose documents overrun it', opMsg([kind0({ insert: 'c', $db: 'a' }), Buffer.concat([Buffer.from([1]), int32(4 + 10 + 6), Buffer.from('documents\0'), hex('0c00000010')])])],
    ['an OP_QUERY without a terminated collection name', opQueryRaw(Buffer.from('admin.$cmd'))],
    ['an OP_QUERY with trailing bytes', fixLength(Buffer.concat([LEGACY_HELLO, hex('00')]))],
  ];
  for (const [name, bytes] of refusals) {
    it(`refuses ${name} with PROTOCOL`, () => {
      assert.throws(() => parseClientMessage(bytes), isProtocolError);
    });
  }

  it('waits for a header before judging the op code, and for the whole message', () => {
    assert.equal(parseClientMessage(HELLO.subarray(0, 15)), undefined);
    assert.equal(parseClientMessage(HELLO.subarray(0, HELLO.length - 1)), undefined);
  });
});

describe('reply builders', () => {
  it('encodeOpMsg frames one body section answering the request', () => {
    const bytes = encodeOpMsg(77, 1, { ok: 1 }, 2);
    assert.equal(bytes.readInt32LE(0), bytes.length);
    assert.equal(bytes.readInt32LE(4), 77);
    assert.equal(bytes.readInt32LE(8), 1);
    assert.equal(bytes.readInt32LE(12), OP_MSG);
    assert.equal(bytes.readUInt32LE(16), 2);
    assert.equal(bytes[20], 0);
    assert.deepStrictEqual(BSON.deserialize(bytes.subarray(21)), { ok: 1 });
    assert.deepStrictEqual(parseServerReply(bytes)?.value, { opCode: OP_MSG, requestID: 77, responseTo: 1, flags: 2, document: { ok: 1 } });
  });

  it('encodeOpReply frames an OP_REPLY with one document and cursor 0', () => {
    const bytes = encodeOpReply(78, 3, { ismaster: true, ok: 1 });
    assert.equal(bytes.readInt32LE(0), bytes.length);
    assert.equal(bytes.readInt32LE(8), 3);
    assert.equal(bytes.readInt32LE(12), OP_REPLY);
    assert.equal(bytes.readBigInt64LE(20), 0n);
    assert.equal(bytes.readInt32LE(32), 1);
    assert.deepStrictEqual(decodeDocument(bytes, 36), { ismaster: true, ok: 1 });
    assert.deepStrictEqual(parseServerReply(bytes)?.value.document, { ismaster: true, ok: 1 });
  });

  it('parseServerReply refuses client op codes as a backend PROTOCOL error', () => {
    assert.throws(
      () => parseServerReply(withOpCode(HELLO, OP_QUERY)),
      (err) => isProtocolError(err) && (err as { source: string }).source === 'backend',
    );
  });

  it('crc32c matches the standard check value', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  });
});

// --- builders for malformed inputs ---------------------------------------------

function int32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeInt32LE(value | 0);
  return out;
}

function fixLength(bytes: Buffer): Buffer {
  const out = Buffer.from(bytes);
  out.writeInt32LE(out.length, 0);
  return out;
}

function withOpCode(bytes: Buffer, opCode: number): Buffer {
  const out = Buffer.from(bytes);
  out.writeInt32LE(opCode, 12);
  return out;
}

function withFlags(bytes: Buffer, flags: number): Buffer {
  const out = Buffer.from(bytes);
  out.writeUInt32LE(flags, 16);
  return out;
}

function flip(bytes: Buffer, at: number): Buffer {
  const out = Buffer.from(bytes);
  out[at] = (out[at] as number) ^ 0x01;
  return out;
}

function kind0(doc: object): Buffer {
  return Buffer.concat([Buffer.from([0]), Buffer.from(BSON.serialize(doc))]);
}

function kind1(identifier: string, docs: object[]): Buffer {
  const body = Buffer.concat([Buffer.from(`${identifier}\0`), ...docs.map((doc) => Buffer.from(BSON.serialize(doc)))]);
  return Buffer.concat([Buffer.from([1]), int32(4 + body.length), body]);
}

function opMsg(sections: Buffer[], flags = 0): Buffer {
  const head = Buffer.alloc(20);
  head.writeInt32LE(1, 4);
  head.writeInt32LE(OP_MSG, 12);
  head.writeUInt32LE(flags, 16);
  return fixLength(Buffer.concat([head, ...sections]));
}

function opQueryRaw(rest: Buffer): Buffer {
  const head = Buffer.alloc(20);
  head.writeInt32LE(1, 4);
  head.writeInt32LE(OP_QUERY, 12);
  return fixLength(Buffer.concat([head, rest]));
}

function opQuery(collection: string, query: Buffer): Buffer {
  return opQueryRaw(Buffer.concat([Buffer.from(`${collection}\0`), int32(0), int32(-1), query]));
}

/** The body document claims more bytes than the message holds. */
function truncateBody(bytes: Buffer): Buffer {
  const out = Buffer.from(bytes);
  out.writeInt32LE(out.readInt32LE(21) + 1, 21);
  return out;
}
