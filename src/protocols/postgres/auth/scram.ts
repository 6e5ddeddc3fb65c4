/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, without
 * channel binding: key derivation, the stored verifier format, and parsers
 * for the four messages. Pure functions; the exchanges live in
 * backend-login.ts (client side) and client-auth.ts (server side).
 */
import { createHash, createHmac, pbkdf2Sync, timingSafeEqual } from 'node:crypto';
import type { ScramVerifier } from './types.ts';

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
/** PostgreSQL's default scram_iterations. */
export const DEFAULT_ITERATIONS = 4096;
const KEY_LENGTH = 32;
/** More iterations than this in a verifier or a server's challenge is refused (PBKDF2 would stall the process). */
export const MAX_ITERATIONS = 1_000_000;

/** A SCRAM message that does not follow RFC 5802's grammar; `detail` is what PostgreSQL would say. */
export class ScramError extends Error {
  constructor(detail: string) {
    super(detail);
    this.name = 'ScramError';
  }
}

export function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

export function hmac(key: Buffer, data: Buffer | string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

export function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] as number) ^ (b[i] as number);
  return out;
}

export function equalBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** SaltedPassword = Hi(Normalize(password), salt, i), with PostgreSQL's SASLprep (saslPrep below). */
export function saltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  return pbkdf2Sync(Buffer.from(saslPrep(password), 'utf8'), salt, iterations, KEY_LENGTH, 'sha256');
}

/** ClientKey and ServerKey of a salted password. */
export function keysOf(salted: Buffer): { clientKey: Buffer; serverKey: Buffer } {
  return { clientKey: hmac(salted, 'Client Key'), serverKey: hmac(salted, 'Server Key') };
}

/** The verifier PostgreSQL would store for this password, salt and iteration count. */
export function makeVerifier(password: string, salt: Buffer, iterations = DEFAULT_ITERATIONS): ScramVerifier {
  const { clientKey, serverKey } = keysOf(saltedPassword(password, salt, iterations));
  return { iterations, salt, storedKey: sha256(clientKey), serverKey };
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function decodeBase64(text: string): Buffer | undefined {
  return BASE64.test(text) ? Buffer.from(text, 'base64') : undefined;
}

/** Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`; undefined when it is not one. */
export function parseScramSecret(text: string): ScramVerifier | undefined {
  const match = /^SCRAM-SHA-256\$(\d{1,9}):([^$:]+)\$([^$:]+):([^$:]+)$/.exec(text);
  if (match === null) return undefined;
  const iterations = Number(match[1]);
  const salt = decodeBase64(match[2] as string);
  const storedKey = decodeBase64(match[3] as string);
  const serverKey = decodeBase64(match[4] as string);
  if (iterations < 1 || iterations > MAX_ITERATIONS || salt === undefined || salt.length === 0) return undefined;
  if (storedKey?.length !== KEY_LENGTH || serverKey?.length !== KEY_LENGTH) return undefined;
  return { iterations, salt, storedKey, serverKey };
}

export function formatScramSecret(v: ScramVerifier): string {
  return `${SCRAM_SHA_256}$${v.iterations}:${v.salt.toString('base64')}$${v.storedKey.toString('base64')}:${v.serverKey.toString('base64')}`;
}

/** True for `md5` + 32 lowercase hex digits, PostgreSQL's md5 secret. */
export function isMd5Secret(text: string): boolean {
  return /^md5[0-9a-f]{32}$/.test(text);
}

/** PostgreSQL's md5 secret of a password: `md5` + md5(password + user). */
export function md5Secret(password: string, user: string): string {
  return `md5${createHash('md5').update(password).update(user).digest('hex')}`;
}

/** The answer to an md5 challenge, from the md5 secret: `md5` + md5(hex(secret) + salt). */
export function md5Response(secret: string, salt: Buffer): string {
  return `md5${createHash('md5').update(secret.slice(3)).update(salt).digest('hex')}`;
}

// ---- messages ---------------------------------------------------------------

/** Splits `a=..,b=..` into attributes, in order; ScramError when an attribute is malformed. */
function attributes(text: string, what: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const part of text.split(',')) {
    if (part.length < 2 || part[1] !== '=' || !/[A-Za-z]/.test(part[0] as string)) throw new ScramError(`Malformed ${what}: attribute expected, got ${JSON.stringify(part.slice(0, 20))}.`);
    out.push([part[0] as string, part.slice(2)]);
  }
  return out;
}

function expect(attrs: Array<[string, string]>, index: number, name: string, what: string): string {
  const attr = attrs[index];
  if (attr?.[0] !== name) throw new ScramError(`Expected attribute "${name}" but found "${attr?.[0] ?? 'end of message'}" in ${what}.`);
  return attr[1];
}

/** Printable ASCII except ',', as a nonce must be (RFC 5802 §7). */
function checkNonce(nonce: string, what: string): void {
  if (nonce.length === 0 || !/^[\x21-\x2b\x2d-\x7e]+$/.test(nonce)) throw new ScramError(`Invalid nonce in ${what}.`);
}

export interface ClientFirst {
  /** 'n': the client does not support channel binding; 'y': it does but thinks the server does not; 'p': it requires it. */
  readonly cbindFlag: 'n' | 'y' | 'p';
  /** The whole GS2 header, e.g. `n,,`, echoed base64 in the final message. */
  readonly gs2Header: string;
  readonly nonce: string;
  /** The message without the GS2 header, part of the AuthMessage. */
  readonly bare: string;
}

/** `n,,n=<user>,r=<nonce>[,extensions]`. PostgreSQL ignores the user name in it (it has the startup's). */
export function parseClientFirst(text: string): ClientFirst {
  const what = 'client-first-message';
  const flag = text[0];
  let at: number;
  if (flag === 'n' || flag === 'y') {
    if (text[1] !== ',') throw new ScramError(`Comma expected, but found character ${JSON.stringify(text[1] ?? '')}.`);
    at = 2;
  } else if (flag === 'p') {
    const comma = text.indexOf(',');
    if (comma < 0 || !text.startsWith('p=')) throw new ScramError(`Malformed ${what}.`);
    at = comma + 1;
  } else {
    throw new ScramError(`Unexpected channel-binding flag ${JSON.stringify(flag ?? '')}.`);
  }
  // authzid: "a=..." is not supported by PostgreSQL either.
  if (text[at] === 'a') throw new ScramError('client uses authorization identity, but it is not supported');
  if (text[at] !== ',') throw new ScramError(`Unexpected attribute ${JSON.stringify(text[at] ?? '')} in ${what}.`);
  const gs2Header = text.slice(0, at + 1);
  const bare = text.slice(at + 1);
  const attrs = attributes(bare, what);
  if (attrs[0]?.[0] === 'm') throw new ScramError('client requires an unsupported SCRAM extension');
  expect(attrs, 0, 'n', what);
  const nonce = expect(attrs, 1, 'r', what);
  checkNonce(nonce, what);
  return { cbindFlag: flag, gs2Header, nonce, bare };
}

export interface ServerFirst {
  readonly nonce: string;
  readonly salt: Buffer;
  readonly iterations: number;
}

/** `r=<nonce>,s=<salt>,i=<iterations>`. */
export function parseServerFirst(text: string): ServerFirst {
  const what = 'server-first-message';
  const attrs = attributes(text, what);
  if (attrs[0]?.[0] === 'm') throw new ScramError('server requires an unsupported SCRAM extension');
  const nonce = expect(attrs, 0, 'r', what);
  checkNonce(nonce, what);
  const salt = decodeBase64(expect(attrs, 1, 's', what));
  if (salt === undefined || salt.length === 0) throw new ScramError(`Invalid salt in ${what}.`);
  const iterationText = expect(attrs, 2, 'i', what);
  if (!/^[1-9]\d{0,8}$/.test(iterationText) || Number(iterationText) > MAX_ITERATIONS) throw new ScramError(`Invalid iteration count in ${what}.`);
  return { nonce, salt, iterations: Number(iterationText) };
}

export interface ClientFinal {
  /** The base64 channel-binding attribute as sent (the GS2 header, base64). */
  readonly channelBinding: string;
  readonly nonce: string;
  readonly proof: Buffer;
  /** The message up to (not including) `,p=`: part of the AuthMessage. */
  readonly withoutProof: string;
}

/** `c=<base64 gs2 header>,r=<nonce>[,extensions],p=<proof>`. */
export function parseClientFinal(text: string): ClientFinal {
  const what = 'client-final-message';
  const attrs = attributes(text, what);
  const channelBinding = expect(attrs, 0, 'c', what);
  const nonce = expect(attrs, 1, 'r', what);
  const last = attrs[attrs.length - 1];
  if (attrs.length < 3 || last?.[0] !== 'p') throw new ScramError(`Malformed SCRAM message: proof expected at the end of ${what}.`);
  const proof = decodeBase64(last[1]);
  if (proof?.length !== KEY_LENGTH) throw new ScramError(`Malformed SCRAM message: invalid ClientProof.`);
  const withoutProof = text.slice(0, text.length - last[1].length - 3);
  return { channelBinding, nonce, proof, withoutProof };
}

/** `v=<ServerSignature>` or `e=<error>`. */
export function parseServerFinal(text: string): { readonly signature: Buffer } | { readonly error: string } {
  const what = 'server-final-message';
  const attrs = attributes(text, what);
  const first = attrs[0];
  if (first?.[0] === 'e') return { error: first[1] };
  const signature = decodeBase64(expect(attrs, 0, 'v', what));
  if (signature?.length !== KEY_LENGTH) throw new ScramError(`Malformed SCRAM message: invalid ServerSignature.`);
  return { signature };
}

// ---- SASLprep (RFC 4013), as PostgreSQL's pg_saslprep applies it --------------

type Ranges = ReadonlyArray<readonly [number, number]>;

/** RFC 3454 B.1: commonly mapped to nothing. */
const MAPPED_TO_NOTHING: Ranges = [[0xad, 0xad], [0x34f, 0x34f], [0x1806, 0x1806], [0x180b, 0x180d], [0x200b, 0x200d], [0x2060, 0x2060], [0xfe00, 0xfe0f], [0xfeff, 0xfeff]];
/** RFC 3454 C.1.2: non-ASCII spaces, mapped to U+0020. */
const NON_ASCII_SPACE: Ranges = [[0xa0, 0xa0], [0x1680, 0x1680], [0x2000, 0x200b], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000]];
/** RFC 3454 C.2–C.9: control characters, private use, non-characters, surrogates, tagging and such. */
const PROHIBITED: Ranges = [
  [0x0, 0x1f], [0x7f, 0x9f], [0x340, 0x341], [0x6dd, 0x6dd], [0x70f, 0x70f], [0x180e, 0x180e], [0x200c, 0x200f], [0x2028, 0x202e], [0x2060, 0x2063],
  [0x206a, 0x206f], [0x2ff0, 0x2ffb], [0xd800, 0xf8ff], [0xfdd0, 0xfdef], [0xfeff, 0xfeff], [0xfff9, 0xfffd], [0x1d173, 0x1d17a], [0xe0001, 0xe0001],
  [0xe0020, 0xe007f], [0xf0000, 0x10ffff],
];
/** RFC 3454 D.1 (the main blocks): characters with bidi property R or AL. */
const RAND_AL_CAT: Ranges = [[0x5be, 0x5be], [0x5c0, 0x5c0], [0x5c3, 0x5c3], [0x5d0, 0x5ea], [0x5f0, 0x5f4], [0x61b, 0x61b], [0x61f, 0x61f], [0x621, 0x64a], [0x66d, 0x6d5], [0x6e5, 0x6e6], [0x6fa, 0x6fe], [0x700, 0x70d], [0x710, 0x74a], [0x780, 0x7b1], [0x200f, 0x200f], [0xfb1d, 0xfdff], [0xfe70, 0xfefc]];

function inRanges(cp: number, ranges: Ranges): boolean {
  for (const [lo, hi] of ranges) if (cp >= lo && cp <= hi) return true;
  return false;
}

function isNonCharacter(cp: number): boolean {
  return (cp & 0xfffe) === 0xfffe;
}

const L_CAT = /\p{L}/u;

/**
 * PostgreSQL normalises a password with SASLprep before SCRAM and, like
 * libpq, uses the raw bytes when the result would be prohibited (pure
 * ASCII is always itself). Covers the mapping, NFKC, prohibited and bidi
 * rules; unassigned code points (RFC 3454 A.1) are not checked, so a
 * password using one is prepared where PostgreSQL would use it raw.
 */
export function saslPrep(password: string): string {
  let ascii = true;
  for (let i = 0; i < password.length; i++) if (password.charCodeAt(i) > 0x7f) ascii = false;
  if (ascii) return password;
  let mapped = '';
  for (const c of password) {
    const cp = c.codePointAt(0) as number;
    if (inRanges(cp, MAPPED_TO_NOTHING)) continue;
    mapped += inRanges(cp, NON_ASCII_SPACE) ? ' ' : c;
  }
  const chars = [...mapped.normalize('NFKC')];
  if (chars.length === 0) return password;
  let randAl = false;
  let letter = false;
  for (const c of chars) {
    const cp = c.codePointAt(0) as number;
    if (inRanges(cp, PROHIBITED) || isNonCharacter(cp)) return password;
    if (inRanges(cp, RAND_AL_CAT)) randAl = true;
    else if (L_CAT.test(c)) letter = true;
  }
  // RFC 3454 §6: with a RandALCat character, no LCat one, and RandALCat first and last.
  if (randAl && (letter || !inRanges((chars[0] as string).codePointAt(0) as number, RAND_AL_CAT) || !inRanges((chars[chars.length - 1] as string).codePointAt(0) as number, RAND_AL_CAT))) return password;
  return chars.join('');
}
