import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RouteDecision } from '../../../../../src/core/router.ts';
import { cancelKeyOf, greeting, negotiation, prepareListenerAuth, secretLookupFor } from '../../../../../src/protocols/postgres/auth/listener-auth.ts';
import { parseStartupPacket } from '../../../../../src/protocols/postgres/parse.ts';
import { formatScramSecret, makeVerifier } from '../../../../../src/protocols/postgres/auth/scram.ts';

const VERIFIER = formatScramSecret(makeVerifier('pw', Buffer.from('salt'), 4096));

function decision(credentials?: Record<string, { password?: string; scramSecret?: string }>): RouteDecision {
  const route = credentials === undefined ? { endpoint: '127.0.0.1:5432' } : { endpoint: '127.0.0.1:5432', credentials };
  return { entry: { resourceId: 'db', route, answer: route, source: { name: 'test', resolver: { resolve: () => null } }, endpoints: [] }, candidates: [], cacheHit: false } as unknown as RouteDecision;
}

test('secrets are looked up in the route first, then the listener\'s users; unknown everywhere is null', async () => {
  const auth = prepareListenerAuth({ method: 'scram-sha-256', users: { app: { password: 'from config' }, other: { scramSecret: VERIFIER } } }, 'pg', 1000);
  const lookup = secretLookupFor(auth, decision({ app: { password: 'from route' } }), 'db');
  assert.deepEqual(await lookup('app'), { secret: { kind: 'password', password: 'from route' } });
  assert.equal((await lookup('other'))?.secret.kind, 'scram');
  assert.equal(await lookup('nobody'), null);
  assert.deepEqual(await secretLookupFor(auth, decision(), 'db')('app'), { secret: { kind: 'password', password: 'from config' } });
});

test('the fake-salt key is the same for the same config and differs between listeners and configs', () => {
  const config = { method: 'scram-sha-256' as const, users: { app: { password: 'x' } } };
  assert.equal(prepareListenerAuth(config, 'pg', 1).settings.mockKey, prepareListenerAuth(config, 'pg', 1).settings.mockKey);
  assert.notEqual(prepareListenerAuth(config, 'pg', 1).settings.mockKey, prepareListenerAuth(config, 'pg2', 1).settings.mockKey);
  assert.notEqual(prepareListenerAuth(config, 'pg', 1).settings.mockKey, prepareListenerAuth({ ...config, users: { app: { password: 'y' } } }, 'pg', 1).settings.mockKey);
});

test('NegotiateProtocolVersion for a 3.2 client or _pq_ options, nothing for plain 3.0', () => {
  assert.equal(negotiation(0x00030000, new Map([['user', 'u']])), null);
  const answer = negotiation(0x00030002, new Map([['user', 'u'], ['_pq_.compression', 'on']]));
  assert.ok(answer !== null);
  assert.equal(answer.toString('latin1', 0, 1), 'v');
  assert.equal(answer.readUInt32BE(5), 0, 'newest minor version: 0');
  assert.equal(answer.readUInt32BE(9), 1);
  assert.equal(answer.toString('latin1', 13), '_pq_.compression\0');
});

test('the greeting: AuthenticationOk, parameters in order, BackendKeyData, ReadyForQuery, then leftover; the cancel key matches a CancelRequest\'s', () => {
  const result = { parameters: new Map([['server_version', '15.4'], ['TimeZone', 'UTC']]), processId: 0x01020304, secretKey: Buffer.from([9, 8, 7, 6]), leftover: Buffer.from('N\0\0\0\x04') };
  const bytes = greeting(result);
  const types: string[] = [];
  let at = 0;
  while (at < bytes.length) {
    types.push(String.fromCharCode(bytes[at] as number));
    at += 1 + bytes.readUInt32BE(at + 1);
  }
  assert.deepEqual(types, ['R', 'S', 'S', 'K', 'Z', 'N']);
  const cancel = Buffer.alloc(16);
  cancel.writeUInt32BE(16, 0);
  cancel.writeUInt32BE(80877102, 4);
  cancel.writeUInt32BE(0x01020304, 8);
  Buffer.from([9, 8, 7, 6]).copy(cancel, 12);
  const parsed = parseStartupPacket(cancel);
  assert.ok(parsed?.value.type === 'cancel');
  assert.equal(parsed.value.key, cancelKeyOf(result));
});
