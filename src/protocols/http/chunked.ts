/**
 * Pure incremental framer for the chunked transfer coding (RFC 9112 §7.1):
 * finds where a chunked body ends without copying it. The proxy forwards the
 * body bytes unchanged; this only walks them, validating chunk-size lines,
 * extensions and trailers so that it and the next hop agree on the end.
 *
 * Refused (PolyproxyError PROTOCOL): a size that is not hex or too large,
 * bare LF or CR, controls in extensions or trailers, a chunk not followed by
 * CRLF, obs-fold in trailers, over-long size lines or trailer sections.
 */
import { HttpParseError } from './head-parser.ts';

const SIZE_START = 0;
const SIZE = 1;
const SIZE_WS = 2; //  BWS after the size, before ';' or CR
const EXT = 3; //      inside chunk extensions, until CR
const SIZE_LF = 4;
const DATA = 5;
const DATA_CR = 6;
const DATA_LF = 7;
const TRAILER_START = 8; // start of a trailer line (or the final CRLF)
const TRAILER = 9;
const TRAILER_LF = 10;
const FINAL_LF = 11;
const DONE = 12;

/** Longest chunk-size line (size + extensions) accepted. */
const MAX_LINE = 4096;
/** Largest trailer section accepted. */
const MAX_TRAILERS = 16 * 1024;
/** 2^52: sizes past this would lose precision as a JS number. */
const MAX_CHUNK = 2 ** 52;

export class ChunkedFramer {
  #state = SIZE_START;
  #remaining = 0;
  #line = 0;
  #trailerBytes = 0;
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
   * belonged to the body and more is needed.
   */
  feed(buf: Buffer, start = 0, end = buf.length): number {
    let i = start;
    while (i < end) {
      switch (this.#state) {
        case DATA: {
          const take = Math.min(this.#remaining, end - i);
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
            this.#state = EXT;
          } else if (c === 0x20 || c === 0x09) {
            this.#state = SIZE_WS;
          } else {
            this.#fail('invalid chunk size');
          }
          break;
        }
        case SIZE_WS: {
          const c = buf[i] as number;
          if (c === 0x3b) this.#state = EXT;
          else if (c !== 0x20 && c !== 0x09) this.#fail('invalid chunk size line');
          break;
        }
        case EXT: {
          const c = buf[i] as number;
          if (c === 0x0d) this.#state = SIZE_LF;
          else if ((c < 0x20 && c !== 0x09) || c === 0x7f) this.#fail('invalid character in chunk extension');
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
          else if (c < 0x21 || c === 0x7f || c === 0x3a) this.#fail('invalid trailer field');
          else this.#state = TRAILER;
          break;
        }
        case TRAILER: {
          const c = buf[i] as number;
          if (c === 0x0d) this.#state = TRAILER_LF;
          else if ((c < 0x20 && c !== 0x09) || c === 0x7f) this.#fail('invalid character in trailer');
          break;
        }
        case TRAILER_LF:
          if (buf[i] !== 0x0a) this.#fail('trailer line not ended by CRLF');
          this.#state = TRAILER_START;
          break;
        case FINAL_LF:
          if (buf[i] !== 0x0a) this.#fail('chunked body not ended by CRLF');
          this.#state = DONE;
          return i + 1;
        case DONE:
          return i;
      }
      i++;
      if (this.#state <= SIZE_LF) {
        if (++this.#line > MAX_LINE) this.#fail('chunk size line too long');
      } else if (this.#state >= TRAILER_START && ++this.#trailerBytes > MAX_TRAILERS) {
        this.#fail('trailer section too large');
      }
    }
    return this.#state === DONE ? i : -1;
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
