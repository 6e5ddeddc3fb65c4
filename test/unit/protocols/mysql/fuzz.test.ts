/**
 * Property tests: whatever bytes arrive, the MySQL parsers fail only with
 * PolyproxyError('PROTOCOL'), and the USE scanner never throws.
 * Not tied to one src file (packets.ts and commands.ts together), so it keeps its own name.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import { UseScanner, changeUserDatabase } from '../../../../src/protocols/mysql/commands.ts';
import { packetParser, parseErr, parseGreeting, parseHandshakeResponse } from '../../../../src/protocols/mysql/packets.ts';

const RUNS = 1000;

function onlyProtocolErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof PolyproxyError && err.kind === 'PROTOCOL', `unexpected ${String(err)}`);
  }
}

const bytes = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));
/** Mostly-valid prefixes: PROTOCOL_41 set, so the parser goes deeper. */
const responseLike = fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.uint8Array({ maxLength: 200 })).map(([caps, rest]) => {
  const head = Buffer.alloc(32);
  head.writeUInt32LE((caps | 0x200) >>> 0, 0);
  return Buffer.concat([head, Buffer.from(rest)]);
});

describe('MySQL parsers on arbitrary bytes', () => {
  it('parseHandshakeResponse', () => {
    fc.assert(fc.property(fc.oneof(bytes, responseLike), (b) => onlyProtocolErrors(() => parseHandshakeResponse(b))), { numRuns: RUNS });
  });
  it('parseGreeting', () => {
    fc.assert(fc.property(fc.oneof(bytes, bytes.map((b) => Buffer.concat([Buffer.from([10]), b]))), (b) => onlyProtocolErrors(() => parseGreeting(b))), { numRuns: RUNS });
  });
  it('packetParser and parseErr', () => {
    const parse = packetParser(64);
    fc.assert(
      fc.property(bytes, (b) => {
        onlyProtocolErrors(() => {
          const done = parse(b);
          if (done !== undefined) assert.ok(done.consumed <= b.length);
        });
        onlyProtocolErrors(() => parseErr(Buffer.concat([Buffer.from([0xff]), b])));
      }),
      { numRuns: RUNS },
    );
  });
  it('UseScanner and COM_CHANGE_USER never throw', () => {
    fc.assert(
      fc.property(bytes, fc.nat(), fc.integer({ min: 0, max: 0xffffffff }), (b, cut, caps) => {
        const s = new UseScanner();
        const at = cut % (b.length + 1);
        s.feed(b, 0, at);
        s.feed(b, at, b.length);
        s.finish();
        changeUserDatabase(Buffer.concat([Buffer.from([0x11]), b]), caps);
      }),
      { numRuns: RUNS },
    );
  });
});
