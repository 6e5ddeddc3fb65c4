/**
 * Fuzzing the NATS opening (issue 22): control lines fed in any pieces read
 * the same as whole; a CONNECT built from random JSON options names the
 * tenant the reference says for each routeBy (user, token prefix, JWT name
 * or sub); any bytes end in a line, a wait, or a NatsError with one of the
 * texts nats-server uses — never another exception; the backend's INFO
 * parser fails only as a backend failure.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PolyproxyError } from '../../src/core/errors.ts';
import { NatsError } from '../../src/protocols/nats/errors.ts';
import { backendInfoParser, controlLineParser, parseConnect, tenantOf } from '../../src/protocols/nats/parse.ts';
import type { ControlLine } from '../../src/protocols/nats/parse.ts';
import { chunked, cuts, fuzz, text } from '../helpers/fuzz.ts';

const NATS_TEXTS = new Set(['Authorization Violation', 'Unknown Protocol Operation', 'Maximum Control Line Exceeded']);

type Outcome = { value: ControlLine; consumed: number } | 'reject' | 'wait';

function feed(chunks: readonly Buffer[]): Outcome {
  let buffered = Buffer.alloc(0);
  for (const chunk of chunks) {
    buffered = Buffer.concat([buffered, chunk]);
    try {
      const done = controlLineParser(buffered);
      if (done !== undefined) return done;
    } catch (err) {
      assert.ok(err instanceof NatsError && NATS_TEXTS.has(err.text), String(err));
      return 'reject';
    }
  }
  return 'wait';
}

const plain = (o: Outcome): unknown => (typeof o === 'string' ? o : { op: o.value.op, arg: o.value.arg, raw: [...o.value.raw], consumed: o.consumed });

/** What each routeBy must find, written from the README's definitions. */
function reference(options: Record<string, unknown>, routeBy: 'user' | 'token' | 'jwt', separator: string): string | null {
  const str = (v: unknown): string | null => (typeof v === 'string' && v.length > 0 ? v : null);
  if (routeBy === 'user') return str(options.user);
  if (routeBy === 'token') {
    const token = str(options.auth_token);
    if (token === null) return null;
    const at = token.indexOf(separator);
    return at > 0 ? token.slice(0, at) : null;
  }
  const jwt = str(options.jwt);
  const middle = jwt?.split('.');
  if (middle?.length !== 3) return null;
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(middle[1] as string, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) return null;
  return str((claims as Record<string, unknown>).name) ?? str((claims as Record<string, unknown>).sub);
}

const value = fc.oneof(text(0, 12), fc.integer(), fc.boolean(), fc.constant(null), fc.constant(''));
const jwtValue = fc
  .record({ name: value, sub: value }, { requiredKeys: [] })
  .map((claims) => `eyJhbGciOiJlZDI1NTE5In0.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`);
const options = fc.record(
  { user: value, pass: value, auth_token: fc.oneof(value, fc.tuple(text(0, 6, '.:'), fc.constantFrom('.', ':'), text(0, 6)).map(([a, s, b]) => a + s + b)), jwt: fc.oneof(value, jwtValue), verbose: fc.boolean(), headers: fc.boolean() },
  { requiredKeys: [] },
);

describe('NATS opening', () => {
  it('CONNECT names the tenant the reference says, for every routeBy, however the line is cut', (t) => {
    fuzz(
      t,
      fc.property(options, fc.constantFrom('user', 'token', 'jwt') as fc.Arbitrary<'user' | 'token' | 'jwt'>, fc.constantFrom('.', ':'), fc.constantFrom('CONNECT', 'connect', 'Connect'), cuts, (opts, routeBy, sep, op, points) => {
        const bytes = Buffer.from(`${op} ${JSON.stringify(opts)}\r\nPING\r\n`);
        const outcome = feed(chunked(bytes, points));
        if (typeof outcome === 'string') assert.fail(`CONNECT not read: ${outcome}`);
        assert.equal(outcome.consumed, bytes.length - 6);
        const connect = parseConnect(outcome.value);
        assert.equal(tenantOf(connect, routeBy, sep), reference(opts, routeBy, sep));
      }),
    );
  });

  it('any bytes end in a line, a wait or a nats-server refusal, the same however they are cut', (t) => {
    const noise = fc.oneof(
      fc.uint8Array({ maxLength: 100 }).map((a) => Buffer.from(a)),
      fc.tuple(fc.constantFrom('CONNECT ', 'PING', 'SUB ', 'CONN ', 'connect', ''), text(0, 30), fc.constantFrom('\r\n', '\n', '')).map(([a, b, c]) => Buffer.from(a + b + c)),
    );
    fuzz(
      t,
      fc.property(noise, cuts, (bytes, points) => {
        const whole = feed([bytes]);
        assert.deepEqual(plain(feed(chunked(bytes, points))), plain(whole));
        if (typeof whole === 'string') return;
        try {
          const connect = parseConnect(whole.value);
          assert.equal(typeof connect, 'object');
        } catch (err) {
          assert.ok(err instanceof NatsError && NATS_TEXTS.has(err.text), String(err));
        }
      }),
    );
  });

  it("the backend's INFO parser fails only as a backend failure", (t) => {
    fuzz(
      t,
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 80 }).map((a) => Buffer.from(a)), text(0, 40).map((s) => Buffer.from(`INFO ${s}\r\n`))), (bytes) => {
        try {
          backendInfoParser(bytes);
        } catch (err) {
          assert.ok(err instanceof PolyproxyError && err.source === 'backend', String(err));
        }
      }),
    );
  });
});
