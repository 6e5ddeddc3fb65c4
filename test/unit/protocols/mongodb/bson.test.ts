/**
 * The proxy's BSON codec against the driver's: types the proxy does not
 * interpret survive a round trip byte for byte, and malformed documents fail
 * with PROTOCOL. (Generated documents: test/fuzz/mongodb.fuzz.test.ts.)
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BSON } from 'mongodb';
import { Double, MAX_DEPTH, RawBsonValue, decodeDocument, encodeDocument, firstKey } from '../../../../src/protocols/mongodb/bson.ts';
import type { BsonDocument } from '../../../../src/protocols/mongodb/bson.ts';
import { hex, isProtocolError } from './helpers.ts';

describe('BSON codec against the driver', () => {
  it('keeps types it does not interpret verbatim (regex, code, symbol, decimal128, min/max key, undefined, DBPointer)', () => {
    const theirs = Buffer.from(
      BSON.serialize(
        {
          regex: new BSON.BSONRegExp('^a.*', 'i'),
          code: new BSON.Code('function () {}'),
          scoped: new BSON.Code('x', { x: 1 }),
          symbol: new BSON.BSONSymbol('sym'),
          decimal: BSON.Decimal128.fromString('1.5'),
          min: new BSON.MinKey(),
          max: new BSON.MaxKey(),
          undef: undefined,
          pointer: new BSON.DBRef('c', new BSON.ObjectId()),
        },
        { ignoreUndefined: false },
      ),
    );
    const doc = decodeDocument(theirs);
    assert.ok(doc.regex instanceof RawBsonValue && doc.regex.type === 0x0b);
    assert.ok(doc.decimal instanceof RawBsonValue && doc.decimal.bytes.length === 16);
    assert.ok(encodeDocument(doc).equals(theirs));
  });

  it('writes Double as a double even when integral (mongod\'s ok: 1.0)', () => {
    const bytes = encodeDocument({ ok: new Double(1) });
    assert.equal(bytes[4], 0x01);
    assert.deepStrictEqual(BSON.deserialize(bytes, { promoteValues: false }).ok, new BSON.Double(1));
  });

  it('decodes a __proto__ key as data, not as a prototype', () => {
    const bytes = hex('1c000000 | 03 5f5f70726f746f5f5f00 | 0c000000 106100 01000000 00 | 00');
    const doc = decodeDocument(bytes);
    assert.equal(Object.getPrototypeOf(doc), Object.prototype);
    assert.deepStrictEqual(Object.keys(doc), ['__proto__']);
    assert.ok(encodeDocument(doc).equals(bytes));
  });

  it('firstKey names the first element (a command), whatever JS key order would say', () => {
    const bytes = hex('13000000 | 10 6200 01000000 | 10 3100 02000000 | 00');
    assert.equal(firstKey(bytes), 'b');
    assert.deepStrictEqual(Object.keys(decodeDocument(bytes)), ['1', 'b']);
    assert.equal(firstKey(hex('05000000 00')), undefined);
  });
});

describe('BSON refusals', () => {
  const nested = (depth: number): Buffer => {
    let doc: BsonDocument = {};
    for (let i = 0; i < depth; i++) doc = { a: doc };
    return Buffer.from(BSON.serialize(doc, { checkKeys: false }));
  };
  const cases: Array<[string, Buffer]> = [
    ['fewer than 5 bytes', hex('0500')],
    ['a length below 5', hex('04000000 00')],
    ['a length past the buffer', hex('06000000 00')],
    ['a length short of the buffer', hex('05000000 00 00')],
    ['no terminating NUL', hex('05000000 01')],
    ['an unterminated element name', hex('08000000 10 616263')],
    ['an int32 cut short', hex('0a000000 10 6100 0100 00')],
    ['a string length of 0', hex('0d000000 02 6100 00000000 00 00')],
    ['a string length past its document', hex('0e000000 02 6100 ff000000 6100 00')],
    ['an unterminated string', hex('0e000000 02 6100 02000000 6161 00')],
    ['a boolean byte of 2', hex('09000000 08 6100 02 00')],
    ['a negative binary length', hex('0e000000 05 6100 ffffffff 00 00')],
    ['an unknown element type', hex('08000000 14 6100 00')],
    ['an embedded document overrunning its parent', hex('0d000000 03 6100 0a000000 00 00')],
    ['code with scope whose parts do not add up', hex('1b000000 0f 6100 12000000 02000000 7800 05000000 00 0000 00')],
    [`nesting deeper than ${MAX_DEPTH}`, nested(MAX_DEPTH + 2)],
  ];
  for (const [name, bytes] of cases) {
    it(`refuses ${name} with PROTOCOL`, () => {
      assert.throws(() => decodeDocument(bytes), isProtocolError);
    });
  }

  it(`accepts nesting up to ${MAX_DEPTH}`, () => {
    assert.doesNotThrow(() => decodeDocument(nested(MAX_DEPTH)));
  });
});
