/**
 * Fuzzing the SSRF guard's IP literal parser (src/core/ssrf-guard.ts): it
 * agrees with node's isIP on what is an IP literal, never throws, refuses
 * whatever is not one, and classifies an IPv4 address like each IPv6 form
 * embedding it (IPv4-mapped, hex, NAT64), so no spelling of an internal
 * address slips past the guard.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import fc from 'fast-check';
import { SsrfGuard, classifyAddress } from '../../src/core/ssrf-guard.ts';
import { fuzz, text } from '../helpers/fuzz.ts';

const strict = (allowBackends: readonly string[] = []): SsrfGuard => new SsrfGuard({ allowPrivateBackends: false, allowBackends });

describe('SSRF guard address parsing', () => {
  const guard = strict();

  it('classifyAddress/checkAddress never throw; anything node does not call an IP gets a reason', (t) => {
    const ipish = fc.array(fc.constantFrom(...'0123456789abcdefABCDEFx:.%/ -'), { maxLength: 48 }).map((chars) => chars.join(''));
    fuzz(
      t,
      fc.property(fc.oneof(text(0, 40), ipish), (s) => {
        const name = classifyAddress(s);
        const reason = guard.checkAddress(s);
        assert.ok(name === null || typeof name === 'string');
        if (isIP(s) === 0) {
          assert.equal(name, 'invalid');
          assert.equal(typeof reason, 'string');
        }
        assert.equal(reason === null, name === null);
      }),
    );
  });

  it('agrees with node on what is an IP literal', (t) => {
    fuzz(
      t,
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (ip) => {
        assert.equal(isIP(ip) === 0, classifyAddress(ip) === 'invalid', ip);
        assert.equal(isIP(ip.toUpperCase()) === 0, classifyAddress(ip.toUpperCase()) === 'invalid', ip);
      }),
    );
  });

  it('classifies every a.b.c.d like ::ffff:a.b.c.d, its hex form and 64:ff9b::a.b.c.d', (t) => {
    const loopbackAllowed = strict(['127.0.0.0/8']);
    fuzz(
      t,
      fc.property(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255), (a, b, c, d) => {
        const ip = `${a}.${b}.${c}.${d}`;
        const hex = `::ffff:${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
        const expected = classifyAddress(ip);
        assert.notEqual(expected, 'invalid');
        assert.equal(classifyAddress(`::ffff:${ip}`), expected, ip);
        assert.equal(classifyAddress(hex), expected, hex);
        assert.equal(classifyAddress(`64:ff9b::${ip}`), expected, `64:ff9b::${ip}`);
        assert.equal(guard.checkAddress(ip) === null, guard.checkAddress(`::ffff:${ip}`) === null, ip);
        assert.equal(loopbackAllowed.checkAddress(ip) === null, loopbackAllowed.checkAddress(hex) === null, hex);
      }),
    );
  });
});
