/**
 * Pure parser for HTTP/1.x message heads (RFC 9112 §2–§7): a request line or
 * status line, then header fields, then an empty line. No sockets: it is
 * given the bytes buffered so far and answers "need more" (undefined), a
 * parsed head with the number of bytes it used, or throws HttpParseError
 * (a PolyproxyError of kind PROTOCOL carrying the HTTP status to answer).
 *
 * Strict where leniency lets two parsers disagree about framing or routing
 * (request smuggling, RFC 9112 §11.2): bare LF or CR, obs-fold (§5.2),
 * CR/LF/NUL or other controls in names and values, Content-Length together
 * with Transfer-Encoding (§6.1), more than one Content-Length (§6.3, RFC
 * 9110 §8.6), framing values with anything but SP/HTAB around them (only
 * those are OWS, RFC 9110 §5.6.3: a byte such as 0xA0 that one parser trims
 * and another keeps is refused), a Transfer-Encoding whose final coding is
 * not a single `chunked` on a request, and request targets in none of the
 * four forms (§3.2). CONNECT is refused (501): the listener is no tunnel.
 * An absolute-form target's authority is the request's host (§3.2.2).
 */
import { HttpStatusError } from '../../core/http-error-response.ts';

/** A malformed or oversized head; `status` is what the proxy answers (400, 431, 505, or 502 for a backend). */
export class HttpParseError extends HttpStatusError {
  constructor(message: string, status = 400, source: 'client' | 'backend' = 'client') {
    super('PROTOCOL', status, message, { source });
    this.name = 'HttpParseError';
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
  /** Header fields in order, names as sent (built on each access from `raw`: the hot path reads `fields`). */
  readonly headers: Array<[string, string]>;
  /**
   * The head's bytes, request or status line through the blank line. A
   * view into the parsed buffer: whoever keeps the head past that buffer's
   * life (a read from the shared read buffer) replaces it with a copy.
   */
  raw: Buffer;
  /**
   * Per header field, four offsets into `raw`: name start, name end, value
   * start, value end (value without surrounding whitespace). The line ends
   * with CRLF right after the value's trailing whitespace, if any.
   */
  readonly fields: readonly number[];
  /** Offset in `raw` just past the request or status line's CRLF. */
  readonly lineEnd: number;
  /**
   * Request: the host the request is for: an absolute-form target's
   * authority, which replaces the Host header (RFC 9112 §3.2.2), else the
   * Host header's value (undefined when absent).
   */
  readonly host: string | undefined;
  /** Request: the target is in absolute form (`http://authority/path`): the backend gets `originTarget` and `host`. */
  readonly absoluteForm: boolean;
  /**
   * Request: the target as the origin server is to get it (§3.2.1, §3.2.4):
   * the target itself in origin or asterisk form; for an absolute-form one,
   * its path and query ("/" when the path is empty, "*" for OPTIONS with
   * neither path nor query).
   */
  readonly originTarget: string;
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
  /** A field named x-forwarded-for, -proto or -host is present (any case). */
  readonly forwarded: boolean;
  /** The Accept field's value (to answer errors in a format the client takes). */
  readonly accept: string | undefined;
  /**
   * A Host, Content-Length or Transfer-Encoding line has whitespace around
   * its value other than one SP after the colon. Parsers disagree on such
   * whitespace (llhttp reads `chunked<HTAB>` as another coding), so the
   * rewriter sends these lines as `name: value` (issue 15).
   */
  readonly untidy: boolean;
}

/**
 * A parsed head. Header names and values stay bytes in `raw` (offsets in
 * `fields`): only the fields the proxy acts on become strings, so a
 * forwarded head is copied, not rebuilt from strings.
 */
class ParsedHead implements HttpHead {
  readonly #method: string | null;
  readonly #targetStart: number;
  readonly #targetEnd: number;
  /** Absolute form: where the path (or query) starts in `raw`; -1 otherwise. */
  readonly #pathStart: number;
  readonly minor: number;
  readonly status: number;
  raw: Buffer;
  readonly fields: readonly number[];
  readonly lineEnd: number;
  readonly host: string | undefined;
  readonly absoluteForm: boolean;
  readonly framing: Framing;
  readonly contentLength: number;
  readonly keepAlive: boolean;
  readonly upgrade: string | undefined;
  readonly expectContinue: boolean;
  readonly connection: readonly string[];
  readonly forwarded: boolean;
  readonly accept: string | undefined;
  readonly untidy: boolean;

  constructor(
    raw: Buffer,
    lineEnd: number,
    method: string | null,
    targetStart: number,
    targetEnd: number,
    pathStart: number,
    minor: number,
    status: number,
    fields: Fields,
    framing: Framing,
    contentLength: number,
    keepAlive: boolean,
    expectContinue: boolean,
  ) {
    this.raw = raw;
    this.lineEnd = lineEnd;
    this.#method = method;
    this.#targetStart = targetStart;
    this.#targetEnd = targetEnd;
    this.#pathStart = pathStart;
    this.absoluteForm = pathStart >= 0;
    this.minor = minor;
    this.status = status;
    this.fields = fields.spans;
    this.host = fields.host;
    this.framing = framing;
    this.contentLength = contentLength;
    this.keepAlive = keepAlive;
    this.upgrade = fields.connection.includes('upgrade') ? fields.upgrade : undefined;
    this.expectContinue = expectContinue;
    this.connection = fields.connection;
    this.forwarded = fields.forwarded;
    this.accept = fields.accept;
    this.untidy = fields.untidy;
  }

  get method(): string {
    return this.#method ?? '';
  }

  get target(): string {
    return this.#targetEnd === 0 ? '' : this.raw.toString('latin1', this.#targetStart, this.#targetEnd);
  }

  get originTarget(): string {
    if (this.#pathStart < 0) return this.target;
    const path = this.raw.toString('latin1', this.#pathStart, this.#targetEnd);
    if (path === '') return this.#method === 'OPTIONS' ? '*' : '/';
    return path.charCodeAt(0) === 0x2f ? path : `/${path}`;
  }

  get headers(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    const f = this.fields;
    for (let k = 0; k < f.length; k += 4) {
      out.push([this.raw.toString('latin1', f[k] as number, f[k + 1] as number), this.raw.toString('latin1', f[k + 2] as number, f[k + 3] as number)]);
    }
    return out;
  }
}

const CR = 0x0d;
const LF = 0x0a;

/** RFC 9110 §5.6.2 tchar. */
export const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;

/** qdtext (RFC 9110 §5.6.4): HTAB, SP, VCHAR but '"' and '\\', obs-text. */
export const QDTEXT = new Uint8Array(256);

/** field-vchar, SP, HTAB, obs-text: what a field value may hold (§5.5). */
export const VALUE_CHAR = new Uint8Array(256);
for (let c = 0x20; c < 0x7f; c++) VALUE_CHAR[c] = 1;
for (let c = 0x80; c < 0x100; c++) VALUE_CHAR[c] = 1;
VALUE_CHAR[0x09] = 1;
QDTEXT.set(VALUE_CHAR);
QDTEXT[0x22] = 0;
QDTEXT[0x5c] = 0;

/**
 * Finds the end of the head. `from` lets a caller that buffers resume the
 * scan where the previous call stopped (pass the previous length), so a head
 * arriving byte by byte costs linear time. Returns the index just past the
 * blank line, or -1. Throws on a bare LF or a head larger than the limit.
 */
export function findHeadEnd(buf: Buffer, start: number, from: number, limits: HeadLimits, source: 'client' | 'backend'): number {
  // A byte loop, not indexOf: heads are short, and a native call per line costs more than the scan.
  const length = buf.length;
  for (let i = Math.max(start, from - 3); i < length; i++) {
    if (buf[i] !== LF) continue;
    if (i === start || buf[i - 1] !== CR) throw new HttpParseError('bare LF in message head', source === 'client' ? 400 : 502, source);
    if (i - start + 1 > limits.maxHeadBytes) break;
    if (i >= start + 3 && buf[i - 2] === LF) return i + 1;
  }
  if (length - start > limits.maxHeadBytes) {
    throw new HttpParseError(`message head larger than ${limits.maxHeadBytes} bytes`, source === 'client' ? 431 : 502, source);
  }
  return -1;
}

/** Methods whose name is returned as a constant string instead of a new one per request. */
const METHODS = ['GET', 'PUT', 'POST', 'HEAD', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE'];

function methodName(buf: Buffer, start: number, end: number): string {
  for (const m of METHODS) {
    if (m.length !== end - start) continue;
    let i = 0;
    while (i < m.length && buf[start + i] === m.charCodeAt(i)) i++;
    if (i === m.length) return m;
  }
  return buf.toString('latin1', start, end);
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
  const method = methodName(buf, start, i);
  const targetStart = ++i;
  while (i < lineEnd && (buf[i] as number) > 0x20 && (buf[i] as number) < 0x7f) i++;
  if (i === targetStart || buf[i] !== 0x20) throw new HttpParseError('invalid request target');
  const targetEnd = i;
  i++;
  if (lineEnd - i !== 8 || !isHttp1(buf, i)) {
    throw new HttpParseError('unsupported HTTP version', lineEnd - i === 8 && buf.toString('latin1', i, i + 5) === 'HTTP/' ? 505 : 400);
  }
  const minorByte = buf[i + 7] as number;
  if (minorByte !== 0x30 && minorByte !== 0x31) throw new HttpParseError('unsupported HTTP version', 505);
  const minor = minorByte - 0x30;
  // CONNECT (RFC 9110 §9.3.6) asks for a tunnel to the target's authority, which Host routing would
  // not see: not implemented (§9.1: 501), whatever the target.
  if (method === 'CONNECT') throw new HttpParseError('CONNECT is not supported', 501);
  const pathStart = buf[targetStart] === 0x2f ? -1 : otherTargetForm(buf, method, targetStart, targetEnd);
  const fields = parseFields(buf, start, lineEnd + 2, end, limits, 'client');
  if (fields.hostCount > 1) throw new HttpParseError('more than one Host header');
  // Even with an absolute-form target (§3.2.2: for HTTP/1.0 proxies that ignore it).
  if (minor === 1 && fields.hostCount === 0) throw new HttpParseError('HTTP/1.1 request without a Host header');
  // §3.2.2: the target's authority replaces Host, for routing and for the backend (rewrite.ts).
  if (pathStart >= 0) fields.host = buf.toString('latin1', targetStart + (buf[targetStart + 4] === 0x3a ? 7 : 8), pathStart);
  let framing: Framing = 'none';
  if (fields.te > 0) {
    if (minor === 0) throw new HttpParseError('Transfer-Encoding in an HTTP/1.0 request');
    if (fields.contentLength >= 0) throw new HttpParseError('both Content-Length and Transfer-Encoding');
    if (!fields.teFinalChunked || fields.teChunked !== 1) throw new HttpParseError('Transfer-Encoding whose final coding is not a single chunked');
    framing = 'chunked';
  } else if (fields.contentLength > 0) {
    framing = 'length';
  }
  const raw = start === 0 && end === buf.length ? buf : buf.subarray(start, end);
  const head = new ParsedHead(
    raw,
    lineEnd + 2 - start,
    method,
    targetStart - start,
    targetEnd - start,
    pathStart < 0 ? -1 : pathStart - start,
    minor,
    0,
    fields,
    framing,
    framing === 'length' ? fields.contentLength : 0,
    keepAliveOf(minor, fields.connection),
    fields.expect !== undefined && fields.expect.toLowerCase() === '100-continue',
  );
  return { value: head, consumed: end };
}

/** RFC 3986 authority bytes (unreserved, pct-encoded, sub-delims, ':', '[' and ']'); '@' (userinfo) is not among them. */
const AUTHORITY_CHAR = new Uint8Array(256);
for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=:[]") AUTHORITY_CHAR[c.charCodeAt(0)] = 1;

/**
 * A request target not in origin form (§3.2): `*` for OPTIONS (asterisk
 * form, forwarded as is: -1), or an absolute-form http(s) URI (returns
 * where its path starts, just past the authority). Anything else is 400
 * (the authority form is CONNECT's, refused before).
 */
function otherTargetForm(buf: Buffer, method: string, start: number, end: number): number {
  if (buf[start] === 0x2a) {
    if (end - start === 1 && method === 'OPTIONS') return -1;
    throw new HttpParseError('the asterisk-form target is for OPTIONS only');
  }
  // scheme "://" (case-insensitive scheme, RFC 3986 §3.1): http or https only.
  let i = start + 4;
  if (!bytesAre(buf, start, 'http')) throw new HttpParseError('invalid request target');
  if (buf[i] === 0x73 || buf[i] === 0x53) i++;
  if (buf[i] !== 0x3a || buf[i + 1] !== 0x2f || buf[i + 2] !== 0x2f) throw new HttpParseError('invalid request target');
  i += 3;
  const authority = i;
  while (i < end && AUTHORITY_CHAR[buf[i] as number] === 1) i++;
  // RFC 9110 §4.2.4: userinfo is an error; §4.2.1: an empty host is invalid.
  if (buf[i] === 0x40) throw new HttpParseError('userinfo in the request target');
  if (i === authority || buf[authority] === 0x3a) throw new HttpParseError('absolute-form target without a host');
  if (i < end && buf[i] !== 0x2f && buf[i] !== 0x3f) throw new HttpParseError('invalid request target');
  return i;
}

/** "HTTP/1." at `i`. */
function isHttp1(buf: Buffer, i: number): boolean {
  return buf[i] === 0x48 && buf[i + 1] === 0x54 && buf[i + 2] === 0x54 && buf[i + 3] === 0x50 && buf[i + 4] === 0x2f && buf[i + 5] === 0x31 && buf[i + 6] === 0x2e;
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
  if (lineEnd < 12 || !isHttp1(buf, 0) || (buf[7] !== 0x30 && buf[7] !== 0x31) || buf[8] !== 0x20) {
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
  const fields = parseFields(buf, 0, lineEnd + 2, end, limits, 'backend');
  // Checked even where the status or method leaves no body: the head is forwarded, and a next hop that
  // reads it otherwise (a cache, or llhttp, which refuses it) must not get it. §6.1 lets TE override CL;
  // a proxy that passes both on invites smuggling downstream (§6.3 item 3: MUST remove CL to forward).
  if (fields.te > 0) {
    if (fields.contentLength >= 0) throw new HttpParseError('backend sent both Content-Length and Transfer-Encoding', 502, 'backend');
    // §6.1: chunked is applied at most once.
    if (fields.teChunked > 1) throw new HttpParseError('backend applied chunked more than once', 502, 'backend');
  }
  let framing: Framing;
  let contentLength = 0;
  if (method === 'HEAD' || status < 200 || status === 204 || status === 304) {
    framing = 'none';
  } else if (method === 'CONNECT' && status < 300) {
    framing = 'close';
  } else if (fields.te > 0) {
    // Final coding chunked; otherwise the body runs to the close (§6.3 item 4).
    framing = fields.teFinalChunked ? 'chunked' : 'close';
  } else if (fields.contentLength >= 0) {
    framing = fields.contentLength === 0 ? 'none' : 'length';
    contentLength = fields.contentLength;
  } else {
    framing = 'close';
  }
  const raw = end === buf.length ? buf : buf.subarray(0, end);
  const head = new ParsedHead(raw, lineEnd + 2, null, 0, 0, -1, minor, status, fields, framing, contentLength, framing !== 'close' && keepAliveOf(minor, fields.connection), false);
  return { value: head, consumed: end };
}

interface Fields {
  /** Offsets relative to the head's first byte (see HttpHead.fields). */
  spans: number[];
  host: string | undefined;
  hostCount: number;
  /** -1 when absent. */
  contentLength: number;
  /** Transfer-Encoding field lines; the `chunked` codings among them; whether the last coding so far is chunked. */
  te: number;
  teChunked: number;
  teFinalChunked: boolean;
  connection: string[];
  upgrade: string | undefined;
  expect: string | undefined;
  forwarded: boolean;
  accept: string | undefined;
  untidy: boolean;
}

/** Header field lines between `pos` and the blank line ending at `end` (§5); offsets recorded relative to `base`. */
function parseFields(buf: Buffer, base: number, pos: number, end: number, limits: HeadLimits, source: 'client' | 'backend'): Fields {
  const status = source === 'client' ? 400 : 502;
  const fields: Fields = { spans: [], host: undefined, hostCount: 0, contentLength: -1, te: 0, teChunked: 0, teFinalChunked: false, connection: [], upgrade: undefined, expect: undefined, forwarded: false, accept: undefined, untidy: false };
  const spans = fields.spans;
  const last = end - 2; // the blank line's CR
  while (pos < last) {
    // Every line ends in CRLF before `end` (findHeadEnd), and CR is neither a tchar nor a
    // value byte, so each loop below stops on the line at the latest.
    const first = buf[pos] as number;
    if (first === 0x20 || first === 0x09) throw new HttpParseError('obs-fold (line folding) in a header', status, source);
    let i = pos;
    while (TCHAR[buf[i] as number] === 1) i++;
    if (i === pos || buf[i] !== 0x3a) throw new HttpParseError('invalid header name', status, source);
    const nameEnd = i;
    i++;
    while (buf[i] === 0x20 || buf[i] === 0x09) i++;
    let lineEnd = i;
    while (VALUE_CHAR[buf[lineEnd] as number] === 1) lineEnd++;
    // Stopped on something other than the line's CRLF: a control byte, or a bare CR.
    if (buf[lineEnd] !== CR || buf[lineEnd + 1] !== LF) throw new HttpParseError(`invalid character in header ${buf.toString('latin1', pos, nameEnd)}`, status, source);
    let valueEnd = lineEnd;
    while (valueEnd > i && (buf[valueEnd - 1] === 0x20 || buf[valueEnd - 1] === 0x09)) valueEnd--;
    const lf = lineEnd + 1;
    if (spans.length >= limits.maxHeaders * 4) throw new HttpParseError(`more than ${limits.maxHeaders} headers`, source === 'client' ? 431 : 502, source);
    spans.push(pos - base, nameEnd - base, i - base, valueEnd - base);
    noteField(fields, buf, pos, nameEnd, i, valueEnd, status, source);
    pos = lf + 1;
  }
  return fields;
}

/** True when buf[start, start + lower.length) is `lower` in any case (`lower`: lowercase letters, digits and '-'). */
export function bytesAre(buf: Buffer, start: number, lower: string): boolean {
  for (let k = 0; k < lower.length; k++) if (((buf[start + k] as number) | 0x20) !== lower.charCodeAt(k)) return false;
  return true;
}

/** The fields the proxy acts on become strings; the rest stay bytes. Names are compared by length first. */
function noteField(fields: Fields, buf: Buffer, name: number, nameEnd: number, value: number, valueEnd: number, status: number, source: 'client' | 'backend'): void {
  switch (nameEnd - name) {
    case 4:
      if (bytesAre(buf, name, 'host')) {
        if (!tidy(buf, nameEnd, value, valueEnd)) fields.untidy = true;
        fields.hostCount++;
        fields.host = buf.toString('latin1', value, valueEnd);
      }
      return;
    case 6:
      if (bytesAre(buf, name, 'expect')) fields.expect = buf.toString('latin1', value, valueEnd);
      else if (source === 'client' && fields.accept === undefined && bytesAre(buf, name, 'accept')) fields.accept = buf.toString('latin1', value, valueEnd);
      return;
    case 7:
      if (bytesAre(buf, name, 'upgrade')) fields.upgrade = buf.toString('latin1', value, valueEnd);
      return;
    case 10:
      if (bytesAre(buf, name, 'connection')) {
        // The usual single tokens without a string per message.
        if (valueEnd - value === 10 && bytesAre(buf, value, 'keep-alive')) fields.connection.push('keep-alive');
        else if (valueEnd - value === 5 && bytesAre(buf, value, 'close')) fields.connection.push('close');
        else {
          for (const token of buf.toString('latin1', value, valueEnd).split(',')) {
            // Only SP and HTAB are whitespace (trim() would also drop 0xA0).
            const t = token.replace(OWS_AROUND, '').toLowerCase();
            if (t !== '') fields.connection.push(t);
          }
        }
      }
      return;
    case 14:
      if (bytesAre(buf, name, 'content-length')) {
        noteContentLength(fields, buf, value, valueEnd, status, source);
        if (!tidy(buf, nameEnd, value, valueEnd)) fields.untidy = true;
      }
      return;
    case 15:
    case 16:
    case 17:
      if (bytesAre(buf, name, 'x-forwarded-')) {
        const rest = nameEnd - name - 12;
        if ((rest === 3 && bytesAre(buf, name + 12, 'for')) || (rest === 4 && bytesAre(buf, name + 12, 'host')) || (rest === 5 && bytesAre(buf, name + 12, 'proto'))) fields.forwarded = true;
      } else if (nameEnd - name === 17 && bytesAre(buf, name, 'transfer-encoding')) {
        noteTransferEncoding(fields, buf, value, valueEnd, status, source);
        if (!tidy(buf, nameEnd, value, valueEnd)) fields.untidy = true;
      }
      return;
  }
}

/** The value follows the colon directly or after one SP, and the line's CR follows it (offsets in `buf`). */
export function tidy(buf: Buffer, nameEnd: number, value: number, valueEnd: number): boolean {
  return buf[valueEnd] === CR && (value === nameEnd + 1 || (value === nameEnd + 2 && buf[nameEnd + 1] === 0x20));
}

/** Leading and trailing OWS: SP and HTAB only (RFC 9110 §5.6.3). */
const OWS_AROUND = /^[ \t]+|[ \t]+$/g;

/**
 * Content-Length = 1*DIGIT (RFC 9110 §8.6), once. The list form ("5, 5")
 * and repeated fields, equal or not, are refused: §8.6 lets a recipient
 * either refuse them or merge them, and a proxy that forwards them as they
 * came leaves the next hop to choose (nginx and llhttp refuse too).
 */
function noteContentLength(fields: Fields, buf: Buffer, value: number, valueEnd: number, status: number, source: 'client' | 'backend'): void {
  if (fields.contentLength >= 0) throw new HttpParseError('more than one Content-Length', status, source);
  // 15 digits stay exact as a JS number.
  if (valueEnd === value || valueEnd - value > 15) throw new HttpParseError('invalid Content-Length', status, source);
  let n = 0;
  for (let i = value; i < valueEnd; i++) {
    const d = (buf[i] as number) - 0x30;
    if (d < 0 || d > 9) throw new HttpParseError('invalid Content-Length', status, source);
    n = n * 10 + d;
  }
  fields.contentLength = n;
}

// Transfer-Encoding grammar states (RFC 9112 §6.1, §7: #transfer-coding).
const TE_ELEMENT = 0; //     start of a list element: OWS, then a coding
const TE_CODING = 1; //      in a coding's token
const TE_AFTER = 2; //       after a coding or parameter: OWS, then ',' ';' or the end
const TE_PARAM = 3; //       after ';': OWS, then a parameter name
const TE_PARAM_NAME = 4;
const TE_BEFORE_EQ = 5; //   BWS, then '='
const TE_AFTER_EQ = 6; //    BWS, then a token or a quoted-string
const TE_PARAM_TOKEN = 7;
const TE_QUOTED = 8;
const TE_QUOTED_PAIR = 9;

/**
 * One Transfer-Encoding field line, checked against the grammar
 * (transfer-coding = token *( OWS ";" OWS token BWS "=" BWS ( token /
 * quoted-string ) )) byte by byte: anything else, such as 0xA0 next to
 * `chunked`, an empty element or parameters on chunked, is refused rather
 * than trimmed or ignored, since the next hop may read it otherwise.
 * Field lines add up in order (RFC 9110 §5.3).
 */
function noteTransferEncoding(fields: Fields, buf: Buffer, value: number, valueEnd: number, status: number, source: 'client' | 'backend'): void {
  fields.te++;
  let state = TE_ELEMENT;
  let coding = value;
  for (let i = value; i <= valueEnd; i++) {
    // valueEnd stands for the end of the value (a ',' would not be allowed there either).
    const c = i === valueEnd ? -1 : (buf[i] as number);
    const ows = c === 0x20 || c === 0x09;
    switch (state) {
      case TE_ELEMENT:
        if (ows) continue;
        if (c < 0 || TCHAR[c] !== 1) break;
        coding = i;
        state = TE_CODING;
        continue;
      case TE_CODING:
        if (c >= 0 && TCHAR[c] === 1) continue;
        if (i - coding === 7 && bytesAre(buf, coding, 'chunked')) {
          fields.teChunked++;
          fields.teFinalChunked = true;
          if (c === 0x3b || (ows && nextNonOws(buf, i, valueEnd) === 0x3b)) break; // chunked takes no parameters
        } else {
          fields.teFinalChunked = false;
        }
        state = TE_AFTER;
        i--;
        continue;
      case TE_AFTER:
        if (ows) continue;
        if (c < 0) return;
        if (c === 0x2c) state = TE_ELEMENT;
        else if (c === 0x3b) state = TE_PARAM;
        else break;
        continue;
      case TE_PARAM:
        if (ows) continue;
        if (c < 0 || TCHAR[c] !== 1) break;
        state = TE_PARAM_NAME;
        continue;
      case TE_PARAM_NAME:
        if (c >= 0 && TCHAR[c] === 1) continue;
        state = TE_BEFORE_EQ;
        i--;
        continue;
      case TE_BEFORE_EQ:
        if (ows) continue;
        if (c !== 0x3d) break;
        state = TE_AFTER_EQ;
        continue;
      case TE_AFTER_EQ:
        if (ows) continue;
        if (c === 0x22) state = TE_QUOTED;
        else if (c >= 0 && TCHAR[c] === 1) state = TE_PARAM_TOKEN;
        else break;
        continue;
      case TE_PARAM_TOKEN:
        if (c >= 0 && TCHAR[c] === 1) continue;
        state = TE_AFTER;
        i--;
        continue;
      case TE_QUOTED:
        if (c === 0x22) state = TE_AFTER;
        else if (c === 0x5c) state = TE_QUOTED_PAIR;
        else if (c < 0 || QDTEXT[c] !== 1) break;
        continue;
      case TE_QUOTED_PAIR:
        if (c < 0 || VALUE_CHAR[c] !== 1) break;
        state = TE_QUOTED;
        continue;
    }
    throw new HttpParseError('invalid Transfer-Encoding', status, source);
  }
}

/** The first byte at or after `i` that is not SP or HTAB (-1 at the end). */
function nextNonOws(buf: Buffer, i: number, end: number): number {
  while (i < end && (buf[i] === 0x20 || buf[i] === 0x09)) i++;
  return i < end ? (buf[i] as number) : -1;
}

function keepAliveOf(minor: number, connection: readonly string[]): boolean {
  if (connection.includes('close')) return false;
  return minor === 1 || connection.includes('keep-alive');
}
