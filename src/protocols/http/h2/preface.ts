/**
 * The HTTP/2 client connection preface (RFC 9113 §3.4), told apart from an
 * HTTP/1.1 request on the same cleartext port (h2c with prior knowledge).
 * No HTTP/1.1 request line starts with "PRI * HTTP/2.0" (PRI is not a
 * method any server implements, and RFC 9113 §3.4 chose it for that), so
 * the first bytes decide.
 */

/** "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n": 24 bytes. */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** The bytes so far are HTTP/1.1 (or anything but HTTP/2). */
export const NOT_H2 = 0;
/** The whole preface is there: the connection is HTTP/2. */
export const IS_H2 = 1;
/** A proper prefix of the preface: more bytes decide. */
export const MAYBE_H2 = 2;

/** Classifies a connection's first bytes (`buf[0..length)`). Allocation-free. */
export function prefaceState(buf: Buffer, length = buf.length): number {
  const n = length < PREFACE.length ? length : PREFACE.length;
  for (let i = 0; i < n; i++) if (buf[i] !== PREFACE[i]) return NOT_H2;
  return n === PREFACE.length ? IS_H2 : MAYBE_H2;
}
