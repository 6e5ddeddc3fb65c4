/**
 * FastCGI name-value pairs (specification section 3.4): each length is one
 * byte when below 128, else four bytes with the top bit set (31-bit length).
 * Used by FCGI_PARAMS and FCGI_GET_VALUES(_RESULT).
 */
import { FastCgiError } from './errors.ts';

/** Largest name or value length the 31-bit field can carry. */
export const MAX_NAME_VALUE_LENGTH = 0x7fffffff;

export type NameValuePairs = Iterable<readonly [string, string]> | Readonly<Record<string, string | number>>;

function entriesOf(pairs: NameValuePairs): Iterable<readonly [string, string | number]> {
  return Symbol.iterator in pairs ? (pairs as Iterable<readonly [string, string]>) : Object.entries(pairs);
}

function lengthSize(n: number): number {
  return n < 128 ? 1 : 4;
}

function writeLength(out: Buffer, at: number, n: number): number {
  if (n < 128) {
    out[at] = n;
    return at + 1;
  }
  out.writeUInt32BE((n | 0x80000000) >>> 0, at);
  return at + 4;
}

/** Encodes pairs into one buffer (UTF-8), sized first and written in place (no Buffer per pair). Throws FCGI_ERR_INVALID_ARGUMENT for an empty name. */
export function encodeNameValuePairs(pairs: NameValuePairs): Buffer {
  const strings: string[] = [];
  const lengths: number[] = [];
  let size = 0;
  for (const [name, value] of entriesOf(pairs)) {
    if (name.length === 0) throw new FastCgiError('FCGI_ERR_INVALID_ARGUMENT', 'a FastCGI parameter name cannot be empty');
    const text = typeof value === 'string' ? value : String(value);
    const n = Buffer.byteLength(name, 'utf8');
    const v = Buffer.byteLength(text, 'utf8');
    if (n > MAX_NAME_VALUE_LENGTH || v > MAX_NAME_VALUE_LENGTH) throw new FastCgiError('FCGI_ERR_INVALID_ARGUMENT', `parameter ${name} is too long`);
    strings.push(name, text);
    lengths.push(n, v);
    size += lengthSize(n) + lengthSize(v) + n + v;
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (let i = 0; i < strings.length; i += 2) {
    const n = lengths[i] as number;
    const v = lengths[i + 1] as number;
    at = writeLength(out, at, n);
    at = writeLength(out, at, v);
    at += out.write(strings[i] as string, at, n, 'utf8');
    at += out.write(strings[i + 1] as string, at, v, 'utf8');
  }
  return out;
}

function readLength(bytes: Buffer, at: number): [number, number] {
  const first = bytes[at];
  if (first === undefined) throw new FastCgiError('FCGI_ERR_PROTOCOL', `name-value pairs end inside a length at offset ${at}`);
  if (first < 128) return [first, at + 1];
  if (at + 4 > bytes.length) throw new FastCgiError('FCGI_ERR_PROTOCOL', `name-value pairs end inside a 4-byte length at offset ${at}`);
  return [bytes.readUInt32BE(at) & 0x7fffffff, at + 4];
}

/** Decodes a complete name-value block; a later duplicate name wins. Throws FCGI_ERR_PROTOCOL when truncated. */
export function decodeNameValuePairs(bytes: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let at = 0;
  while (at < bytes.length) {
    let nameLength: number;
    let valueLength: number;
    [nameLength, at] = readLength(bytes, at);
    [valueLength, at] = readLength(bytes, at);
    if (nameLength + valueLength > bytes.length - at) throw new FastCgiError('FCGI_ERR_PROTOCOL', `name-value pair of ${nameLength}+${valueLength} bytes overruns the block at offset ${at}`);
    const name = bytes.toString('utf8', at, at + nameLength);
    at += nameLength;
    out.set(name, bytes.toString('utf8', at, at + valueLength));
    at += valueLength;
  }
  return out;
}
