/**
 * Fuzzing the RESP opening parsers (issue 22): client commands built from
 * the RESP grammar (multibulk) or as inline words read back as the
 * arguments they were built from, fed in any pieces; any bytes end in a
 * command, a wait, or a PROTOCOL refusal — never another exception; backend
 * replies built as random RESP2/RESP3 trees are found whole, and no proper
 * prefix of one is mistaken for a reply.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PolyproxyError } from '../../src/core/errors.ts';
import { UNAUTHENTICATED_MAX_ARGS, UNAUTHENTICATED_MAX_BULK, commandParser, encodeCommand, replyParser } from '../../src/protocols/redis/resp.ts';
import type { Command } from '../../src/protocols/redis/resp.ts';
import { chunked, cuts, fuzz } from '../helpers/fuzz.ts';

type Outcome = { value: Command; consumed: number } | 'reject' | 'wait';

/** Feeds chunks into a growing buffer as ClientConnection does; the first result, refusal, or wait. */
function feed(chunks: readonly Buffer[]): Outcome {
  let buffered = Buffer.alloc(0);
  for (const chunk of chunks) {
    buffered = Buffer.concat([buffered, chunk]);
    try {
      const done = commandParser(buffered);
      if (done !== undefined) return done;
    } catch (err) {
      assert.ok(err instanceof PolyproxyError && err.kind === 'PROTOCOL', `unexpected ${String(err)}`);
      return 'reject';
    }
  }
  return 'wait';
}

const words = (outcome: Outcome): string[] | null | string => (typeof outcome === 'string' ? outcome : outcome.value === null ? null : outcome.value.map((a) => a.toString('latin1')));

const arg = fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a));
const plainWord = fc.stringMatching(/^[A-Za-z0-9_:.-]{1,20}$/);

describe('RESP client commands', () => {
  it('a multibulk command reads back as its arguments, whole or in pieces', (t) => {
    fuzz(
      t,
      fc.property(fc.array(arg, { minLength: 1, maxLength: UNAUTHENTICATED_MAX_ARGS }), fc.uint8Array({ maxLength: 10 }), cuts, (args, after, points) => {
        const bytes = encodeCommand(args);
        const outcome = feed(chunked(Buffer.concat([bytes, after]), points));
        if (typeof outcome === 'string') assert.fail(`complete command not read: ${outcome}`);
        assert.equal(outcome.consumed, bytes.length);
        assert.deepEqual(
          outcome.value?.map((a) => [...a]),
          args.map((a) => [...a]),
        );
      }),
    );
  });

  it('an inline command of plain words reads back as its words', (t) => {
    fuzz(
      t,
      fc.property(fc.array(plainWord, { minLength: 1, maxLength: UNAUTHENTICATED_MAX_ARGS }), fc.constantFrom(' ', '  ', '\t'), fc.constantFrom('\r\n', '\n'), cuts, (list, sep, end, points) => {
        const bytes = Buffer.from(list.join(sep) + end);
        assert.deepEqual(words(feed(chunked(bytes, points))), list);
      }),
    );
  });

  it('any bytes end in a command, a wait or a PROTOCOL refusal, the same however they are cut', (t) => {
    const noise = fc.oneof(
      fc.uint8Array({ maxLength: 80 }).map((a) => Buffer.from(a)),
      fc
        .tuple(fc.constantFrom('*', '$', '*1\r\n$', '*2\r\n$3\r\nGET\r\n$'), fc.oneof(fc.integer({ min: -3, max: 20 }), fc.constant(UNAUTHENTICATED_MAX_BULK + 1)), fc.constantFrom('\r\n', '\r', '\n', 'x\r\n'), fc.uint8Array({ maxLength: 30 }))
        .map(([head, n, end, tail]) => Buffer.concat([Buffer.from(`${head}${n}${end}`), Buffer.from(tail)])),
    );
    fuzz(
      t,
      fc.property(noise, cuts, (bytes, points) => {
        const whole = feed([bytes]);
        const pieces = feed(chunked(bytes, points));
        assert.deepEqual(words(pieces), words(whole));
        if (typeof whole !== 'string') assert.ok(whole.consumed <= bytes.length && whole.consumed > 0);
      }),
    );
  });
});

// --- backend replies -------------------------------------------------------------

const line = fc.stringMatching(/^[ -~]{0,12}$/);
/** A reply's bytes and whether it is an error (what replyParser must say). */
interface Built {
  readonly text: string;
  readonly error: boolean;
}
const ok = (text: string): Built => ({ text, error: false });
const leaf: fc.Arbitrary<Built> = fc.oneof(
  line.map((s) => ok(`+${s}\r\n`)),
  line.map((s) => ({ text: `-ERR ${s}\r\n`, error: true })),
  fc.integer().map((n) => ok(`:${n}\r\n`)),
  fc.constantFrom('_\r\n', '#t\r\n', '#f\r\n', ',3.14\r\n', '(12345678901234567890\r\n', '$-1\r\n', '*-1\r\n').map(ok),
  fc.string({ maxLength: 12 }).map((s) => ok(`$${Buffer.byteLength(s)}\r\n${s}\r\n`)),
  fc.string({ maxLength: 12 }).map((s) => ({ text: `!${Buffer.byteLength(s)}\r\n${s}\r\n`, error: true })),
  fc.string({ maxLength: 12 }).map((s) => ok(`=${Buffer.byteLength(s) + 4}\r\ntxt:${s}\r\n`)),
);
const { reply } = fc.letrec<{ reply: Built }>((tie) => ({
  reply: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.tuple(fc.constantFrom('*', '~', '>'), fc.array(tie('reply'), { maxLength: 4 })).map(([type, items]) => ok(`${type}${items.length}\r\n${items.map((i) => i.text).join('')}`)),
    fc.array(fc.tuple(tie('reply'), tie('reply')), { maxLength: 3 }).map((pairs) => ok(`%${pairs.length}\r\n${pairs.map(([k, v]) => k.text + v.text).join('')}`)),
    // An attribute annotates the reply that follows it: that reply says whether it is an error.
    fc
      .tuple(fc.array(fc.tuple(leaf, leaf), { minLength: 1, maxLength: 2 }), tie('reply'))
      .map(([pairs, value]) => ({ text: `|${pairs.length}\r\n${pairs.map(([k, v]) => k.text + v.text).join('')}${value.text}`, error: value.error })),
  ),
}));

describe('RESP backend replies', () => {
  it('a reply tree is found whole, and no proper prefix is taken for a reply', (t) => {
    fuzz(
      t,
      fc.property(reply, ({ text, error }) => {
        const bytes = Buffer.from(`${text}+NEXT\r\n`);
        const size = Buffer.byteLength(text);
        const done = replyParser(bytes);
        assert.equal(done?.consumed, size);
        for (let cut = 0; cut < size; cut++) assert.equal(replyParser(bytes.subarray(0, cut)), undefined);
        assert.equal(done?.value.error, error);
      }),
      { smoke: 100 },
    );
  });

  it('any bytes end in a reply, a wait or a backend failure', (t) => {
    fuzz(
      t,
      fc.property(fc.uint8Array({ maxLength: 60 }), (raw) => {
        try {
          const done = replyParser(Buffer.from(raw));
          if (done !== undefined) assert.ok(done.consumed > 0 && done.consumed <= raw.length);
        } catch (err) {
          assert.ok(err instanceof PolyproxyError && err.source === 'backend', String(err));
        }
      }),
    );
  });
});
