/**
 * Fuzzing the SCRAM and SASL parsers of proxy-side authentication
 * (issue 24): any text is either parsed or refused with ScramError (never
 * another exception), valid messages built from random parts parse back
 * to their parts, and the server side of the exchange answers arbitrary
 * client bytes only with PostgreSQL's refusals.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PolyproxyError } from '../../src/core/errors.ts';
import { authenticateClient } from '../../src/protocols/postgres/auth/client-auth.ts';
import { parseFields, parseMechanisms, parsePasswordMessage, parseSaslInitialResponse } from '../../src/protocols/postgres/auth/messages.ts';
import { ScramError, formatScramSecret, parseClientFinal, parseClientFirst, parseScramSecret, parseServerFinal, parseServerFirst, saslPrep } from '../../src/protocols/postgres/auth/scram.ts';
import { tableLookup } from '../../src/protocols/postgres/auth/secrets.ts';
import { ScriptedClient, p } from '../unit/protocols/postgres/auth/client-io.ts';
import { fuzz, fuzzAsync, text } from '../helpers/fuzz.ts';

const scramText = fc.oneof(
  text(0, 80),
  fc.array(fc.oneof(fc.constantFrom('n', 'y', 'p', 'r', 's', 'i', 'c', 'v', 'e', 'm', 'a', '=', ',', 'biws', 'n,,', 'p=tls,'), fc.base64String({ maxLength: 48 }), text(0, 12)), { maxLength: 12 }).map((parts) => parts.join('')),
);

function onlyScramErrors(parse: (s: string) => unknown): (s: string) => void {
  return (s) => {
    try {
      parse(s);
    } catch (err) {
      if (!(err instanceof ScramError)) throw err;
    }
  };
}

const nonce = fc.stringMatching(/^[\x21-\x2b\x2d-\x7e]{1,40}$/);
const key = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b));

describe('SCRAM messages', () => {
  it('any text: parsed, or refused with ScramError', (t) => {
    fuzz(
      t,
      fc.property(scramText, (s) => {
        onlyScramErrors(parseClientFirst)(s);
        onlyScramErrors(parseClientFinal)(s);
        onlyScramErrors(parseServerFirst)(s);
        onlyScramErrors(parseServerFinal)(s);
        const secret = parseScramSecret(s);
        if (secret !== undefined) assert.equal(formatScramSecret(secret).length > 0, true);
        assert.equal(typeof saslPrep(s), 'string');
      }),
    );
  });

  it('valid messages parse back to their parts', (t) => {
    fuzz(
      t,
      fc.property(nonce, nonce, fc.uint8Array({ minLength: 1, maxLength: 32 }), fc.integer({ min: 1, max: 100000 }), key, fc.constantFrom('n', 'y'), (cn, sn, salt, iterations, proof, flag) => {
        const first = parseClientFirst(`${flag},,n=,r=${cn}`);
        assert.equal(first.nonce, cn);
        assert.equal(first.bare, `n=,r=${cn}`);
        const serverFirst = parseServerFirst(`r=${cn}${sn},s=${Buffer.from(salt).toString('base64')},i=${iterations}`);
        assert.deepEqual(serverFirst, { nonce: cn + sn, salt: Buffer.from(salt), iterations });
        const final = parseClientFinal(`c=biws,r=${cn}${sn},p=${proof.toString('base64')}`);
        assert.deepEqual(final.proof, proof);
        assert.equal(final.withoutProof, `c=biws,r=${cn}${sn}`);
        const secret = { iterations, salt: Buffer.from(salt), storedKey: proof, serverKey: proof };
        assert.deepEqual(parseScramSecret(formatScramSecret(secret)), secret);
      }),
    );
  });
});

describe('SASL and password messages', () => {
  it('any bytes: parsed or undefined, never an exception', (t) => {
    fuzz(
      t,
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const b = Buffer.from(bytes);
        parseSaslInitialResponse(b);
        parseMechanisms(b);
        parseFields(b);
        parsePasswordMessage(b);
      }),
    );
  });

  it('the server side answers arbitrary client messages only with PostgreSQL refusals', async (t) => {
    await fuzzAsync(
      t,
      fc.asyncProperty(fc.array(fc.oneof(fc.uint8Array({ maxLength: 80 }).map((b) => p(Buffer.from(b))), fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b))), { maxLength: 3 }), fc.constantFrom('scram-sha-256', 'md5') as fc.Arbitrary<'scram-sha-256' | 'md5'>, async (answers, method) => {
        let i = 0;
        const io = new ScriptedClient((msg, client) => {
          if (msg.type !== 'R') return;
          const answer = answers[i++];
          if (answer !== undefined) client.send(answer);
          // What did not make a whole message, or ran out: the client leaves.
          client.hangUp();
        });
        const users = tableLookup(new Map([['u', { secret: { kind: 'password', password: 'pw' } }]]));
        try {
          await authenticateClient(io, { params: new Map([['user', 'u']]) }, { method, mockKey: 'k' }, users);
          assert.fail('random bytes authenticated');
        } catch (err) {
          if (!(err instanceof PolyproxyError)) throw err;
        }
      }),
      { smoke: 100 },
    );
  });
});
