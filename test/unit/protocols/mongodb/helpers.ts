/**
 * Helpers shared by the MongoDB protocol unit tests: wire bytes as hex, the
 * PROTOCOL-error assertion, and a feeder that hands a parser growing
 * prefixes the way ClientConnection does.
 */
import assert from 'node:assert/strict';
import { PolyproxyError } from '../../../../src/core/errors.ts';

/** Hex to bytes; spaces, newlines and `|` may separate fields for readability. */
export function hex(text: string): Buffer {
  const digits = text.replace(/[\s|]/g, '');
  assert.match(digits, /^(?:[0-9a-f]{2})*$/i, `bad hex fixture: ${text}`);
  return Buffer.from(digits, 'hex');
}

/** The assertion every malformed input must satisfy. */
export function isProtocolError(err: unknown): true {
  assert.ok(err instanceof PolyproxyError, `expected a PolyproxyError, got ${String(err)}`);
  assert.equal(err.kind, 'PROTOCOL');
  assert.equal(err.code, 'PP_ERR_PROTOCOL');
  return true;
}

export type Parser<T> = (buf: Buffer) => { value: T; consumed: number } | undefined;

/**
 * Feeds `chunks` one after another into a growing buffer, calling the parser
 * after each (as ClientConnection does), and returns the first result.
 */
export function feed<T>(parse: Parser<T>, chunks: readonly Buffer[]): { value: T; consumed: number } | undefined {
  let buffered = Buffer.alloc(0);
  for (const chunk of chunks) {
    buffered = Buffer.concat([buffered, chunk]);
    const result = parse(buffered);
    if (result !== undefined) return result;
  }
  return undefined;
}

/** Whole, byte by byte, and split in two at every offset. */
export function splits(bytes: Buffer): Array<{ name: string; chunks: Buffer[] }> {
  const out: Array<{ name: string; chunks: Buffer[] }> = [{ name: 'whole', chunks: [bytes] }];
  out.push({ name: 'byte by byte', chunks: [...bytes].map((byte) => Buffer.from([byte])) });
  for (let at = 1; at < bytes.length; at++) out.push({ name: `split at ${at}`, chunks: [bytes.subarray(0, at), bytes.subarray(at)] });
  return out;
}
