import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import {
  ScramError,
  formatScramSecret,
  hmac,
  isMd5Secret,
  keysOf,
  makeVerifier,
  md5Response,
  md5Secret,
  parseClientFinal,
  parseClientFirst,
  parseScramSecret,
  parseServerFinal,
  parseServerFirst,
  saltedPassword,
  saslPrep,
  sha256,
  xor,
} from '../../../../../src/protocols/postgres/auth/scram.ts';

// RFC 7677 §3's example exchange.
const CLIENT_FIRST = 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO';
const SERVER_FIRST = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';
const CLIENT_FINAL = 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=';
const SERVER_FINAL = 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=';

test('RFC 7677 example: the proof and the server signature come out of the password', () => {
  const first = parseClientFirst(CLIENT_FIRST);
  assert.equal(first.gs2Header, 'n,,');
  assert.equal(first.bare, 'n=user,r=rOprNGfwEbeRWgbNEkqO');
  const serverFirst = parseServerFirst(SERVER_FIRST);
  assert.equal(serverFirst.iterations, 4096);
  const final = parseClientFinal(CLIENT_FINAL);
  assert.equal(final.withoutProof, 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0');
  const { clientKey, serverKey } = keysOf(saltedPassword('pencil', serverFirst.salt, serverFirst.iterations));
  const authMessage = `${first.bare},${SERVER_FIRST},${final.withoutProof}`;
  assert.deepEqual(xor(clientKey, hmac(sha256(clientKey), authMessage)), final.proof);
  const serverFinal = parseServerFinal(SERVER_FINAL);
  assert.ok('signature' in serverFinal);
  assert.deepEqual(serverFinal.signature, hmac(serverKey, authMessage));
  // Pass-through: the proof and the stored key give the client key back.
  const storedKey = sha256(clientKey);
  assert.deepEqual(xor(final.proof, hmac(storedKey, authMessage)), clientKey);
});

test('verifiers: PostgreSQL\'s format round-trips; malformed ones are refused', () => {
  const v = makeVerifier('secret', Buffer.from('0123456789abcdef'), 4096);
  const text = formatScramSecret(v);
  assert.match(text, /^SCRAM-SHA-256\$4096:[^$]+\$[^:]+:[^:]+$/);
  assert.deepEqual(parseScramSecret(text), v);
  for (const bad of ['', 'md5abc', 'SCRAM-SHA-256$0:c2FsdA==$a:b', `SCRAM-SHA-256$4096:c2FsdA==$${'A'.repeat(44)}`, 'SCRAM-SHA-256$4096:!!$x:y', `SCRAM-SHA-256$99999999:c2FsdA==$${v.storedKey.toString('base64')}:${v.serverKey.toString('base64')}`]) {
    assert.equal(parseScramSecret(bad), undefined, bad);
  }
});

test('md5: secret and challenge answer as libpq computes them', () => {
  assert.equal(md5Secret('secret', 'app'), 'md5' + createHash('md5').update('secretapp').digest('hex'));
  const secret = md5Secret('md5 secret', 'md5_user');
  assert.ok(isMd5Secret(secret));
  assert.ok(!isMd5Secret('md5XYZ'));
  assert.match(md5Response(secret, Buffer.from([1, 2, 3, 4])), /^md5[0-9a-f]{32}$/);
  assert.notEqual(md5Response(secret, Buffer.from([1, 2, 3, 4])), md5Response(secret, Buffer.from([1, 2, 3, 5])));
});

test('client-first: channel binding flags, authzid and extensions as PostgreSQL treats them', () => {
  assert.equal(parseClientFirst('y,,n=,r=abc').cbindFlag, 'y');
  assert.equal(parseClientFirst('p=tls-server-end-point,,n=,r=abc').cbindFlag, 'p');
  assert.equal(parseClientFirst('p=tls-server-end-point,,n=,r=abc').gs2Header, 'p=tls-server-end-point,,');
  assert.throws(() => parseClientFirst('n,a=admin,n=,r=abc'), ScramError);
  assert.throws(() => parseClientFirst('n,,m=ext,n=,r=abc'), ScramError);
  assert.throws(() => parseClientFirst('x,,n=,r=abc'), ScramError);
  assert.throws(() => parseClientFirst('n,,n=,r='), ScramError);
  assert.throws(() => parseClientFirst('n,,r=abc'), ScramError);
});

test('client-final and server messages: missing proof, bad base64, errors from the server', () => {
  assert.throws(() => parseClientFinal('c=biws,r=abc'), ScramError);
  assert.throws(() => parseClientFinal('c=biws,r=abc,p=short'), ScramError);
  assert.throws(() => parseServerFirst('r=abc,s=,i=4096'), ScramError);
  assert.throws(() => parseServerFirst('r=abc,s=c2FsdA==,i=0'), ScramError);
  assert.deepEqual(parseServerFinal('e=invalid-proof'), { error: 'invalid-proof' });
  assert.throws(() => parseServerFinal('v=abc'), ScramError);
});

test('SASLprep: ASCII untouched, non-ASCII spaces mapped, soft hyphen dropped, NFKC, prohibited falls back to raw', () => {
  assert.equal(saslPrep('pencil'), 'pencil');
  assert.equal(saslPrep('a\u00A0b'), 'a b');
  assert.equal(saslPrep('I\u00ADX'), 'IX');
  assert.equal(saslPrep('\u2168'), 'IX');
  assert.equal(saslPrep('a\u0007\u00e9'), 'a\u0007\u00e9');
  assert.equal(saslPrep('\u0627\u0031'), '\u0627\u0031'); // RandALCat not last: raw
});
