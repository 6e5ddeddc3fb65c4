/**
 * The CGI response head at the start of an application's FCGI_STDOUT
 * (RFC 3875 section 6): header lines ending in CRLF or LF, a blank line,
 * then the body. `Status: 404 Not Found` sets the status; a `Location`
 * without `Status` is a redirect (302, section 6.2.3-4); otherwise 200.
 */
import { FastCgiError } from './errors.ts';

/** Longest head the parser buffers before giving up (nginx's fastcgi_buffer_size is 4-8 KiB; PHP heads can hold many cookies). */
export const MAX_CGI_HEAD_BYTES = 64 * 1024;

export interface CgiHead {
  readonly status: number;
  readonly statusText: string;
  /** Header fields in order, names as sent (without Status). */
  readonly headers: ReadonlyArray<readonly [string, string]>;
}

/** Finds the end of the head: the index just past the blank line, or -1. */
function headEnd(bytes: Buffer, from: number): number {
  // An empty head: the output starts with the blank line.
  if (bytes[0] === 10) return 1;
  if (bytes[0] === 13 && bytes[1] === 10) return 2;
  for (let i = bytes.indexOf(10, from); i >= 0; i = bytes.indexOf(10, i + 1)) {
    if (bytes[i + 1] === 10) return i + 2;
    if (bytes[i + 1] === 13 && bytes[i + 2] === 10) return i + 3;
  }
  return -1;
}

/** Parses a complete head (without the blank line, or with it). Throws FCGI_ERR_PROTOCOL on a line without a colon or a bad Status. */
export function parseCgiHead(text: string): CgiHead {
  const headers: Array<readonly [string, string]> = [];
  let status = 0;
  let statusText = '';
  let location = false;
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.length === 0) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new FastCgiError('FCGI_ERR_PROTOCOL', `malformed CGI header line ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === 'status') {
      const m = /^(\d{3})(?:\s+(.*))?$/.exec(value);
      if (m === null) throw new FastCgiError('FCGI_ERR_PROTOCOL', `malformed CGI Status header ${JSON.stringify(value.slice(0, 80))}`);
      status = Number(m[1]);
      statusText = m[2] ?? '';
      if (status < 100 || status > 999) throw new FastCgiError('FCGI_ERR_PROTOCOL', `CGI Status ${status} out of range`);
      continue;
    }
    if (name.toLowerCase() === 'location') location = true;
    headers.push([name, value]);
  }
  if (status === 0) status = location ? 302 : 200;
  return { status, statusText, headers };
}

/**
 * Incremental: feed stdout chunks until `push` returns the head; the
 * returned `rest` is the first body bytes. Buffers at most MAX_CGI_HEAD_BYTES.
 */
export class CgiHeadParser {
  #buffered: Buffer | null = null;
  readonly #limit: number;

  constructor(limit = MAX_CGI_HEAD_BYTES) {
    this.#limit = limit;
  }

  /** The head and the body bytes after it, or undefined while the blank line has not arrived. */
  push(chunk: Buffer): { head: CgiHead; rest: Buffer } | undefined {
    const from = this.#buffered === null ? 0 : Math.max(0, this.#buffered.length - 2);
    const bytes = this.#buffered === null ? chunk : Buffer.concat([this.#buffered, chunk]);
    const end = headEnd(bytes, from);
    if (end < 0) {
      if (bytes.length > this.#limit) throw new FastCgiError('FCGI_ERR_PROTOCOL', `CGI response head larger than ${this.#limit} bytes`);
      this.#buffered = this.#buffered === null ? Buffer.from(bytes) : bytes;
      return undefined;
    }
    this.#buffered = null;
    return { head: parseCgiHead(bytes.toString('latin1', 0, end)), rest: bytes.subarray(end) };
  }

  /** What arrived without a complete head (the output ended early). */
  get pending(): Buffer | null {
    return this.#buffered;
  }
}

/** Splits a whole stdout into head and body; output without a blank line is all body with status 200. */
export function splitCgiOutput(output: Buffer): { head: CgiHead; body: Buffer } {
  const end = headEnd(output, 0);
  if (end < 0) {
    // A head-only output without the blank line still counts as a head when every line is a header.
    return { head: { status: 200, statusText: '', headers: [] }, body: output };
  }
  return { head: parseCgiHead(output.toString('latin1', 0, end)), body: output.subarray(end) };
}
