/**
 * FastCGI records (FastCGI 1.0 specification, section 3.3): an 8-byte
 * header — version, type, request id, content length, padding length,
 * reserved — then content and padding. Encoding is done once per record;
 * decoding is an incremental state machine over chunks that hands out views
 * into the received buffers and copies only a record that straddles chunks.
 */
import { FastCgiError } from './errors.ts';

export const FCGI_VERSION_1 = 1;
export const FCGI_HEADER_LEN = 8;
/** Largest content one record carries (the length field is 16 bits). */
export const FCGI_MAX_CONTENT = 0xffff;

export const FCGI_BEGIN_REQUEST = 1;
export const FCGI_ABORT_REQUEST = 2;
export const FCGI_END_REQUEST = 3;
export const FCGI_PARAMS = 4;
export const FCGI_STDIN = 5;
export const FCGI_STDOUT = 6;
export const FCGI_STDERR = 7;
export const FCGI_DATA = 8;
export const FCGI_GET_VALUES = 9;
export const FCGI_GET_VALUES_RESULT = 10;
export const FCGI_UNKNOWN_TYPE = 11;

export const FCGI_RESPONDER = 1;
export const FCGI_AUTHORIZER = 2;
export const FCGI_FILTER = 3;
/** FCGI_BeginRequestBody flag: the application keeps the connection open after the request. */
export const FCGI_KEEP_CONN = 1;

/** FCGI_EndRequestBody protocolStatus values (section 5.5). */
export const FCGI_REQUEST_COMPLETE = 0;
export const FCGI_CANT_MPX_CONN = 1;
export const FCGI_OVERLOADED = 2;
export const FCGI_UNKNOWN_ROLE = 3;

export const RECORD_TYPE_NAMES: Readonly<Record<number, string>> = {
  1: 'FCGI_BEGIN_REQUEST',
  2: 'FCGI_ABORT_REQUEST',
  3: 'FCGI_END_REQUEST',
  4: 'FCGI_PARAMS',
  5: 'FCGI_STDIN',
  6: 'FCGI_STDOUT',
  7: 'FCGI_STDERR',
  8: 'FCGI_DATA',
  9: 'FCGI_GET_VALUES',
  10: 'FCGI_GET_VALUES_RESULT',
  11: 'FCGI_UNKNOWN_TYPE',
};

export interface FastCgiRecord {
  readonly type: number;
  readonly requestId: number;
  readonly content: Buffer;
}

function checkRecordArgs(type: number, requestId: number, length: number): void {
  if (!Number.isInteger(type) || type < 0 || type > 0xff) throw new FastCgiError('FCGI_ERR_INVALID_ARGUMENT', `record type ${type} is not a byte`);
  if (!Number.isInteger(requestId) || requestId < 0 || requestId > 0xffff) throw new FastCgiError('FCGI_ERR_INVALID_ARGUMENT', `request id ${requestId} is not 0..65535`);
  if (length > FCGI_MAX_CONTENT) throw new FastCgiError('FCGI_ERR_INVALID_ARGUMENT', `record content of ${length} bytes exceeds ${FCGI_MAX_CONTENT}`);
}

/** Writes a record header into `target` at `offset` (no padding). */
export function writeHeader(target: Buffer, offset: number, type: number, requestId: number, contentLength: number, paddingLength = 0): void {
  target[offset] = FCGI_VERSION_1;
  target[offset + 1] = type;
  target.writeUInt16BE(requestId, offset + 2);
  target.writeUInt16BE(contentLength, offset + 4);
  target[offset + 6] = paddingLength;
  target[offset + 7] = 0;
}

/** One whole record: header + content, no padding (padding is optional, section 3.3). */
export function encodeRecord(type: number, requestId: number, content: Uint8Array = EMPTY): Buffer {
  checkRecordArgs(type, requestId, content.length);
  const out = Buffer.allocUnsafe(FCGI_HEADER_LEN + content.length);
  writeHeader(out, 0, type, requestId, content.length);
  out.set(content, FCGI_HEADER_LEN);
  return out;
}

/**
 * A stream's content as records of at most FCGI_MAX_CONTENT bytes each, in
 * one buffer. An empty `content` gives nothing: the stream's end is the
 * caller's explicit empty record (`encodeRecord(type, id)`).
 */
export function encodeStream(type: number, requestId: number, content: Uint8Array): Buffer {
  checkRecordArgs(type, requestId, 0);
  const records = Math.ceil(content.length / FCGI_MAX_CONTENT);
  const out = Buffer.allocUnsafe(content.length + records * FCGI_HEADER_LEN);
  let at = 0;
  for (let from = 0; from < content.length; from += FCGI_MAX_CONTENT) {
    const n = Math.min(FCGI_MAX_CONTENT, content.length - from);
    writeHeader(out, at, type, requestId, n);
    out.set(content.subarray(from, from + n), at + FCGI_HEADER_LEN);
    at += FCGI_HEADER_LEN + n;
  }
  return out;
}

/** FCGI_BEGIN_REQUEST with a role and flags (FCGI_KEEP_CONN). */
export function encodeBeginRequest(requestId: number, role = FCGI_RESPONDER, flags = 0): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt16BE(role, 0);
  body[2] = flags;
  return encodeRecord(FCGI_BEGIN_REQUEST, requestId, body);
}

export function encodeEndRequest(requestId: number, appStatus: number, protocolStatus = FCGI_REQUEST_COMPLETE): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt32BE(appStatus >>> 0, 0);
  body[4] = protocolStatus;
  return encodeRecord(FCGI_END_REQUEST, requestId, body);
}

export interface BeginRequestBody {
  readonly role: number;
  readonly flags: number;
}

export function decodeBeginRequest(content: Buffer): BeginRequestBody {
  if (content.length !== 8) throw new FastCgiError('FCGI_ERR_PROTOCOL', `FCGI_BEGIN_REQUEST body is ${content.length} bytes, not 8`);
  return { role: content.readUInt16BE(0), flags: content[2] as number };
}

export interface EndRequestBody {
  readonly appStatus: number;
  readonly protocolStatus: number;
}

export function decodeEndRequest(content: Buffer): EndRequestBody {
  if (content.length !== 8) throw new FastCgiError('FCGI_ERR_PROTOCOL', `FCGI_END_REQUEST body is ${content.length} bytes, not 8`);
  return { appStatus: content.readUInt32BE(0), protocolStatus: content[4] as number };
}

/** Called once per complete record; `content` may be a view that is only valid during the call. */
export type RecordHandler = (type: number, requestId: number, content: Buffer) => void;

const STATE_HEADER = 0;
const STATE_CONTENT = 1;
const STATE_PADDING = 2;
const EMPTY = Buffer.alloc(0);

/**
 * Incremental record decoder. `push(chunk)` calls the handler for every
 * record completed by the chunk, in order. Bytes are bounded: at most one
 * record's content (64 KiB) is ever held. A header with a version other
 * than 1 throws FCGI_ERR_PROTOCOL, and the parser stays failed (a stream
 * that lost its framing cannot be resynchronised).
 */
export class RecordParser {
  readonly #onRecord: RecordHandler;
  #state = STATE_HEADER;
  readonly #header = Buffer.alloc(FCGI_HEADER_LEN);
  #headerFill = 0;
  #type = 0;
  #requestId = 0;
  #contentLength = 0;
  #paddingLeft = 0;
  /** A record's content collected across chunks (null while the content arrives whole). */
  #content: Buffer | null = null;
  #contentFill = 0;
  #failed: FastCgiError | null = null;

  constructor(onRecord: RecordHandler) {
    this.#onRecord = onRecord;
  }

  /** True between records: no partial header, content or padding is pending. */
  get atBoundary(): boolean {
    return this.#state === STATE_HEADER && this.#headerFill === 0;
  }

  push(chunk: Buffer): void {
    if (this.#failed !== null) throw this.#failed;
    let at = 0;
    const end = chunk.length;
    while (at < end) {
      if (this.#state === STATE_HEADER) {
        if (this.#headerFill === 0 && end - at >= FCGI_HEADER_LEN) {
          this.#readHeader(chunk, at);
          at += FCGI_HEADER_LEN;
        } else {
          const n = Math.min(FCGI_HEADER_LEN - this.#headerFill, end - at);
          chunk.copy(this.#header, this.#headerFill, at, at + n);
          this.#headerFill += n;
          at += n;
          if (this.#headerFill < FCGI_HEADER_LEN) return;
          this.#headerFill = 0;
          this.#readHeader(this.#header, 0);
        }
        if (this.#contentLength === 0) {
          this.#onRecord(this.#type, this.#requestId, EMPTY);
          this.#state = this.#paddingLeft > 0 ? STATE_PADDING : STATE_HEADER;
        } else {
          this.#state = STATE_CONTENT;
        }
      } else if (this.#state === STATE_CONTENT) {
        const want = this.#contentLength - this.#contentFill;
        if (this.#content === null && end - at >= want) {
          // The whole content is in this chunk: hand out a view, no copy.
          const view = chunk.subarray(at, at + want);
          at += want;
          this.#finishContent(view);
        } else {
          this.#content ??= Buffer.allocUnsafe(this.#contentLength);
          const n = Math.min(want, end - at);
          chunk.copy(this.#content, this.#contentFill, at, at + n);
          this.#contentFill += n;
          at += n;
          if (this.#contentFill < this.#contentLength) return;
          const content = this.#content;
          this.#content = null;
          this.#contentFill = 0;
          this.#finishContent(content);
        }
      } else {
        const n = Math.min(this.#paddingLeft, end - at);
        this.#paddingLeft -= n;
        at += n;
        if (this.#paddingLeft === 0) this.#state = STATE_HEADER;
      }
    }
  }

  #readHeader(source: Buffer, at: number): void {
    const version = source[at] as number;
    if (version !== FCGI_VERSION_1) {
      this.#failed = new FastCgiError('FCGI_ERR_PROTOCOL', `FastCGI record with version ${version} (expected 1): the stream is not FastCGI or lost its framing`);
      throw this.#failed;
    }
    this.#type = source[at + 1] as number;
    this.#requestId = source.readUInt16BE(at + 2);
    this.#contentLength = source.readUInt16BE(at + 4);
    this.#paddingLeft = source[at + 6] as number;
  }

  #finishContent(content: Buffer): void {
    this.#state = this.#paddingLeft > 0 ? STATE_PADDING : STATE_HEADER;
    this.#onRecord(this.#type, this.#requestId, content);
  }
}

/** Decodes a whole buffer of records (tests, tools); throws on a partial record at the end. */
export function decodeRecords(bytes: Buffer): FastCgiRecord[] {
  const out: FastCgiRecord[] = [];
  const parser = new RecordParser((type, requestId, content) => out.push({ type, requestId, content: Buffer.from(content) }));
  parser.push(bytes);
  if (!parser.atBoundary) throw new FastCgiError('FCGI_ERR_PROTOCOL', 'truncated FastCGI record at the end of the input');
  return out;
}
