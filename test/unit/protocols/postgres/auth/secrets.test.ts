import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatScramSecret, makeVerifier, md5Secret } from '../../../../../src/protocols/postgres/auth/scram.ts';
import { chainLookups, mockSalt, parseStoredSecret, tableLookup, userEntry, verifierOfPassword } from '../../../../../src/protocols/postgres/auth/secrets.ts';

test('stored secrets: a SCRAM verifier, an md5 secret, else a plain password', () => {
  const v = makeVerifier('pw', Buffer.from('salt'), 4096);
  assert.deepEqual(parseStoredSecret(formatScramSecret(v)), { kind: 'scram', verifier: v });
  assert.deepEqual(parseStoredSecret(md5Secret('pw', 'u')), { kind: 'md5', hash: md5Secret('pw', 'u') });
  assert.deepEqual(parseStoredSecret('md5 but not a hash'), { kind: 'password', password: 'md5 but not a hash' });
  assert.deepEqual(parseStoredSecret('SCRAM-SHA-256$broken'), { kind: 'password', password: 'SCRAM-SHA-256$broken' });
});

test('configured users: password or verifier, backendPassword kept; an invalid verifier is no entry', () => {
  assert.deepEqual(userEntry({ password: 'pw', backendPassword: 'b' }), { secret: { kind: 'password', password: 'pw' }, backendPassword: 'b' });
  assert.equal(userEntry({ scramSecret: 'nope' }), undefined);
  assert.equal(userEntry({}), undefined);
});

test('lookups chain in order; the first that knows the user answers', async () => {
  const a = tableLookup(new Map([['x', { secret: { kind: 'password', password: 'a' } }]]));
  const b = tableLookup(new Map([['x', { secret: { kind: 'password', password: 'b' } }], ['y', { secret: { kind: 'password', password: 'b' } }]]));
  const chain = chainLookups([a, b]);
  assert.deepEqual(await chain('x'), { secret: { kind: 'password', password: 'a' } });
  assert.deepEqual(await chain('y'), { secret: { kind: 'password', password: 'b' } });
  assert.equal(await chain('z'), null);
});

test('a password\'s verifier is made once; mock salts depend on key and user only', () => {
  assert.equal(verifierOfPassword('same'), verifierOfPassword('same'));
  assert.deepEqual(mockSalt('k', 'u'), mockSalt('k', 'u'));
  assert.notDeepEqual(mockSalt('k', 'u'), mockSalt('k', 'v'));
  assert.equal(mockSalt('k', 'u').length, 16);
});
