/**
 * Pure incremental framer for the chunked transfer coding (RFC 9112 §7.1):
 * finds where a chunked body ends without copying it. The proxy forwards the
 * body bytes unchanged; this only walks them, validating chunk-size lines,
 * extensions and trailers so that it and the next hop agree on the end.
 *
 * Refused (PolyproxyError PROTOCOL): a size that is not hex or too large,
 * bare LF or CR, chunk extensions outside the chunk-ext grammar (an empty
 * name, an unclosed quote, controls: issue 15), trailer lines that are not
 * field lines, a chunk not followed by CRLF, obs-fold in trailers,
 * over-long size lines or trailer sections.
 */
import { HttpParseError, QDTEXT, TCHAR, VALUE_CHAR } from './head-parser.ts';

// The chunk-size line: chunk-size *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ) CRLF (§7.1.1).
const SIZE_START = 0;
const SIZE = 1;
const BWS_SEMI = 2; //        BWS after the size or a value: only ';' may follow
const EXT_NAME_START = 3; //  after ';': BWS, then a token
const EXT_NAME = 4;
const EXT_NAME_WS = 5; //     BWS after a name: '=' or ';'
const EXT_VALUE_START = 6; // after '=': BWS, then a token or a quoted-string
const EXT_VALUE = 7;
const EXT_QUOTED = 8;
const EXT_QUOTED_PAIR = 9;
const EXT_VALUE_END = 10; //  just after a closing quote
const SIZE_LF = 11;
const DATA = 12;
const DATA_CR = 13;
const DATA_LF = 14;
const TRAILER_START = 15; //  start of a trailer field line (or the final CRLF)
const TRAILER_NAME = 16;
const TRAILER_VALUE = 17;
const TRAILER_LF = 18;
const FINAL_LF = 19;
const DONE = 20;

/** Longest chunk-size line (size + extensions) accepted. */
const MAX_LINE = 4096;
/** Largest trailer section accepted. */
const MAX_TRAILERS = 16 * 1024;
/** 2^52: sizes past this would lose precision as a JS number. */
const MAX_CHUNK = 2 ** 52;

/** Hears a chunked body decoded (ChunkedFramer.feed): its chunk data spans, then each trailer field line. */
export interface ChunkSink {
  chunkData(buf: Buffer, start: number, end: number): void;
  /** One trailer field line, `name:value` as sent (validated: token name, field-value chars), without its CRLF. */
  chunkTrailer(buf: Buffer, start: number, end: number): void;
}

export class ChunkedFramer {
  #state = SIZE_START;
  #remaining = 0;
  #line = 0;
  #trailerBytes = 0;
  /** The start of a trailer line that a sink hears, kept when the line goes on in the next feed (trailers are rare: a copy). */
  #trailerPart: Buffer | null = null;
  readonly #status: number;
  readonly #source: 'client' | 'backend';

  /** `source` says whose bytes these are: malformed client bodies answer 400, backend ones 502. */
  constructor(source: 'client' | 'backend' = 'client') {
    this.#source = source;
    this.#status = source === 'client' ? 400 : 502;
  }

  get done(): boolean {
    return this.#state === DONE;
  }

  /**
   * Walks `buf[start..end)`. Returns the index just past the body's last
   * byte when the body ends inside this range, or -1 when every byte
   * belonged to the body and more is needed. `sink`, when given, hears each
   * span of chunk data (the decoded body, for a reader that does not
   * forward the coding as it is) and each trailer field line.
   */
  feed(buf: Buffer, start = 0, end = buf.length, sink: ChunkSink | null = null): number {
    let i = start;
    /** Where the trailer line being read started in this feed (-1: before it, or no sink). */
    let lineStart = -1;
    while (i < end) {
      switch (this.#state) {
        case DATA: {
          const take = Math.min(this.#remaining, end - i);
          if (sink !== null && take > 0) sink.chunkData(buf, i, i + take);
          i += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#state = DATA_CR;
          continue;
        }
        case SIZE_START:
        case SIZE: {
          const c = buf[i] as number;
          const d = hexValue(c);
          if (d >= 0) {
            this.#remaining = this.#remaining * 16 + d;
            if (this.#remaining > MAX_CHUNK) this.#fail('chunk size too large');
            this.#state = SIZE;
          } else if (this.#state === SIZE_START) {
            this.#fail('invalid chunk size');
          } else if (c === 0x0d) {
            this.#state = SIZE_LF;
          } else if (c === 0x3b) {
            this.#state = EXT_NAME_START;
          } else if (c === 0x20 || c === 0x09) {
            this.#state = BWS_SEMI;
          } else {
            this.#fail('invalid chunk size');
          }
          break;
        }
        case SIZE_LF:
          if (buf[i] !== 0x0a) this.#fail('chunk size line not ended by CRLF');
          this.#line = 0;
          if (this.#remaining === 0) this.#state = TRAILER_START;
          else this.#state = DATA;
          i++;
          continue;
        case DATA_CR:
          if (buf[i] !== 0x0d) this.#fail('chunk data not followed by CRLF');
          this.#state = DATA_LF;
          break;
        case DATA_LF:
          if (buf[i] !== 0x0a) this.#fail('chunk data not followed by CRLF');
          this.#state = SIZE_START;
          this.#line = 0;
          i++;
          continue;
        case TRAILER_START: {
          const c = buf[i] as number;
          if (c === 0x0d) this.#state = FINAL_LF;
          else if (c === 0x20 || c === 0x09) this.#fail('obs-fold in trailer');
          else if (TCHAR[c] === 1) {
            this.#state = TRAILER_NAME;
            if (sink !== null) lineStart = i;
          } else this.#fail('invalid trailer field');
          break;
        }
        case TRAILER_NAME: {
          // A trailer line is a field line (§7.1.2): token ":" value, as in the head.
          const c = buf[i] as number;
          if (c === 0x3a) this.#state = TRAILER_VALUE;
          else if (TCHAR[c] !== 1) this.#fail('invalid trailer field name');
          break;
        }
        case TRAILER_VALUE: {
          const c = buf[i] as number;
          if (c === 0x0d) this.#state = TRAILER_LF;
          else if (VALUE_CHAR[c] !== 1) this.#fail('invalid character in trailer');
          break;
        }
        case TRAILER_LF:
          if (buf[i] !== 0x0a) this.#fail('trailer line not ended by CRLF');
          this.#state = TRAILER_START;
          if (sink !== null) this.#trailerLine(sink, buf, lineStart < 0 ? start : lineStart, i);
          lineStart = -1;
          break;
        case FINAL_LF:
          if (buf[i] !== 0x0a) this.#fail('chunked body not ended by CRLF');
          this.#state = DONE;
          return i + 1;
        case DONE:
          return i;
        default:
          // Chunk extensions: rare, checked against the grammar so that no next hop reads the line otherwise.
          this.#extension(buf[i] as number);
          break;
      }
      i++;
      if (this.#state <= SIZE_LF) {
        if (++this.#line > MAX_LINE) this.#fail('chunk size line too long');
      } else if (this.#state >= TRAILER_START && ++this.#trailerBytes > MAX_TRAILERS) {
        this.#fail('trailer section too large');
      }
    }
    if (sink !== null && this.#state >= TRAILER_NAME && this.#state <= TRAILER_LF) {
      // A trailer line goes on in the next feed: its start is kept.
      const from = lineStart < 0 ? start : lineStart;
      const part = this.#trailerPart;
      this.#trailerPart = part === null ? Buffer.from(buf.subarray(from, end)) : Buffer.concat([part, buf.subarray(from, end)]);
    }
    return this.#state === DONE ? i : -1;
  }

  /** A trailer line ended with the LF at `lf`: the sink hears it without its CRLF. */
  #trailerLine(sink: ChunkSink, buf: Buffer, from: number, lf: number): void {
    const part = this.#trailerPart;
    if (part === null) {
      sink.chunkTrailer(buf, from, lf - 1);
      return;
    }
    this.#trailerPart = null;
    const line = Buffer.concat([part, buf.subarray(from, lf + 1)]);
    sink.chunkTrailer(line, 0, line.length - 2);
  }

  /** One byte of the chunk-size line after the size: the chunk-ext grammar (§7.1.1), with BWS (RFC 9110 §5.6.3). */
  #extension(c: number): void {
    const ws = c === 0x20 || c === 0x09;
    switch (this.#state) {
      case BWS_SEMI:
        if (c === 0x3b) this.#state = EXT_NAME_START;
        else if (!ws) this.#fail('invalid chunk size line');
        return;
      case EXT_NAME_START:
        if (TCHAR[c] === 1) this.#state = EXT_NAME;
        else if (!ws) this.#fail('invalid chunk extension name');
        return;
      case EXT_NAME:
        if (TCHAR[c] === 1) return;
        if (c === 0x0d) this.#state = SIZE_LF;
        else if (c === 0x3b) this.#state = EXT_NAME_START;
        else if (c === 0x3d) this.#state = EXT_VALUE_START;
        else if (ws) this.#state = EXT_NAME_WS;
        else this.#fail('invalid chunk extension name');
        return;
      case EXT_NAME_WS:
        if (c === 0x3b) this.#state = EXT_NAME_START;
        else if (c === 0x3d) this.#state = EXT_VALUE_START;
        else if (!ws) this.#fail('invalid chunk extension');
        return;
      case EXT_VALUE_START:
        if (TCHAR[c] === 1) this.#state = EXT_VALUE;
        else if (c === 0x22) this.#state = EXT_QUOTED;
        else if (!ws) this.#fail('invalid chunk extension value');
        return;
      case EXT_VALUE:
        if (TCHAR[c] === 1) return;
        if (c === 0x0d) this.#state = SIZE_LF;
        else if (c === 0x3b) this.#state = EXT_NAME_START;
        else if (ws) this.#state = BWS_SEMI;
        else this.#fail('invalid chunk extension value');
        return;
      case EXT_QUOTED:
        if (c === 0x22) this.#state = EXT_VALUE_END;
        else if (c === 0x5c) this.#state = EXT_QUOTED_PAIR;
        else if (QDTEXT[c] !== 1) this.#fail('invalid chunk extension value');
        return;
      case EXT_QUOTED_PAIR:
        if (VALUE_CHAR[c] === 1) this.#state = EXT_QUOTED;
        else this.#fail('invalid chunk extension value');
        return;
      case EXT_VALUE_END:
        if (c === 0x0d) this.#state = SIZE_LF;
        else if (c === 0x3b) this.#state = EXT_NAME_START;
        else if (ws) this.#state = BWS_SEMI;
        else this.#fail('invalid chunk extension value');
        return;
    }
  }

  #fail(message: string): never {
    throw new HttpParseError(message, this.#status, this.#source);
  }
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}
