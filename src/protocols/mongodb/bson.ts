/**
 * A small BSON reader and writer (https://bsonspec.org/spec.html): just what
 * the proxy needs to read a client's handshake commands and write its own
 * replies. Pure functions over buffers; the runtime never loads the driver.
 *
 * Mapping (the `mongodb` driver's defaults with `useBigInt64`):
 *   double, int32 → number (a number is written as int32 when it is an
 *   integer in int32 range and not -0, else as double; `Double` forces a
 *   double) · int64 → bigint · string → string · bool · null · date → Date ·
 *   document → object · array → array · ObjectId, Binary, Timestamp → the
 *   classes below. Types the proxy does not interpret (undefined, regex,
 *   DBPointer, code, symbol, code with scope, decimal128, min/max key) are
 *   kept verbatim as RawBsonValue, so a document survives a round trip.
 * Malformed input fails with PolyproxyError('PROTOCOL'), never anything else.
 */
import { PolyproxyError } from '../../core/errors.ts';

/** Deeper nesting is refused (mongod allows 100 levels for user documents, a bit more internally). */
export const MAX_DEPTH = 200;

export class ObjectId {
  readonly bytes: Buffer;
  constructor(bytes: Uint8Array) {
    if (bytes.length !== 12) throw new PolyproxyError('INTERNAL', 'an ObjectId has 12 bytes');
    this.bytes = Buffer.from(bytes);
  }
  toHexString(): string {
    return this.bytes.toString('hex');
  }
  equals(other: unknown): boolean {
    return other instanceof ObjectId && other.bytes.equals(this.bytes);
  }
}

export class Binary {
  readonly subtype: number;
  readonly data: Buffer;
  constructor(data: Uint8Array, subtype = 0) {
    this.data = Buffer.from(data);
    this.subtype = subtype;
  }
}

/** BSON timestamp: `t` seconds and `i` increment, both uint32. */
export class Timestamp {
  readonly t: number;
  readonly i: number;
  constructor(t: number, i: number) {
    this.t = t >>> 0;
    this.i = i >>> 0;
  }
}

/** A number that must be written as a BSON double (mongod's `ok: 1.0`). */
export class Double {
  readonly value: number;
  constructor(value: number) {
    this.value = value;
  }
}

/** A value of a type the proxy does not interpret: its type byte and its bytes, kept verbatim. */
export class RawBsonValue {
  readonly type: number;
  readonly bytes: Buffer;
  constructor(type: number, bytes: Uint8Array) {
    this.type = type;
    this.bytes = Buffer.from(bytes);
  }
}

export type BsonValue =
  | string
  | number
  | bigint
  | boolean
  | null
  | Date
  | ObjectId
  | Binary
  | Timestamp
  | Double
  | RawBsonValue
  | BsonDocument
  | readonly BsonValue[];

export interface BsonDocument {
  [key: string]: BsonValue;
}

const T_DOUBLE = 0x01;
const T_STRING = 0x02;
const T_DOCUMENT = 0x03;
const T_ARRAY = 0x04;
const T_BINARY = 0x05;
const T_UNDEFINED = 0x06;
const T_OBJECTID = 0x07;
const T_BOOL = 0x08;
const T_DATE = 0x09;
const T_NULL = 0x0a;
const T_REGEX = 0x0b;
const T_DBPOINTER = 0x0c;
const T_CODE = 0x0d;
const T_SYMBOL = 0x0e;
const T_CODE_W_SCOPE = 0x0f;
const T_INT32 = 0x10;
const T_TIMESTAMP = 0x11;
const T_INT64 = 0x12;
const T_DECIMAL128 = 0x13;
const T_MIN_KEY = 0xff;
const T_MAX_KEY = 0x7f;

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function malformed(message: string): PolyproxyError {
  return new PolyproxyError('PROTOCOL', `malformed BSON: ${message}`, { source: 'client' });
}

// --- reading -------------------------------------------------------------------

/**
 * The length a document at `offset` declares, after checking it is sane and
 * fits before `end`.
 */
export function documentLength(buf: Buffer, offset: number, end: number): number {
  if (end - offset < 5) throw malformed('document shorter than 5 bytes');
  const length = buf.readInt32LE(offset);
  if (length < 5 || length > end - offset) throw malformed(`document length ${length} does not fit in ${end - offset} bytes`);
  if (buf[offset + length - 1] !== 0) throw malformed('document is not terminated');
  return length;
}

/** Decodes the document that starts at `offset` and must end exactly at `end`. */
export function decodeDocument(buf: Buffer, offset = 0, end = buf.length): BsonDocument {
  const length = documentLength(buf, offset, end);
  if (length !== end - offset) throw malformed(`document length ${length} but ${end - offset} bytes given`);
  return readDocument(buf, offset, 0, false) as BsonDocument;
}

/** The first element's name of the document at `offset` (a command's name), or undefined when it is empty. */
export function firstKey(buf: Buffer, offset = 0, end = buf.length): string | undefined {
  const length = documentLength(buf, offset, end);
  if (length === 5) return undefined;
  const nameEnd = cstringEnd(buf, offset + 5, offset + length - 1);
  return buf.toString('utf8', offset + 5, nameEnd);
}

function cstringEnd(buf: Buffer, from: number, end: number): number {
  const at = buf.indexOf(0, from);
  if (at < 0 || at >= end) throw malformed('unterminated name');
  return at;
}

function readDocument(buf: Buffer, offset: number, depth: number, isArray: boolean): BsonDocument | BsonValue[] {
  if (depth > MAX_DEPTH) throw malformed(`nested deeper than ${MAX_DEPTH} levels`);
  const length = buf.readInt32LE(offset); // checked by the caller
  const end = offset + length - 1; // the terminating NUL
  const doc: BsonDocument = {};
  const array: BsonValue[] = [];
  let at = offset + 4;
  while (at < end) {
    const type = buf[at] as number;
    const nameEnd = cstringEnd(buf, at + 1, end);
    const name = isArray ? '' : buf.toString('utf8', at + 1, nameEnd);
    at = nameEnd + 1;
    const valueEnd = valueLength(buf, type, at, end) + at;
    const value = readValue(buf, type, at, valueEnd, depth);
    at = valueEnd;
    if (isArray) array.push(value);
    else if (name === '__proto__') Object.defineProperty(doc, name, { value, enumerable: true, writable: true, configurable: true });
    else doc[name] = value;
  }
  return isArray ? array : doc;
}

function need(at: number, size: number, end: number): number {
  if (end - at < size) throw malformed('value runs past the end of its document');
  return size;
}

/** A length-prefixed UTF-8 string's total size (int32 + bytes + NUL). */
function stringLength(buf: Buffer, at: number, end: number): number {
  need(at, 4, end);
  const size = buf.readInt32LE(at);
  if (size < 1 || size > end - at - 4) throw malformed(`string length ${size} out of range`);
  if (buf[at + 4 + size - 1] !== 0) throw malformed('string is not terminated');
  return 4 + size;
}

/** How many bytes the value of `type` at `at` takes, checked against `end`. */
function valueLength(buf: Buffer, type: number, at: number, end: number): number {
  switch (type) {
    case T_DOUBLE:
    case T_DATE:
    case T_TIMESTAMP:
    case T_INT64:
      return need(at, 8, end);
    case T_STRING:
    case T_CODE:
    case T_SYMBOL:
      return stringLength(buf, at, end);
    case T_DOCUMENT:
    case T_ARRAY:
      return documentLength(buf, at, end);
    case T_BINARY: {
      need(at, 5, end);
      const size = buf.readInt32LE(at);
      if (size < 0 || size > end - at - 5) throw malformed(`binary length ${size} out of range`);
      return 5 + size;
    }
    case T_UNDEFINED:
    case T_NULL:
    case T_MIN_KEY:
    case T_MAX_KEY:
      return 0;
    case T_OBJECTID:
      return need(at, 12, end);
    case T_BOOL:
      return need(at, 1, end);
    case T_REGEX: {
      const pattern = cstringEnd(buf, at, end);
      return cstringEnd(buf, pattern + 1, end) + 1 - at;
    }
    case T_DBPOINTER:
      return stringLength(buf, at, end) + need(at + stringLength(buf, at, end), 12, end);
    case T_CODE_W_SCOPE: {
      need(at, 4, end);
      const size = buf.readInt32LE(at);
      // int32 total, string (≥ 5 bytes), document (≥ 5 bytes)
      if (size < 14 || size > end - at) throw malformed(`code-with-scope length ${size} out of range`);
      const code = stringLength(buf, at + 4, at + size);
      if (documentLength(buf, at + 4 + code, at + size) !== size - 4 - code) throw malformed('code-with-scope parts do not add up');
      return size;
    }
    case T_INT32:
      return need(at, 4, end);
    case T_DECIMAL128:
      return need(at, 16, end);
    default:
      throw malformed(`unknown element type 0x${type.toString(16).padStart(2, '0')}`);
  }
}

function readValue(buf: Buffer, type: number, at: number, valueEnd: number, depth: number): BsonValue {
  switch (type) {
    case T_DOUBLE:
      return buf.readDoubleLE(at);
    case T_STRING:
      return buf.toString('utf8', at + 4, valueEnd - 1);
    case T_DOCUMENT:
      return readDocument(buf, at, depth + 1, false);
    case T_ARRAY:
      return readDocument(buf, at, depth + 1, true);
    case T_BINARY:
      return new Binary(buf.subarray(at + 5, valueEnd), buf[at + 4] as number);
    case T_OBJECTID:
      return new ObjectId(buf.subarray(at, valueEnd));
    case T_BOOL: {
      const byte = buf[at];
      if (byte !== 0 && byte !== 1) throw malformed(`boolean byte ${byte}`);
      return byte === 1;
    }
    case T_DATE:
      return new Date(Number(buf.readBigInt64LE(at)));
    case T_NULL:
      return null;
    case T_INT32:
      return buf.readInt32LE(at);
    case T_TIMESTAMP:
      return new Timestamp(buf.readUInt32LE(at + 4), buf.readUInt32LE(at));
    case T_INT64:
      return buf.readBigInt64LE(at);
    default:
      return new RawBsonValue(type, buf.subarray(at, valueEnd));
  }
}

// --- writing -------------------------------------------------------------------

/** A growable output buffer. */
class Writer {
  buf = Buffer.allocUnsafe(256);
  at = 0;

  reserve(size: number): void {
    if (this.at + size <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + size));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }

  byte(value: number): void {
    this.reserve(1);
    this.buf[this.at++] = value;
  }

  int32(value: number): void {
    this.reserve(4);
    this.at = this.buf.writeInt32LE(value, this.at);
  }

  bytes(value: Uint8Array): void {
    this.reserve(value.length);
    this.buf.set(value, this.at);
    this.at += value.length;
  }

  cstring(value: string): void {
    if (value.includes('\0')) throw new PolyproxyError('INTERNAL', 'a BSON element name cannot contain NUL');
    const size = Buffer.byteLength(value);
    this.reserve(size + 1);
    this.at += this.buf.write(value, this.at);
    this.buf[this.at++] = 0;
  }

  string(value: string): void {
    const size = Buffer.byteLength(value);
    this.reserve(size + 5);
    this.at = this.buf.writeInt32LE(size + 1, this.at);
    this.at += this.buf.write(value, this.at);
    this.buf[this.at++] = 0;
  }
}

/** Encodes a document; `undefined` fields are left out (as the driver's `ignoreUndefined`). */
export function encodeDocument(doc: BsonDocument): Buffer {
  const out = new Writer();
  writeDocument(out, doc, 0);
  return Buffer.from(out.buf.subarray(0, out.at));
}

function writeDocument(out: Writer, doc: BsonDocument | readonly BsonValue[], depth: number): void {
  if (depth > MAX_DEPTH) throw new PolyproxyError('INTERNAL', `BSON nested deeper than ${MAX_DEPTH} levels`);
  const start = out.at;
  out.int32(0); // patched below
  if (Array.isArray(doc)) {
    for (let i = 0; i < doc.length; i++) writeElement(out, String(i), doc[i] as BsonValue, depth);
  } else {
    for (const key of Object.keys(doc)) {
      const value = (doc as BsonDocument)[key];
      if (value !== undefined) writeElement(out, key, value, depth);
    }
  }
  out.byte(0);
  out.buf.writeInt32LE(out.at - start, start);
}

function writeElement(out: Writer, name: string, value: BsonValue, depth: number): void {
  const typeAt = out.at;
  out.byte(0); // patched once the type is known
  out.cstring(name);
  const type = writeValue(out, value, depth); // first: writing may move out.buf
  out.buf[typeAt] = type;
}

/** Writes the value and returns its type byte. */
function writeValue(out: Writer, value: BsonValue, depth: number): number {
  switch (typeof value) {
    case 'string':
      out.string(value);
      return T_STRING;
    case 'number':
      if (Number.isInteger(value) && value >= INT32_MIN && value <= INT32_MAX && !Object.is(value, -0)) {
        out.int32(value);
        return T_INT32;
      }
      writeDouble(out, value);
      return T_DOUBLE;
    case 'bigint':
      if (value < INT64_MIN || value > INT64_MAX) throw new PolyproxyError('INTERNAL', 'bigint out of int64 range');
      out.reserve(8);
      out.at = out.buf.writeBigInt64LE(value, out.at);
      return T_INT64;
    case 'boolean':
      out.byte(value ? 1 : 0);
      return T_BOOL;
  }
  if (value === null) return T_NULL;
  if (value instanceof Date) {
    const ms = value.getTime();
    if (Number.isNaN(ms)) throw new PolyproxyError('INTERNAL', 'cannot encode an invalid Date');
    out.reserve(8);
    out.at = out.buf.writeBigInt64LE(BigInt(ms), out.at);
    return T_DATE;
  }
  if (value instanceof ObjectId) {
    out.bytes(value.bytes);
    return T_OBJECTID;
  }
  if (value instanceof Binary) {
    out.int32(value.data.length);
    out.byte(value.subtype);
    out.bytes(value.data);
    return T_BINARY;
  }
  if (value instanceof Timestamp) {
    out.reserve(8);
    out.at = out.buf.writeUInt32LE(value.i, out.at);
    out.at = out.buf.writeUInt32LE(value.t, out.at);
    return T_TIMESTAMP;
  }
  if (value instanceof Double) {
    writeDouble(out, value.value);
    return T_DOUBLE;
  }
  if (value instanceof RawBsonValue) {
    out.bytes(value.bytes);
    return value.type;
  }
  writeDocument(out, value, depth + 1);
  return Array.isArray(value) ? T_ARRAY : T_DOCUMENT;
}

function writeDouble(out: Writer, value: number): void {
  out.reserve(8);
  out.at = out.buf.writeDoubleLE(value, out.at);
}
