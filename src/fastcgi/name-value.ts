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

/** Encodes pairs into one buffer (UTF-8). Throws FCGI_ERR_INVALID_ARGUMENT for an empty name. */
export function encodeNameValuePairs(pairs: NameValuePairs): Buffer {
  const encoded: Array<[Buffer, Buffer]> = [];
  let size = 0;
  for (const [name, value] of entriesOf(pairs)) {
    if (name.length === 0) throw new FastCgiError('FCGI_ERR_INVALID_ARGUMENT', 'a FastCGI parameter name cannot be empty');
    const n = Buffer.from(name, 'utf8');
    const v = Buffer.from(String(value), 'utf8');
    if (n.length > MAX_NAME_VALUE_LENGTH || v.length > MAX_NAME_VALUE_LENGTH) throw new FastCgiError('FCGI_ERR_INVALID_ARGUMENT', `parameter ${name} is too long`);
    encoded.push([n, v]);
    size += lengthSize(n.length) + lengthSize(v.length) + n.length + v.length;
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const [n, v] of encoded) {
    at = writeLength(out, at, n.length);
    at = writeLength(out, at, v.length);
    out.set(n, at);
    at += n.length;
    out.set(v, at);
    at += v.length;
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
