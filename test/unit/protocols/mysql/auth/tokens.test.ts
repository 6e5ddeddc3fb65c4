import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { generateRsaKeys } from '../../../../../src/protocols/mysql/auth/client-auth.ts';
import { cleartextPassword, nativeToken, rsaDecryptPassword, rsaEncryptPassword, sha2Token, tokenMatches } from '../../../../../src/protocols/mysql/auth/tokens.ts';

const require = createRequire(import.meta.url);
/** mysql2's own implementation, as the reference the proxy must agree with (a file path: the package does not export it). */
const auth41 = require(require.resolve('mysql2').replace(/index\.js$/, 'lib/auth_41.js')) as { calculateToken(password: string, scramble1: Buffer, scramble2: Buffer): Buffer };
const scramble = Buffer.from('0123456789abcdefghij');

test('nativeToken is what mysql2 sends for mysql_native_password', () => {
  assert.deepEqual(nativeToken('s3cret', scramble), auth41.calculateToken('s3cret', scramble.subarray(0, 8), scramble.subarray(8)));
  assert.equal(nativeToken('', scramble).length, 0);
});

test('sha2Token is XOR(SHA256(pw), SHA256(SHA256(SHA256(pw)) + scramble)) as mysql2 computes it', async () => {
  const { createHash } = await import('node:crypto');
  const sha = (b: Buffer) => createHash('sha256').update(b).digest();
  const s1 = sha(Buffer.from('s3cret'));
  const s3 = sha(Buffer.concat([sha(s1), scramble]));
  assert.deepEqual(sha2Token('s3cret', scramble), Buffer.from(s1.map((b, i) => b ^ (s3[i] as number))));
});

test('tokenMatches accepts the right answer only', () => {
  assert.equal(tokenMatches('mysql_native_password', 'pw', scramble, nativeToken('pw', scramble)), true);
  assert.equal(tokenMatches('mysql_native_password', 'pw', scramble, nativeToken('pW', scramble)), false);
  assert.equal(tokenMatches('caching_sha2_password', 'pw', scramble, sha2Token('pw', scramble)), true);
  assert.equal(tokenMatches('caching_sha2_password', 'pw', scramble, nativeToken('pw', scramble)), false);
  assert.equal(tokenMatches('caching_sha2_password', 'pw', scramble, Buffer.alloc(0)), false);
});

test('the RSA exchange round-trips; another scramble or key does not give the password', () => {
  const keys = generateRsaKeys();
  const sealed = rsaEncryptPassword('pässword', scramble, keys.publicKeyPem);
  assert.equal(rsaDecryptPassword(sealed, scramble, keys.privateKeyPem), 'pässword');
  assert.notEqual(rsaDecryptPassword(sealed, Buffer.from('jihgfedcba9876543210'), keys.privateKeyPem), 'pässword');
  assert.equal(rsaDecryptPassword(sealed, scramble, generateRsaKeys().privateKeyPem), null);
  assert.equal(rsaDecryptPassword(Buffer.from('garbage'), scramble, keys.privateKeyPem), null);
});

test('cleartextPassword needs the NUL terminator', () => {
  assert.equal(cleartextPassword(Buffer.from('abc\0')), 'abc');
  assert.equal(cleartextPassword(Buffer.from('abc')), null);
});
