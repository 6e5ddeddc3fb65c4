/**
 * The answers of MySQL's two built-in password plugins, computed by the
 * proxy as a client (backend login) and checked by it as a server (listener
 * auth).
 *
 * mysql_native_password: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))).
 * caching_sha2_password: SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + scramble);
 * its full authentication sends the password itself, in cleartext over TLS
 * or RSA-OAEP(SHA-1) encrypted after XOR with the scramble (repeated).
 */
import { createHash, privateDecrypt, publicEncrypt, timingSafeEqual, constants } from 'node:crypto';

import { NATIVE_PASSWORD } from '../packets.ts';

export { NATIVE_PASSWORD };
export const CACHING_SHA2 = 'caching_sha2_password';
export type PasswordPlugin = typeof NATIVE_PASSWORD | typeof CACHING_SHA2;

/** caching_sha2_password's AuthMoreData codes and the client's public-key request. */
export const SHA2_REQUEST_PUBLIC_KEY = 0x02;
export const SHA2_FAST_AUTH_SUCCESS = 0x03;
export const SHA2_PERFORM_FULL_AUTH = 0x04;

function hash(algorithm: string, ...parts: Buffer[]): Buffer {
  const h = createHash(algorithm);
  for (const part of parts) h.update(part);
  return h.digest();
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] as number) ^ (b[i % b.length] as number);
  return out;
}

/** The 20-byte scramble a plugin uses (servers send it NUL-terminated; some add more). */
export function scramble20(data: Buffer): Buffer {
  return data.subarray(0, 20);
}

export function nativeToken(password: string, scramble: Buffer): Buffer {
  if (password === '') return Buffer.alloc(0);
  const stage1 = hash('sha1', Buffer.from(password, 'utf8'));
  const stage2 = hash('sha1', stage1);
  return xor(stage1, hash('sha1', scramble20(scramble), stage2));
}

export function sha2Token(password: string, scramble: Buffer): Buffer {
  if (password === '') return Buffer.alloc(0);
  const stage1 = hash('sha256', Buffer.from(password, 'utf8'));
  const stage2 = hash('sha256', stage1);
  return xor(stage1, hash('sha256', stage2, scramble20(scramble)));
}

export function token(plugin: PasswordPlugin, password: string, scramble: Buffer): Buffer {
  return plugin === NATIVE_PASSWORD ? nativeToken(password, scramble) : sha2Token(password, scramble);
}

/** Whether `answer` is the plugin's answer for `password` (constant time in the answer's content). */
export function tokenMatches(plugin: PasswordPlugin, password: string, scramble: Buffer, answer: Buffer): boolean {
  const expected = token(plugin, password, scramble);
  return expected.length === answer.length && timingSafeEqual(expected, answer);
}

/** The client side of the RSA exchange: RSA-OAEP(password NUL XOR scramble). */
export function rsaEncryptPassword(password: string, scramble: Buffer, publicKeyPem: string | Buffer): Buffer {
  const plain = xor(Buffer.from(`${password}\0`, 'utf8'), scramble20(scramble));
  return publicEncrypt({ key: publicKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, plain);
}

/** The server side: the password a client sent encrypted, or null when it does not decrypt. */
export function rsaDecryptPassword(encrypted: Buffer, scramble: Buffer, privateKeyPem: string): string | null {
  let plain: Buffer;
  try {
    plain = privateDecrypt({ key: privateKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, encrypted);
  } catch {
    return null;
  }
  return cleartextPassword(xor(plain, scramble20(scramble)));
}

/** A password sent as `password NUL` (over TLS, or decrypted); null without the NUL. */
export function cleartextPassword(data: Buffer): string | null {
  const end = data.indexOf(0);
  if (end < 0) return null;
  return data.subarray(0, end).toString('utf8');
}

/** Compares two passwords in constant time in their content. */
export function samePassword(a: string, b: string): boolean {
  const x = hash('sha256', Buffer.from(a, 'utf8'));
  const y = hash('sha256', Buffer.from(b, 'utf8'));
  return timingSafeEqual(x, y);
}
