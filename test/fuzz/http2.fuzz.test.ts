/**
 * The HTTP/2 side's own parsers: the h2c preface detector (which decides,
 * on the HTTP/1.1 port, whether a connection is HTTP/2) and grpc-timeout.
 * The preface detector agrees with a plain comparison for any bytes, cut
 * anywhere (fed as the session feeds it: what came so far, concatenated);
 * grpc-timeout accepts exactly the grammar (1-8 digits, one of HMSmun) and
 * never returns a negative, fractional or non-finite deadline.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseGrpcTimeout } from '../../src/protocols/http/h2/grpc.ts';
import { IS_H2, MAYBE_H2, NOT_H2, PREFACE, prefaceState } from '../../src/protocols/http/h2/preface.ts';
import { chunked, cuts, fuzz } from '../helpers/fuzz.ts';

/** Bytes near the preface: a prefix of it, then anything. */
const nearPreface = fc.tuple(fc.nat({ max: PREFACE.length }), fc.uint8Array({ maxLength: 40 })).map(([n, tail]) => Buffer.concat([PREFACE.subarray(0, n), Buffer.from(tail)]));
const anyBytes = fc.oneof(nearPreface, fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)));

function expected(buf: Buffer): number {
  const n = Math.min(buf.length, PREFACE.length);
  if (!buf.subarray(0, n).equals(PREFACE.subarray(0, n))) return NOT_H2;
  return n === PREFACE.length ? IS_H2 : MAYBE_H2;
}

describe('fuzz: HTTP/2 preface and grpc-timeout', () => {
  it('prefaceState agrees with a plain comparison, whole and fed in pieces', (t) => {
    fuzz(
      t,
      fc.property(anyBytes, cuts, (bytes, at) => {
        assert.equal(prefaceState(bytes), expected(bytes));
        // As the session sees it: each time, everything received so far, until it decides.
        let so = Buffer.alloc(0);
        for (const piece of chunked(bytes, at)) {
          so = Buffer.concat([so, piece]);
          const state = prefaceState(so);
          assert.equal(state, expected(so));
          if (state !== MAYBE_H2) break;
        }
      }),
    );
  });

  it('parseGrpcTimeout accepts exactly the grammar and yields whole, finite milliseconds', (t) => {
    const unit = fc.constantFrom('H', 'M', 'S', 'm', 'u', 'n');
    const valid = fc.tuple(fc.stringMatching(/^[0-9]{1,8}$/), unit).map(([d, u]) => d + u);
    const anyText = fc.oneof(valid, fc.string({ maxLength: 12 }), fc.tuple(fc.string({ maxLength: 10 }), unit).map(([a, b]) => a + b));
    fuzz(
      t,
      fc.property(anyText, (text) => {
        const ms = parseGrpcTimeout(text);
        const ok = /^[0-9]{1,8}[HMSmun]$/.test(text);
        assert.equal(ms !== undefined, ok, JSON.stringify(text));
        if (ms !== undefined) {
          assert.ok(Number.isSafeInteger(ms) && ms >= 0, String(ms));
          const mult = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 }[text.slice(-1) as 'H'];
          const exact = Number(text.slice(0, -1)) * mult;
          assert.ok(ms >= exact - 1e-9 && ms < exact + 1, `${text} -> ${ms}`);
        }
      }),
    );
  });
});
