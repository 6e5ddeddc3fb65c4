/**
 * Fuzzing the pool's framing (src/protocols/postgres/pool/framing.ts): any
 * stream of well-formed messages, cut anywhere, with any per-type choice of
 * streamed (PASS) or collected (WHOLE), comes out as the same messages in
 * the same order, the reader at a boundary at the end; any header with an
 * impossible length is refused with FramingError, never misread. And the
 * LISTEN guard agrees with a reference written from PostgreSQL's lexer rules.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FramingError, MessageReader, PASS, WHOLE } from '../../src/protocols/postgres/pool/framing.ts';
import type { MessageOwner } from '../../src/protocols/postgres/pool/framing.ts';
import { startsWithListen } from '../../src/protocols/postgres/pool/listen-guard.ts';
import { chunked, cuts, fuzz } from '../helpers/fuzz.ts';

const messageArb = fc.record({ type: fc.integer({ min: 0x20, max: 0x7e }), body: fc.uint8Array({ maxLength: 300 }) });

function encode(messages: ReadonlyArray<{ type: number; body: Uint8Array }>): Buffer {
  return Buffer.concat(
    messages.map((m) => {
      const out = Buffer.alloc(5 + m.body.length);
      out[0] = m.type;
      out.writeUInt32BE(4 + m.body.length, 1);
      Buffer.from(m.body).copy(out, 5);
      return out;
    }),
  );
}

describe('postgres pool framing (fuzz)', () => {
  it('any message stream, any cuts, any PASS/WHOLE choice: the same messages out', (t) => {
    fuzz(
      t,
      fc.property(fc.array(messageArb, { maxLength: 20 }), cuts, fc.func(fc.boolean()), (messages, points, wholeFor) => {
        const stream = encode(messages);
        const out: Array<{ type: number; bytes: Buffer }> = [];
        let pass: Buffer[] = [];
        const owner: MessageOwner = {
          messageStart: (type) => (wholeFor(type) ? WHOLE : PASS),
          messageBytes: (bytes, start, end) => pass.push(Buffer.from(bytes.subarray(start, end))),
          messageEnd: (type) => {
            const all = Buffer.concat(pass);
            pass = [];
            out.push({ type, bytes: all.subarray(5) });
          },
          messageWhole: (type, body, start, end) => out.push({ type, bytes: Buffer.from(body.subarray(start, end)) }),
        };
        const reader = new MessageReader(owner, undefined, 16);
        for (const chunk of chunked(stream, points)) reader.push(chunk, 0, chunk.length);
        assert.equal(reader.atBoundary, true);
        assert.deepEqual(
          out.map((m) => [m.type, m.bytes.toString('hex')]),
          messages.map((m) => [m.type, Buffer.from(m.body).toString('hex')]),
        );
      }),
    );
  });

  it('an impossible length is refused wherever the header is cut', (t) => {
    fuzz(
      t,
      fc.property(fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0x40000000, max: 0xffffffff })), fc.integer({ min: 1, max: 4 }), (length, cut) => {
        const header = Buffer.alloc(5);
        header[0] = 0x51;
        header.writeUInt32BE(length, 1);
        const owner: MessageOwner = { messageStart: () => PASS, messageBytes: () => {}, messageEnd: () => {}, messageWhole: () => {} };
        const reader = new MessageReader(owner);
        assert.throws(() => {
          reader.push(header, 0, cut);
          reader.push(header, cut, 5);
        }, FramingError);
      }),
    );
  });

  it('the LISTEN guard agrees with a reference', (t) => {
    const piece = fc.constantFrom(' ', '\n', '\t', '--c\n', '/* x */', '/*/**/*/', '(', 'listen', 'LISTEN', 'Listen', 'listener', 'select', ';', '"', 'x');
    fuzz(
      t,
      fc.property(fc.array(piece, { maxLength: 8 }), (pieces) => {
        const sql = pieces.join('');
        // Reference: strip leading blanks, parens and (nested) comments, then a whole-word LISTEN.
        let rest = sql;
        for (;;) {
          const trimmed = rest.replace(/^[\s(]+/, '');
          if (trimmed.startsWith('--')) {
            const nl = trimmed.indexOf('\n');
            rest = nl < 0 ? '' : trimmed.slice(nl + 1);
            continue;
          }
          if (trimmed.startsWith('/*')) {
            let depth = 0;
            let i = 0;
            do {
              if (trimmed.startsWith('/*', i)) {
                depth++;
                i += 2;
              } else if (trimmed.startsWith('*/', i)) {
                depth--;
                i += 2;
              } else i++;
            } while (depth > 0 && i < trimmed.length);
            rest = trimmed.slice(i);
            continue;
          }
          rest = trimmed;
          break;
        }
        const expected = /^listen(?:$|[\s";\-/])/i.test(rest);
        const buf = Buffer.from(sql);
        assert.equal(startsWithListen(buf, 0, buf.length), expected, JSON.stringify(sql));
      }),
    );
  });
});
