/** The NATS opening: control lines, CONNECT and the tenant it names, the backend's INFO. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import { NatsError } from '../../../../src/protocols/nats/errors.ts';
import { MAX_CONTROL_LINE, backendInfoParser, controlLineParser, jwtClaims, parseConnect, tenantOf } from '../../../../src/protocols/nats/parse.ts';
import type { ControlLine } from '../../../../src/protocols/nats/parse.ts';

const b = (text: string): Buffer => Buffer.from(text);
const line = (text: string): ControlLine => controlLineParser(b(text))?.value as ControlLine;

function jwt(claims: object): string {
  return `eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.c2ln`;
}

describe('controlLineParser', () => {
  it('reads one line, CRLF or LF, and waits without one', () => {
    const done = controlLineParser(b('connect {"user":"a"}\r\nPING\r\n'));
    assert.equal(done?.value.op, 'CONNECT');
    assert.equal(done?.value.arg, '{"user":"a"}');
    assert.equal(done?.consumed, 22);
    assert.equal(controlLineParser(b('PING\n'))?.value.op, 'PING');
    assert.equal(controlLineParser(b('CONNECT {')), undefined);
  });

  it('refuses an over-long line with nats-server’s words', () => {
    assert.throws(() => controlLineParser(Buffer.alloc(MAX_CONTROL_LINE + 1, 0x61)), (err: unknown) => err instanceof NatsError && err.text === 'Maximum Control Line Exceeded');
  });
});

describe('parseConnect', () => {
  it('returns the JSON options', () => {
    assert.deepEqual(parseConnect(line('CONNECT {"user":"a","pass":"b","headers":true}\r\n')), { user: 'a', pass: 'b', headers: true });
  });

  it('refuses what nats-server refuses before CONNECT, with its words', () => {
    const text = (l: string): string => {
      try {
        parseConnect(line(l));
      } catch (err) {
        assert.ok(err instanceof NatsError);
        return `${err.kind} ${err.text}`;
      }
      return 'accepted';
    };
    assert.equal(text('PING\r\n'), 'FORBIDDEN Authorization Violation');
    assert.equal(text('SUB x 1\r\n'), 'FORBIDDEN Authorization Violation');
    assert.equal(text('CONNEC {}\r\n'), 'PROTOCOL Unknown Protocol Operation');
    assert.equal(text('CONNECT {bad\r\n'), 'PROTOCOL Unknown Protocol Operation');
    assert.equal(text('CONNECT [1]\r\n'), 'PROTOCOL Unknown Protocol Operation');
  });
});

describe('tenantOf', () => {
  it('routeBy user: the user field', () => {
    assert.equal(tenantOf({ user: 'alice' }, 'user', '.'), 'alice');
    assert.equal(tenantOf({ user: '' }, 'user', '.'), null);
    assert.equal(tenantOf({ user: 5 }, 'user', '.'), null);
    assert.equal(tenantOf({}, 'user', '.'), null);
  });

  it('routeBy token: the prefix before the separator', () => {
    assert.equal(tenantOf({ auth_token: 't1.secret.more' }, 'token', '.'), 't1');
    assert.equal(tenantOf({ auth_token: 't1::s' }, 'token', '::'), 't1');
    assert.equal(tenantOf({ auth_token: 'nosep' }, 'token', '.'), null);
    assert.equal(tenantOf({ auth_token: '.secret' }, 'token', '.'), null);
  });

  it('routeBy jwt: the name claim, else sub; not a JWT names nobody', () => {
    assert.equal(tenantOf({ jwt: jwt({ name: 'alice', sub: 'UABC' }) }, 'jwt', '.'), 'alice');
    assert.equal(tenantOf({ jwt: jwt({ sub: 'UABC' }) }, 'jwt', '.'), 'UABC');
    assert.equal(tenantOf({ jwt: 'a.b' }, 'jwt', '.'), null);
    assert.equal(tenantOf({ jwt: 'a.!!!.c' }, 'jwt', '.'), null);
    assert.equal(jwtClaims(`x.${Buffer.from('[1]').toString('base64url')}.y`), null);
  });
});

describe('backendInfoParser', () => {
  it('reads INFO {json}', () => {
    const done = backendInfoParser(b('INFO {"max_payload":1048576,"headers":true} \r\n'));
    assert.deepEqual(done?.value, { max_payload: 1048576, headers: true });
  });

  it('anything else first is a backend failure', () => {
    for (const bad of ['-ERR x\r\n', 'INFO nope\r\n', 'INFO []\r\n']) {
      assert.throws(() => backendInfoParser(b(bad)), (err: unknown) => err instanceof PolyproxyError && err.source === 'backend', bad);
    }
  });
});
