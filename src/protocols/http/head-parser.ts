/**
 * Pure parser for HTTP/1.x message heads (RFC 9112 §2–§7): a request line or
 * status line, then header fields, then an empty line. No sockets: it is
 * given the bytes buffered so far and answers "need more" (undefined), a
 * parsed head with the number of bytes it used, or throws HttpParseError
 * (a PolyproxyError of kind PROTOCOL carrying the HTTP status to answer).
 *
 * Strict where leniency lets two parsers disagree about framing (request
 * smuggling, RFC 9112 §11.2): bare LF or CR, obs-fold (§5.2), CR/LF/NUL or
 * other controls in names and values, Content-Length together with
 * Transfer-Encoding (§6.1), differing Content-Lengths (§6.3), and any
 * Transfer-Encoding whose final coding is not `chunked` on a request.
 */
import { PolyproxyError } from '../../core/errors.ts';

/** A malformed or oversized head; `status` is what the proxy answers (400, 431, 505, or 502 for a backend). */
export class HttpParseError extends PolyproxyError {
  readonly status: number;
  constructor(message: string, status = 400, source: 'client' | 'backend' = 'client') {
    super('PROTOCOL', message, { source });
    this.name = 'HttpParseError';
    this.status = status;
  }
}

export interface HeadLimits {
  /** Largest head, request/status line included (431 past it). */
  readonly maxHeadBytes: number;
  readonly maxHeaders: number;
}

export const DEFAULT_LIMITS: HeadLimits = { maxHeadBytes: 64 * 1024, maxHeaders: 100 };

/** How the body after the head is delimited. */
export type Framing = 'none' | 'length' | 'chunked' | 'close';

export interface HttpHead {
  /** Request: method; response: ''. */
  readonly method: string;
  /** Request: target as sent; response: ''. */
  readonly target: string;
  /** Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly minor: number;
  /** Response: status code; request: 0. */
  readonly status: number;
  /** Header fields in order, names as sent. */
  readonly headers: Array<[string, string]>;
  /** Request: the Host header (undefined when absent). */
  readonly host: string | undefined;
  readonly framing: Framing;
  /** With framing 'length'. */
  readonly contentLength: number;
  /** The sender keeps the connection open after this message (version default and Connection). */
  readonly keepAlive: boolean;
  /** The Upgrade header's value when Connection names `upgrade`. */
  readonly upgrade: string | undefined;
  readonly expectContinue: boolean;
  /** Lowercased tokens of the Connection header (hop-by-hop names to strip). */
  readonly connection: readonly string[];
}

const CR = 0x0d;
const LF = 0x0a;

/** RFC 9110 §5.6.2 tchar. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;

/** field-vchar, SP, HTAB, obs-text: what a field value may hold (§5.5). */
const VALUE_CHAR = new Uint8Array(256);
for (let c = 0x20; c < 0x7f; c++) VALUE_CHAR[c] = 1;
for (let c = 0x80; c < 0x100; c++) VALUE_CHAR[c] = 1;
VALUE_CHAR[0x09] = 1;

/**
 * Finds the end of the head. `from` lets a caller that buffers resume the
 * scan where the previous call stopped (pass the previous length), so a head
 * arriving byte by byte costs linear time. Returns the index just past the
 * blank line, or -1. Throws on a bare LF or a head larger than the limit.
 */
export function findHeadEnd(buf: Buffer, start: number, from: number, limits: HeadLimits, source: 'client' | 'backend'): number {
  let i = Math.max(start, from - 3);
  while (true) {
    const lf = buf.indexOf(LF, i);
    if (lf < 0) break;
    if (lf === start || buf[lf - 1] !== CR) throw new HttpParseError('bare LF in message head', source === 'client' ? 400 : 502, source);
    if (lf - start + 1 > limits.maxHeadBytes) break;
    if (lf >= start + 3 && buf[lf - 2] === LF) return lf + 1;
    i = lf + 1;
  }
  if (buf.length - start > limits.maxHeadBytes) {
    throw new HttpParseError(`message head larger than ${limits.maxHeadBytes} bytes`, source === 'client' ? 431 : 502, source);
  }
  return -1;
}

/** Parses a request head from `buf` (RFC 9112 §3). Empty lines before the request line are skipped (§2.2). */
export function parseRequestHead(buf: Buffer, limits: HeadLimits = DEFAULT_LIMITS, from = 0): { value: HttpHead; consumed: number } | undefined {
  let start = 0;
  while (start + 1 < buf.length && buf[start] === CR && buf[start + 1] === LF) start += 2;
  if (start >= 8) throw new HttpParseError('too many empty lines before the request line');
  if (start === buf.length || (start + 1 === buf.length && buf[start] === CR)) return undefined;
  const end = findHeadEnd(buf, start, from, limits, 'client');
  if (end < 0) return undefined;
  // Request line: method SP request-target SP HTTP-version CRLF
  const lineEnd = buf.indexOf(LF, start) - 1;
  let i = start;
  while (i < lineEnd && TCHAR[buf[i] as number] === 1) i++;
  if (i === start || buf[i] !== 0x20) throw new HttpParseError('invalid method in request line');
  const method = buf.toString('latin1', start, i);
  const targetStart = ++i;
  while (i < lineEnd && (buf[i] as number) > 0x20 && (buf[i] as number) < 0x7f) i++;
  if (i === targetStart || buf[i] !== 0x20) throw new HttpParseError('invalid request target');
  const target = buf.toString('latin1', targetStart, i);
  i++;
  if (lineEnd - i !== 8 || buf.toString('latin1', i, i + 7) !== 'HTTP/1.') {
    throw new HttpParseError('unsupported HTTP version', lineEnd - i === 8 && buf.toString('latin1', i, i + 5) === 'HTTP/' ? 505 : 400);
  }
  const minorByte = buf[i + 7] as number;
  if (minorByte !== 0x30 && minorByte !== 0x31) throw new HttpParseError('unsupported HTTP version', 505);
  const minor = minorByte - 0x30;
  const fields = parseFields(buf, lineEnd + 2, end, limits, 'client');
  if (fields.hostCount > 1) throw new HttpParseError('more than one Host header');
  if (minor === 1 && fields.hostCount === 0) throw new HttpParseError('HTTP/1.1 request without a Host header');
  let framing: Framing = 'none';
  if (fields.te !== undefined) {
    if (minor === 0) throw new HttpParseError('Transfer-Encoding in an HTTP/1.0 request');
    if (fields.contentLength >= 0) throw new HttpParseError('both Content-Length and Transfer-Encoding');
    if (!finalChunked(fields.te)) throw new HttpParseError('Transfer-Encoding whose final coding is not chunked');
    framing = 'chunked';
  } else if (fields.contentLength > 0) {
    framing = 'length';
  }
  return {
    value: {
      method,
      target,
      minor,
      status: 0,
      headers: fields.headers,
      host: fields.host,
      framing,
      contentLength: framing === 'length' ? fields.contentLength : 0,
      keepAlive: keepAliveOf(minor, fields.connection),
      upgrade: fields.connection.includes('upgrade') ? fields.upgrade : undefined,
      expectContinue: fields.expect !== undefined && fields.expect.toLowerCase() === '100-continue',
      connection: fields.connection,
    },
    consumed: end,
  };
}

/**
 * Parses a response head (RFC 9112 §4). `method` is the request's, for the
 * body rules of §6.3: HEAD, 1xx, 204 and 304 have no body; a 2xx to CONNECT
 * is a tunnel; no length at all means the body runs to the close.
 * Malformed responses throw with status 502 and source 'backend'.
 */
export function parseResponseHead(buf: Buffer, method: string, limits: HeadLimits = DEFAULT_LIMITS, from = 0): { value: HttpHead; consumed: number } | undefined {
  if (buf.length === 0) return undefined;
  const end = findHeadEnd(buf, 0, from, limits, 'backend');
  if (end < 0) return undefined;
  const lineEnd = buf.indexOf(LF) - 1;
  if (lineEnd < 12 || buf.toString('latin1', 0, 7) !== 'HTTP/1.' || (buf[7] !== 0x30 && buf[7] !== 0x31) || buf[8] !== 0x20) {
    throw new HttpParseError('invalid status line from the backend', 502, 'backend');
  }
  const minor = (buf[7] as number) - 0x30;
  let status = 0;
  for (let i = 9; i < 12; i++) {
    const d = (buf[i] as number) - 0x30;
    if (d < 0 || d > 9) throw new HttpParseError('invalid status code from the backend', 502, 'backend');
    status = status * 10 + d;
  }
  if (status < 100) throw new HttpParseError('invalid status code from the backend', 502, 'backend');
  if (lineEnd > 12) {
    if (buf[12] !== 0x20) throw new HttpParseError('invalid status line from the backend', 502, 'backend');
    for (let i = 13; i < lineEnd; i++) if (VALUE_CHAR[buf[i] as number] !== 1) throw new HttpParseError('invalid reason phrase from the backend', 502, 'backend');
  }
  const fields = parseFields(buf, lineEnd + 2, end, limits, 'backend');
  let framing: Framing;
  let contentLength = 0;
  if (method === 'HEAD' || status < 200 || status === 204 || status === 304) {
    framing = 'none';
  } else if (method === 'CONNECT' && status < 300) {
    framing = 'close';
  } else if (fields.te !== undefined) {
    // §6.1 lets TE override CL; a proxy that passes both on invites smuggling downstream.
    if (fields.contentLength >= 0) throw new HttpParseError('backend sent both Content-Length and Transfer-Encoding', 502, 'backend');
    framing = finalChunked(fields.te) ? 'chunked' : 'close';
  } else if (fields.contentLength >= 0) {
    framing = fields.contentLength === 0 ? 'none' : 'length';
    contentLength = fields.contentLength;
  } else {
    framing = 'close';
  }
  return {
    value: {
      method: '',
      target: '',
      minor,
      status,
      headers: fields.headers,
      host: undefined,
      framing,
      contentLength,
      keepAlive: framing !== 'close' && keepAliveOf(minor, fields.connection),
      upgrade: fields.connection.includes('upgrade') ? fields.upgrade : undefined,
      expectContinue: false,
      connection: fields.connection,
    },
    consumed: end,
  };
}

interface Fields {
  headers: Array<[string, string]>;
  host: string | undefined;
  hostCount: number;
  /** -1 when absent. */
  contentLength: number;
  te: string | undefined;
  connection: string[];
  upgrade: string | undefined;
  expect: string | undefined;
}

/** Header field lines between `start` and the blank line ending at `end` (§5). */
function parseFields(buf: Buffer, start: number, end: number, limits: HeadLimits, source: 'client' | 'backend'): Fields {
  const status = source === 'client' ? 400 : 502;
  const fields: Fields = { headers: [], host: undefined, hostCount: 0, contentLength: -1, te: undefined, connection: [], upgrade: undefined, expect: undefined };
  let pos = start;
  const last = end - 2; // the blank line's CR
  while (pos < last) {
    const lf = buf.indexOf(LF, pos);
    const lineEnd = lf - 1; // CR (findHeadEnd checked every LF has one)
    const first = buf[pos] as number;
    if (first === 0x20 || first === 0x09) throw new HttpParseError('obs-fold (line folding) in a header', status, source);
    let i = pos;
    while (i < lineEnd && TCHAR[buf[i] as number] === 1) i++;
    if (i === pos || buf[i] !== 0x3a) throw new HttpParseError('invalid header name', status, source);
    const name = buf.toString('latin1', pos, i);
    i++;
    while (i < lineEnd && (buf[i] === 0x20 || buf[i] === 0x09)) i++;
    let valueEnd = lineEnd;
    for (let j = i; j < lineEnd; j++) if (VALUE_CHAR[buf[j] as number] !== 1) throw new HttpParseError(`invalid character in header ${name}`, status, source);
    while (valueEnd > i && (buf[valueEnd - 1] === 0x20 || buf[valueEnd - 1] === 0x09)) valueEnd--;
    const value = buf.toString('latin1', i, valueEnd);
    if (fields.headers.length >= limits.maxHeaders) throw new HttpParseError(`more than ${limits.maxHeaders} headers`, source === 'client' ? 431 : 502, source);
    fields.headers.push([name, value]);
    noteField(fields, name, value, status, source);
    pos = lf + 1;
  }
  return fields;
}

function noteField(fields: Fields, name: string, value: string, status: number, source: 'client' | 'backend'): void {
  switch (name.length) {
    case 4:
      if (name.toLowerCase() === 'host') {
        fields.hostCount++;
        fields.host = value;
      }
      return;
    case 6:
      if (name.toLowerCase() === 'expect') fields.expect = value;
      return;
    case 7:
      if (name.toLowerCase() === 'upgrade') fields.upgrade = value;
      return;
    case 10:
      if (name.toLowerCase() === 'connection') {
        for (const token of value.split(',')) {
          const t = token.trim().toLowerCase();
          if (t !== '') fields.connection.push(t);
        }
      }
      return;
    case 14:
      if (name.toLowerCase() === 'content-length') {
        // "5, 5" and repeated equal fields are one length (§6.3 item 5); anything else is refused.
        for (const part of value.split(',')) {
          const t = part.trim();
          if (!/^[0-9]{1,15}$/.test(t)) throw new HttpParseError('invalid Content-Length', status, source);
          const n = Number(t);
          if (fields.contentLength >= 0 && fields.contentLength !== n) throw new HttpParseError('differing Content-Length values', status, source);
          fields.contentLength = n;
        }
      }
      return;
    case 17:
      if (name.toLowerCase() === 'transfer-encoding') fields.te = fields.te === undefined ? value : `${fields.te}, ${value}`;
      return;
  }
}

/** True when the coding list ends with exactly one `chunked` (§6.1: chunked must be final and applied once). */
function finalChunked(te: string): boolean {
  const codings = te.split(',').map((c) => c.trim().toLowerCase());
  if (codings[codings.length - 1] !== 'chunked') return false;
  return codings.indexOf('chunked') === codings.length - 1 && !codings.includes('');
}

function keepAliveOf(minor: number, connection: readonly string[]): boolean {
  if (connection.includes('close')) return false;
  return minor === 1 || connection.includes('keep-alive');
}
