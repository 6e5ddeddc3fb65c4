/**
 * Helpers shared by the PostgreSQL protocol unit tests: wire bytes written
 * as hex, and a decoder for ErrorResponse ('E') messages that checks the
 * framing instead of trusting it.
 * https://www.postgresql.org/docs/current/protocol-error-fields.html
 */
import assert from 'node:assert/strict';
import { PolyproxyError } from '../../../../src/core/errors.ts';

/** Hex to bytes; spaces, newlines and `|` may separate fields for readability. */
export function hex(text: string): Buffer {
  const digits = text.replace(/[\s|]/g, '');
  assert.match(digits, /^(?:[0-9a-f]{2})*$/i, `bad hex fixture: ${text}`);
  return Buffer.from(digits, 'hex');
}

/** Decodes one complete ErrorResponse and returns its fields in wire order. */
export function errorFields(bytes: Buffer): Array<[string, string]> {
  assert.ok(bytes.length >= 6, 'an ErrorResponse has at least a type, a length and a terminator');
  assert.equal(String.fromCharCode(bytes[0] as number), 'E', 'message type');
  assert.equal(bytes.readUInt32BE(1), bytes.length - 1, 'length field counts itself and the body');
  const fields: Array<[string, string]> = [];
  let at = 5;
  while (bytes[at] !== 0) {
    assert.ok(at < bytes.length, 'ErrorResponse runs past its end');
    const code = String.fromCharCode(bytes[at] as number);
    const end = bytes.indexOf(0, at + 1);
    assert.ok(end > at, `field ${code} is not terminated`);
    fields.push([code, bytes.toString('utf8', at + 1, end)]);
    at = end + 1;
  }
  assert.equal(at, bytes.length - 1, 'the lone terminator is the last byte');
  return fields;
}

/** The assertion every malformed startup packet must satisfy. */
export function isProtocolError(err: unknown): true {
  assert.ok(err instanceof PolyproxyError, `expected a PolyproxyError, got ${String(err)}`);
  assert.equal(err.kind, 'PROTOCOL');
  assert.equal(err.code, 'PP_ERR_PROTOCOL');
  assert.equal(err.source, 'client');
  return true;
}
