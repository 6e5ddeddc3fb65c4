import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../../../src/config/load.ts';
import { makeVerifier, formatScramSecret } from '../../../../src/protocols/postgres/auth/scram.ts';
import { assertNamesField } from '../../config/helpers.ts';

const VERIFIER = formatScramSecret(makeVerifier('pw', Buffer.from('salt'), 4096));

function pgListener(extra: Record<string, unknown>): unknown {
  return { listeners: [{ protocol: 'postgres', port: 1, ...extra }] };
}

describe('postgres listener: auth', () => {
  it('absent by default (pass-through); defaults filled when present', () => {
    const plain = parseConfig(pgListener({}), '/').listeners[0] as { auth?: unknown };
    assert.equal(plain.auth, undefined);
    const config = parseConfig(pgListener({ auth: { users: { app: { password: 'pw' }, ro: { scramSecret: VERIFIER, backendPassword: 'b' } }, authQuery: { user: 'pgbouncer' } } }), '/');
    const auth = (config.listeners[0] as { auth: Record<string, unknown> }).auth;
    assert.equal(auth.method, 'scram-sha-256');
    assert.deepEqual(auth.authQuery, { user: 'pgbouncer', query: 'SELECT usename, passwd FROM pg_shadow WHERE usename = $1', cacheTtlMs: 10000 });
  });

  it('refuses a malformed verifier, a user with both secrets, an unknown method', () => {
    assertNamesField(() => parseConfig(pgListener({ auth: { users: { app: { scramSecret: 'SCRAM-SHA-256$x' } } } }), '/'), 'listeners.0.auth.users.app.scramSecret', /stored verifier/);
    assertNamesField(() => parseConfig(pgListener({ auth: { users: { app: { password: 'a', scramSecret: VERIFIER } } } }), '/'), 'listeners.0.auth.users.app');
    assertNamesField(() => parseConfig(pgListener({ auth: { method: 'trust', users: { app: { password: 'a' } } } }), '/'), 'listeners.0.auth.method');
  });

  it('check: cleartext needs TLS; some source of secrets is needed', () => {
    assertNamesField(() => parseConfig(pgListener({ auth: { method: 'password', users: { app: { password: 'a' } } } }), '/'), 'listeners.0.auth', /needs tls/);
    parseConfig(pgListener({ tls: { cert: 'c', key: 'k' }, auth: { method: 'password', users: { app: { password: 'a' } } } }), '/');
    assertNamesField(() => parseConfig(pgListener({ auth: {} }), '/'), 'listeners.0.auth', /no source of secrets/);
    parseConfig({ ...(pgListener({ auth: {} }) as object), resolver: { module: './r.ts' } }, '/');
  });
});
