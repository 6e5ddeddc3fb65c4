/**
 * Fuzzing the HTTP/1.x head parser, the chunked framer and the head
 * rewriter (issue 15: request smuggling) against llhttp, node's own parser:
 * a real node:http Server fed through `emit('connection', duplex)` with an
 * in-memory Duplex (requests) and a real http.request over an in-memory
 * Duplex given as `createConnection` (responses). No sockets.
 *
 * Inputs come from a grammar that mixes valid structure with the known
 * desync ingredients: every byte 0x00–0xFF around and inside Content-Length
 * and Transfer-Encoding values, duplicates and lists, obs-fold, bare CR and
 * LF, absolute-form targets, odd methods and versions, odd bytes in names,
 * chunk sizes, extensions and trailers, and a request pipelined behind.
 *
 * Agreement means: whatever the proxy accepts, llhttp accepts with the same
 * method, target, host, status and body (so the same framing: the next
 * message starts at the same byte), or llhttp refuses it for one of the
 * classes the RFCs allow and llhttp does not (the conformance corpus,
 * test/fixtures/http-conformance: lower-case or unknown methods, BWS in
 * chunk extensions, Content-Length in a trailer); refusing what llhttp
 * accepts is the proxy being stricter, always allowed.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PolyproxyError } from '../../src/core/errors.ts';
import { ChunkedFramer } from '../../src/protocols/http/chunked.ts';
import { parseRequestHead, parseResponseHead } from '../../src/protocols/http/head-parser.ts';
import type { HttpHead } from '../../src/protocols/http/head-parser.ts';
import { requestHeadBytes, responseHeadBytes } from '../../src/protocols/http/rewrite.ts';
import { chunked, cuts, fuzz, fuzzAsync } from '../helpers/fuzz.ts';

const latin1 = (text: string): Buffer => Buffer.from(text, 'latin1');

// ---- llhttp through node:http, in memory ------------------------------------------

/** An in-memory socket: what is pushed is read by node:http, what it writes is kept. */
class MemorySocket extends Duplex {
  readonly written: Buffer[] = [];
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.written.push(chunk);
    callback();
  }
  // node:http calls these on its sockets.
  setTimeout(): this {
    return this;
  }
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
}

/** One message as a peer understood it. */
interface Meaning {
  readonly method: string;
  /** Request: the host it is for (absolute-form authority, else Host). */
  readonly host: string;
  /** Request: the origin-form target. */
  readonly target: string;
  readonly status: number;
  readonly body: string;
}

interface RefRequests {
  /** Requests llhttp read whole, in order. */
  readonly messages: Meaning[];
  /** llhttp's error code, if it refused something (after `messages`). */
  error: string | null;
}

/** A request target in origin form (RFC 9112 §3.2.1, §3.2.4): an absolute-form one loses scheme and authority. */
function splitTarget(method: string, target: string, host: string | undefined): { host: string; path: string } {
  const abs = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)(.*)$/i.exec(target);
  if (abs === null) return { host: host ?? '', path: target };
  const path = abs[3] as string;
  return { host: abs[2] as string, path: path === '' ? (method === 'OPTIONS' ? '*' : '/') : path.startsWith('/') ? path : `/${path}` };
}

function hostOf(rawHeaders: readonly string[]): string | undefined {
  for (let k = 0; k < rawHeaders.length; k += 2) if ((rawHeaders[k] as string).toLowerCase() === 'host') return rawHeaders[k + 1];
  return undefined;
}

const sinks = new WeakMap<object, { result: RefRequests; heads: number }>();
// Defaults (strict llhttp); a missing Host is the proxy's to refuse, not a parser matter.
const reference = http.createServer({ requireHostHeader: false });
function referenceOnRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
  const sink = sinks.get(req.socket);
  if (sink === undefined) return;
  const body: Buffer[] = [];
  // Bodies end in order, but a request's 'end' may come after the next one's head: keep its place.
  const slot = sink.heads++;
  req.on('data', (chunk: Buffer) => body.push(chunk));
  req.on('end', () => {
    const { host, path } = splitTarget(req.method ?? '', req.url ?? '', hostOf(req.rawHeaders));
    sink.result.messages[slot] = { method: req.method ?? '', host, target: path, status: 0, body: Buffer.concat(body).toString('latin1') };
    res.end();
  });
}
reference.on('request', referenceOnRequest);
// An Expect other than 100-continue is node:http's to answer (417), not llhttp's: read the request anyway.
reference.on('checkExpectation', referenceOnRequest);
reference.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
  const sink = sinks.get(socket);
  if (sink !== undefined && sink.result.error === null) sink.result.error = err.code ?? err.message;
  // Later: a request body read before the error still ends (its 'end' is queued).
  setImmediate(() => socket.destroy());
});

/** What llhttp makes of `bytes` sent by a client that then half-closes. */
function llhttpRequests(bytes: Buffer): Promise<RefRequests> {
  const socket = new MemorySocket();
  const result: RefRequests = { messages: [], error: null };
  sinks.set(socket, { result, heads: 0 });
  return new Promise((resolve) => {
    socket.on('error', () => {});
    socket.on('close', () => {
      // A request whose head was read but whose body never ended leaves a hole: drop it and what follows.
      for (let i = 0; i < result.messages.length; i++) {
        if (result.messages[i] === undefined) {
          result.messages.length = i;
          break;
        }
      }
      resolve(result);
    });
    reference.emit('connection', socket);
    socket.push(bytes);
    socket.push(null);
  });
}

interface RefResponse {
  readonly message: Meaning | null;
  readonly error: string | null;
}

/** What a node:http client makes of `bytes` as the answer to a `method` request (interim 1xx skipped). */
function llhttpResponse(bytes: Buffer, method: string): Promise<RefResponse> {
  const socket = new MemorySocket();
  socket.on('error', () => {});
  return new Promise((resolve) => {
    let settled = false;
    const done = (value: RefResponse): void => {
      if (settled) return;
      settled = true;
      resolve(value);
      socket.destroy();
    };
    const req = http.request({ method, path: '/', headers: { host: 'r.test' }, createConnection: () => socket }, (res) => {
      const body: Buffer[] = [];
      res.on('data', (chunk: Buffer) => body.push(chunk));
      res.on('end', () => done({ message: { method, host: '', target: '', status: res.statusCode ?? 0, body: Buffer.concat(body).toString('latin1') }, error: null }));
      res.on('aborted', () => done({ message: null, error: 'aborted' }));
      res.on('error', (err: NodeJS.ErrnoException) => done({ message: null, error: err.code ?? err.message }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => done({ message: null, error: err.code ?? err.message }));
    req.on('close', () => setImmediate(() => done({ message: null, error: 'closed' })));
    req.end();
    setImmediate(() => {
      socket.push(bytes);
      socket.push(null);
    });
  });
}

// ---- the proxy's view (its parsers, as the listener runs them) ---------------------

/** The data of a chunked body the framer accepted (sizes, extensions and trailers dropped). */
function dechunk(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', at, 'latin1');
    const size = Number.parseInt(body.toString('latin1', at, lineEnd).split(/[ \t;]/)[0] as string, 16);
    if (size === 0) return Buffer.concat(parts);
    parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
}

/** The body after a head as the proxy frames it: its wire bytes and data; null when the bytes end first, 'error' when refused. */
function frameBody(head: HttpHead, rest: Buffer, source: 'client' | 'backend'): { wire: Buffer; data: Buffer } | null | 'error' {
  switch (head.framing) {
    case 'none':
      return { wire: rest.subarray(0, 0), data: rest.subarray(0, 0) };
    case 'length':
      return rest.length < head.contentLength ? null : { wire: rest.subarray(0, head.contentLength), data: rest.subarray(0, head.contentLength) };
    case 'close':
      return { wire: rest, data: rest };
    case 'chunked': {
      let end: number;
      try {
        end = new ChunkedFramer(source).feed(rest);
      } catch (err) {
        assertProtocol(err);
        return 'error';
      }
      return end < 0 ? null : { wire: rest.subarray(0, end), data: dechunk(rest.subarray(0, end)) };
    }
  }
}

function assertProtocol(err: unknown): void {
  if (!(err instanceof PolyproxyError && err.kind === 'PROTOCOL')) throw err;
}

interface ProxyMessage {
  readonly meaning: Meaning;
  readonly head: HttpHead;
  /** The body's bytes as received (forwarded unchanged). */
  readonly wire: Buffer;
}

interface ProxyRequests {
  readonly messages: ProxyMessage[];
  /** done: the bytes ran out between messages; close: the message ends the connection; refused; incomplete: they ran out inside one. */
  readonly end: 'done' | 'close' | 'refused' | 'incomplete';
}

function meaningOf(head: HttpHead, data: Buffer): Meaning {
  return { method: head.method, host: head.host ?? '', target: head.originTarget, status: head.status, body: data.toString('latin1') };
}

/** The requests the proxy parses from `bytes`, in order. */
function proxyRequests(bytes: Buffer): ProxyRequests {
  const messages: ProxyMessage[] = [];
  let buf = bytes;
  while (buf.length > 0) {
    let parsed;
    try {
      parsed = parseRequestHead(buf);
    } catch (err) {
      assertProtocol(err);
      return { messages, end: 'refused' };
    }
    if (parsed === undefined) return { messages, end: 'incomplete' };
    const head = parsed.value;
    const framed = frameBody(head, buf.subarray(parsed.consumed), 'client');
    if (framed === 'error') return { messages, end: 'refused' };
    if (framed === null) return { messages, end: 'incomplete' };
    messages.push({ meaning: meaningOf(head, framed.data), head, wire: framed.wire });
    if (!head.keepAlive) return { messages, end: 'close' };
    buf = buf.subarray(parsed.consumed + framed.wire.length);
  }
  return { messages, end: 'done' };
}

/** The final response the proxy parses from a backend's bytes (interim 1xx skipped); null message when refused or cut. */
function proxyResponse(bytes: Buffer, method: string): { message: ProxyMessage | null; end: 'done' | 'refused' | 'cut'; used: number } {
  let buf = bytes;
  for (;;) {
    let parsed;
    try {
      parsed = parseResponseHead(buf, method);
    } catch (err) {
      assertProtocol(err);
      return { message: null, end: 'refused', used: 0 };
    }
    if (parsed === undefined) return { message: null, end: 'refused', used: 0 };
    const head = parsed.value;
    buf = buf.subarray(parsed.consumed);
    // 101 switches protocols: no HTTP message follows (the listener relays bytes).
    if (head.status < 200 && head.status !== 101) continue;
    const framed = frameBody(head, buf, 'backend');
    if (framed === 'error' || framed === null) return { message: null, end: 'cut', used: 0 };
    return { message: { meaning: meaningOf(head, framed.data), head, wire: framed.wire }, end: 'done', used: bytes.length - buf.length + framed.wire.length };
  }
}

// ---- where the RFCs allow what llhttp refuses ------------------------------------

/** Chunk-size lines of a chunked body the framer accepted, and its trailer section. */
function chunkedParts(wire: Buffer): { sizeLines: string[]; trailers: string } {
  const sizeLines: string[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = wire.indexOf('\r\n', at, 'latin1');
    const line = wire.toString('latin1', at, lineEnd);
    sizeLines.push(line);
    const size = Number.parseInt(line.split(/[ \t;]/)[0] as string, 16);
    if (size === 0) return { sizeLines, trailers: wire.toString('latin1', lineEnd + 2) };
    at = lineEnd + 2 + size + 2;
  }
}

/**
 * Why llhttp may read a message the proxy accepted with other framing, or
 * null: a Transfer-Encoding value followed by whitespace holding an HTAB.
 * That is OWS, not part of the value (RFC 9110 §5.5), so the coding is
 * chunked; llhttp takes `chunked<HTAB>` for another coding (a request:
 * refused; a response: read to the close). The proxy forwards such lines as
 * `name: value` (HttpHead.untidy), which llhttp reads as chunked: the
 * properties on what is forwarded allow no such difference.
 */
function llhttpReadsOtherwise(message: ProxyMessage): string | null {
  return /\r\ntransfer-encoding:[^\r]*\t[ \t]*\r\n/i.test(message.head.raw.toString('latin1')) ? 'HTAB after a Transfer-Encoding value (RFC 9110 §5.5)' : null;
}

/**
 * Why llhttp may refuse a message the proxy accepted (test/fixtures/http-conformance
 * lists each class with its RFC section), or null when it must not.
 */
function rfcAllowed(message: ProxyMessage): string | null {
  const otherwise = llhttpReadsOtherwise(message);
  if (otherwise !== null) return otherwise;
  if (message.head.status === 0 && !http.METHODS.includes(message.head.method)) return 'any token is a method (RFC 9110 §9.1)';
  if (message.head.framing === 'chunked') {
    const { sizeLines, trailers } = chunkedParts(message.wire);
    if (sizeLines.some((line) => /[ \t]/.test(line))) return 'BWS in chunk extensions (RFC 9112 §7.1.1)';
    if (/(^|\r\n)(content-length|transfer-encoding):/i.test(trailers)) return 'trailer fields do not frame (RFC 9110 §6.5.1, RFC 9112 §7.1.2)';
  }
  return null;
}

/**
 * The proxy's requests against llhttp's, message by message: each one the
 * proxy accepted llhttp read with the same meaning, until llhttp refused
 * one the RFCs allow; and llhttp read no request the proxy did not.
 */
function assertRequestsAgree(proxy: ProxyRequests, ref: RefRequests, what: string): 'agreed' | 'llhttp stricter' {
  for (let i = 0; i < proxy.messages.length; i++) {
    const mine = proxy.messages[i] as ProxyMessage;
    const theirs = ref.messages[i];
    if (theirs === undefined) {
      assert.ok(ref.error !== null, `${what}: llhttp stopped before request ${i} without an error`);
      assert.ok(rfcAllowed(mine) !== null, `${what}: llhttp refused (${ref.error}) request ${i}, which the proxy accepted as ${JSON.stringify(mine.meaning)}`);
      return 'llhttp stricter';
    }
    assert.deepEqual(theirs, mine.meaning, `${what}: request ${i} means something else to llhttp`);
  }
  // What llhttp read beyond: only requests the proxy refused (stricter), never more after a message both
  // framed (the proxy reads on until it refuses, runs out, or a message ends the connection).
  if (ref.messages.length > proxy.messages.length) {
    assert.ok(proxy.end === 'refused', `${what}: llhttp read ${ref.messages.length} requests, the proxy ${proxy.messages.length} (${proxy.end})`);
  }
  return 'agreed';
}

/** How often each outcome came up, as a property's diagnostic: the grammar must reach every one. */
class Tally {
  readonly #counts = new Map<string, number>();
  add(outcome: string): void {
    this.#counts.set(outcome, (this.#counts.get(outcome) ?? 0) + 1);
  }
  toString(): string {
    return [...this.#counts].map(([outcome, n]) => `${outcome} ${n}`).join(', ');
  }
}

// ---- the grammar ----------------------------------------------------------------

/** A byte as a latin1 character: any of 0x00–0xFF, the interesting ones more often. */
const anyByte = fc.oneof(
  fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)),
  fc.constantFrom(' ', '\t', '\r', '\n', '\0', '\x0b', '\x0c', '\xa0', '\x85', ',', ';', '"', '=', ':', '+', '-', '0', 'x'),
);

/** Mostly `usual`, now and then an odd byte or the empty string. */
function sometimes(usual: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.oneof({ arbitrary: usual, weight: 8 }, { arbitrary: anyByte, weight: 1 }, { arbitrary: fc.constant(''), weight: 1 });
}

const ows = fc.oneof({ arbitrary: fc.constant(' '), weight: 6 }, fc.constantFrom('', '\t', '  ', ' \t'), anyByte);
const eol = fc.oneof({ arbitrary: fc.constant('\r\n'), weight: 20 }, fc.constantFrom('\n', '\r', '\r\r\n', '\n\r'));

const methodName = fc.oneof(
  { arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'HEAD', 'DELETE', 'OPTIONS', 'PATCH'), weight: 12 },
  fc.constantFrom('get', 'Post', 'FOO', 'M-SEARCH', 'PROPFIND', 'TRACE', 'CONNECT', 'G@T', 'GE T', ''),
  fc.tuple(fc.constantFrom('GET', 'POST'), anyByte).map(([m, c]) => m + c),
);
const target = fc.oneof(
  { arbitrary: fc.constantFrom('/', '/a', '/a?b=c', '/a/b/', '//x', '/%2e%2e/'), weight: 8 },
  fc.constantFrom('*', 'http://a.test/x', 'http://b.test', 'HTTP://a.test:8080?q', 'https://a.test/', 'http://u@a.test/', 'http://:80/', 'ftp://a.test/', 'a.test:80', 'http://a.test#f', '/a#b'),
  fc.tuple(fc.constantFrom('/', '/a', 'http://a.test/'), anyByte, fc.constantFrom('', 'b')).map((parts) => parts.join('')),
);
const version = fc.oneof({ arbitrary: fc.constantFrom('HTTP/1.1', 'HTTP/1.0'), weight: 12 }, fc.constantFrom('HTTP/1.2', 'HTTP/2.0', 'http/1.1', 'HTTP/1.10', 'HTTP/1', 'HTTP/1.1 ', ''));
const sp = fc.oneof({ arbitrary: fc.constant(' '), weight: 20 }, fc.constantFrom('  ', '\t', ''));

/** A number, or a list or other thing a Content-Length value must not be. */
const contentLengthValue = fc.oneof(
  { arbitrary: fc.integer({ min: 0, max: 12 }).map(String), weight: 8 },
  fc.constantFrom('05', '+3', '-1', '3, 3', '3,3', '3 3', '0x3', '', '99999999999999999999', '3.0'),
  fc.tuple(fc.integer({ min: 0, max: 12 }).map(String), anyByte, fc.nat(2)).map(([n, c, where]) => (where === 0 ? c + n : where === 1 ? n + c : n.slice(0, 1) + c + n.slice(1))),
);
const transferEncodingValue = fc.oneof(
  { arbitrary: fc.constant('chunked'), weight: 8 },
  fc.constantFrom('Chunked', 'CHUNKED', 'gzip, chunked', 'chunked, gzip', 'chunked, chunked', 'chunked;a=b', 'identity', 'xchunked', 'chunked,', ',chunked', '"chunked"', 'gzip', ''),
  fc.tuple(anyByte, fc.constantFrom('chunked', 'gzip, chunked'), fc.boolean()).map(([c, v, before]) => (before ? c + v : v + c)),
);
const headerName = fc.oneof(
  { arbitrary: fc.constantFrom('X-A', 'Accept', 'Connection', 'Expect', 'Upgrade', 'Keep-Alive', 'X-Forwarded-For'), weight: 6 },
  fc.tuple(fc.constantFrom('X', 'Content-Length', 'Transfer-Encoding', 'Host'), anyByte, fc.boolean()).map(([n, c, before]) => (before ? c + n : n + c)),
);
const headerValue = fc.oneof(
  { arbitrary: fc.constantFrom('1', 'close', 'keep-alive', 'upgrade', 'Content-Length', '100-continue', 'caf\xe9', '*/*', '1.2.3.4'), weight: 6 },
  fc.tuple(fc.constantFrom('a', ''), anyByte, fc.constantFrom('b', '')).map((parts) => parts.join('')),
);

/** One header field line (without its line end), from the framing fields out to junk. */
const field = fc.oneof(
  { arbitrary: fc.tuple(fc.constantFrom('Host', 'host', 'HOST'), ows, sometimes(fc.constantFrom('a.test', 'b.test', 'a.test:8080', 'A.Test')), ows).map(([n, a, v, b]) => `${n}:${a}${v}${b}`), weight: 3 },
  { arbitrary: fc.tuple(fc.constantFrom('Content-Length', 'content-length'), ows, contentLengthValue, ows).map(([n, a, v, b]) => `${n}:${a}${v}${b}`), weight: 3 },
  { arbitrary: fc.tuple(fc.constantFrom('Transfer-Encoding', 'transfer-encoding'), ows, transferEncodingValue, ows).map(([n, a, v, b]) => `${n}:${a}${v}${b}`), weight: 3 },
  { arbitrary: fc.tuple(headerName, ows, headerValue).map(([n, a, v]) => `${n}:${a}${v}`), weight: 2 },
  fc.constantFrom(' obs-fold', '\tchunked', 'NoColon', ': empty-name', 'X : y', 'Connection: close', 'Connection: keep-alive', 'Connection: Transfer-Encoding', 'Expect: 100-continue'),
);

/** A chunked body: chunks, then the last chunk, trailers and the final CRLF; odd bytes anywhere in the framing. */
const chunkExt = fc.oneof(
  { arbitrary: fc.constant(''), weight: 10 },
  fc.constantFrom(';a', ';a=b', ';a="b c"', ';a="b;\\"c"', ';a=b;c', ' ;a', '; a', ';a = b', '\t;a', ';', ';a=', ';a="b', ';a=b c', ';a="\xe9"'),
  fc.tuple(fc.constantFrom(';a', ';a=', ';a="'), anyByte).map(([e, c]) => e + c),
);
const chunk = fc
  .tuple(fc.integer({ min: 1, max: 20 }), fc.constantFrom('', '0', '00'), fc.boolean(), chunkExt, eol, fc.oneof({ arbitrary: fc.constant(0), weight: 10 }, fc.constantFrom(-1, 1)), fc.constantFrom('\r\n', '\r\n', '\r\n', '\n', '', 'x\r\n'), fc.option(anyByte, { freq: 12 }))
  .map(([size, zeros, upper, ext, lineEnd, off, after, junk]) => {
    const hex = size.toString(16);
    return `${zeros}${upper ? hex.toUpperCase() : hex}${junk ?? ''}${ext}${lineEnd}${'d'.repeat(size + off)}${after}`;
  });
const trailer = fc.oneof(
  { arbitrary: fc.constant(''), weight: 6 },
  fc.constantFrom('X-T: 1\r\n', 'Content-Length: 5\r\n', 'X-T:\r\n', 'X-T: 1\r\n 2\r\n', 'X T: 1\r\n', 'XT\r\n', 'X-T: 1\n', 'Transfer-Encoding: chunked\r\n'),
  fc.tuple(fc.constantFrom('X-T: a', 'X'), anyByte).map(([t, c]) => `${t}${c}b: 1\r\n`),
);
const chunkedBody = fc
  .tuple(fc.array(chunk, { maxLength: 3 }), fc.constantFrom('0', '00', '0', '0'), chunkExt, eol, trailer, fc.constantFrom('\r\n', '\r\n', '\r\n', '\n', '', '\r'))
  .map(([chunks, zero, ext, lineEnd, trailers, final]) => `${chunks.join('')}${zero}${ext}${lineEnd}${trailers}${final}`);

const body = fc.oneof({ arbitrary: chunkedBody, weight: 3 }, fc.constantFrom('', 'hello', 'he', '0\r\n\r\n'), fc.string({ maxLength: 12 }));

const NEXT = 'GET /next HTTP/1.1\r\nHost: a.test\r\n\r\n';

/** A request: request line, fields, line ends, body, and now and then one pipelined behind it. */
const request = fc
  .tuple(methodName, sp, target, sp, version, eol, fc.array(fc.tuple(field, eol), { maxLength: 6 }), eol, body, fc.constantFrom('', NEXT, NEXT, 'G'))
  .map(([method, s1, t, s2, v, lineEnd, fields, blank, b, next]) => `${method}${s1}${t}${s2}${v}${lineEnd}${fields.map(([f, e]) => f + e).join('')}${blank}${b}${next}`);

/** A chunked body in the grammar, without what llhttp refuses (BWS in extensions, framing trailers). */
const validChunkedBody = fc
  .tuple(
    fc.array(fc.tuple(fc.integer({ min: 1, max: 40 }), fc.constantFrom('', ';a', ';a=b', ';a="b c"', ';x=1;y')), { maxLength: 3 }),
    fc.constantFrom('', 'X-T: 1\r\n', 'X-T: a\r\nY:\r\n'),
  )
  .map(([chunks, trailers]) => `${chunks.map(([size, ext]) => `${size.toString(16)}${ext}\r\n${'d'.repeat(size)}\r\n`).join('')}0\r\n${trailers}\r\n`);

/** A request with a body framed by Content-Length or chunked (valid or not), another request behind it. */
function framedRequestOf(chunkedBodies: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc
    .tuple(fc.constantFrom('POST', 'PUT'), fc.constantFrom('/', 'http://a.test/u'), fc.boolean(), chunkedBodies, fc.string({ maxLength: 8 }))
  .map(([method, t, te, b, plain]) =>
    te
      ? `${method} ${t} HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n${b}${NEXT}`
      : `${method} ${t} HTTP/1.1\r\nHost: a.test\r\nContent-Length: ${Buffer.byteLength(plain, 'latin1')}\r\n\r\n${plain}${NEXT}`,
  );
}
const framedRequest = framedRequestOf(chunkedBody);

// ---- responses -------------------------------------------------------------------

const statusCode = fc.oneof({ arbitrary: fc.constantFrom('200', '404', '500', '201'), weight: 8 }, fc.constantFrom('204', '304', '100', '199', '099', '2000', '20', '600', '999', 'abc'));
const reason = fc.oneof({ arbitrary: fc.constantFrom(' OK', ' Not Found', ''), weight: 6 }, fc.constantFrom(' ', ' \xe9t\xe9', ' a\tb'), anyByte.map((c) => ` a${c}`));
const interim = fc.constantFrom('', '', '', 'HTTP/1.1 100 Continue\r\n\r\n', 'HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n');
const response = fc
  .tuple(interim, fc.oneof({ arbitrary: fc.constantFrom('HTTP/1.1', 'HTTP/1.0'), weight: 10 }, fc.constantFrom('HTTP/1.2', 'HTTP/2.0', 'http/1.1', 'HTTP/1.1 ')), sp, statusCode, reason, eol)
  .chain(([pre, v, s, code, r, lineEnd]) =>
    fc.tuple(fc.constant(`${pre}${v}${s}${code}${r}${lineEnd}`), fc.array(fc.tuple(field, eol), { maxLength: 5 }), eol, body, fc.constantFrom('GET', 'GET', 'HEAD')),
  )
  .map(([line, fields, blank, b, method]) => ({ text: `${line}${fields.map(([f, e]) => f + e).join('')}${blank}${b}`, method }));

// ---- the properties --------------------------------------------------------------

const INFO = { clientAddress: '192.0.2.7', proto: 'http' };

/** Property 2 for one request: what the proxy forwards means the same to itself and to llhttp. */
async function assertForwardedRequest(message: ProxyMessage): Promise<void> {
  const forwarded = Buffer.concat([requestHeadBytes(message.head, INFO), message.wire]);
  const what = `forwarded ${JSON.stringify(forwarded.toString('latin1'))}`;
  const again = proxyRequests(forwarded);
  assert.equal(again.messages.length, 1, `${what}: the proxy does not re-parse its own output (${again.end})`);
  assert.deepEqual((again.messages[0] as ProxyMessage).meaning, message.meaning, `${what}: means something else to the proxy`);
  assertRequestsAgree(again, await llhttpRequests(forwarded), what);
}

describe('HTTP request heads against llhttp', () => {
  it('whatever the proxy accepts, llhttp reads with the same method, host, target and body, or refuses as the RFCs allow', async (t) => {
    const tally = new Tally();
    await fuzzAsync(
      t,
      fc.asyncProperty(fc.oneof({ arbitrary: request, weight: 3 }, framedRequest), async (text) => {
        const bytes = latin1(text);
        const proxy = proxyRequests(bytes);
        const ref = await llhttpRequests(bytes);
        const outcome = assertRequestsAgree(proxy, ref, JSON.stringify(text));
        tally.add(proxy.messages.length === 0 ? (ref.messages.length === 0 ? 'both refused' : 'proxy stricter') : outcome === 'agreed' ? 'read alike' : outcome);
      }),
    );
    t.diagnostic(`outcomes: ${tally}`);
  });

  it('well-formed requests are read by both, the same way (the grammar is not all refusals)', async (t) => {
    await fuzzAsync(
      t,
      fc.asyncProperty(framedRequestOf(validChunkedBody), async (text) => {
        const bytes = latin1(text);
        const proxy = proxyRequests(bytes);
        const ref = await llhttpRequests(bytes);
        assertRequestsAgree(proxy, ref, JSON.stringify(text));
        assert.equal(proxy.messages.length, 2, `the proxy read ${proxy.messages.length} requests (${proxy.end})`);
        assert.equal(ref.messages.length, 2, `llhttp read ${ref.messages.length} requests (${ref.error})`);
      }),
    );
  });

  it('what the proxy forwards (rewritten head, body as framed) re-parses to the same meaning by the proxy and by llhttp', async (t) => {
    await fuzzAsync(
      t,
      fc.asyncProperty(fc.oneof(request, framedRequest), async (text) => {
        for (const message of proxyRequests(latin1(text)).messages) await assertForwardedRequest(message);
      }),
    );
  });
});

describe('HTTP response heads against llhttp', () => {
  it('whatever the proxy accepts, a node:http client reads with the same status and body, or refuses as the RFCs allow', async (t) => {
    const tally = new Tally();
    await fuzzAsync(
      t,
      fc.asyncProperty(response, async ({ text, method }) => {
        const bytes = latin1(text);
        const proxy = proxyResponse(bytes, method);
        tally.add(`proxy ${proxy.end}`);
        if (proxy.message === null) return; // refused (502) or cut: nothing is forwarded as complete
        // What follows the response is not the client's (the proxy does not forward it): the client reads the
        // bytes the proxy framed as the response, and must end it where the proxy did.
        const ref = await llhttpResponse(bytes.subarray(0, proxy.used), method);
        const what = `${method} ${JSON.stringify(bytes.toString('latin1'))}`;
        if (ref.message === null) {
          assert.ok(rfcAllowed(proxy.message) !== null, `${what}: llhttp refused (${ref.error}) what the proxy read as ${JSON.stringify(proxy.message.meaning)}`);
          tally.add('llhttp stricter');
          return;
        }
        const theirs = { status: ref.message.status, body: ref.message.body };
        const mine = { status: proxy.message.meaning.status, body: proxy.message.meaning.body };
        if (llhttpReadsOtherwise(proxy.message) === null) assert.deepEqual(theirs, mine, what);
        else tally.add('llhttp reads chunked<HTAB> otherwise');
      }),
    );
    t.diagnostic(`outcomes: ${tally}`);
  });

  it('what the proxy forwards re-parses to the same status and body by the proxy and by llhttp', async (t) => {
    await fuzzAsync(
      t,
      fc.asyncProperty(response, async ({ text, method }) => {
        const bytes = latin1(text);
        const { message } = proxyResponse(bytes, method);
        if (message === null || message.head.status === 101) return;
        const close = message.head.framing === 'close' || !message.head.keepAlive;
        const forwarded = Buffer.concat([responseHeadBytes(message.head, 1, close, ''), message.wire]);
        const what = `${method} forwarded ${JSON.stringify(forwarded.toString('latin1'))}`;
        const again = proxyResponse(forwarded, method);
        assert.ok(again.message !== null, `${what}: the proxy does not re-parse its own output (${again.end})`);
        assert.deepEqual(again.message.meaning, message.meaning, what);
        const ref = await llhttpResponse(forwarded, method);
        if (ref.message === null) {
          assert.ok(rfcAllowed(message) !== null, `${what}: llhttp refused (${ref.error})`);
          return;
        }
        assert.deepEqual({ status: ref.message.status, body: ref.message.body }, { status: message.meaning.status, body: message.meaning.body }, what);
      }),
    );
  });
});

/** Feeds `pieces` to a new framer: where the body ends in the whole stream, or 'refused', or 'more'. */
function frameInPieces(pieces: readonly Buffer[]): number | 'refused' | 'more' {
  const framer = new ChunkedFramer();
  let offset = 0;
  try {
    for (const piece of pieces) {
      const end = framer.feed(piece);
      if (end >= 0) return offset + end;
      offset += piece.length;
    }
  } catch (err) {
    assertProtocol(err);
    return 'refused';
  }
  return 'more';
}

describe('HTTP chunked framer', () => {
  it('finds the same body end (or refusal) under any chunking of its input', (t) => {
    const input = fc.tuple(chunkedBody, fc.constantFrom('', NEXT, 'x')).map(([b, after]) => latin1(b + after));
    fuzz(
      t,
      fc.property(input, cuts, (bytes, points) => {
        assert.equal(frameInPieces(chunked(bytes, points)), frameInPieces([bytes]));
      }),
    );
  });

  it('ends a chunked request body where llhttp does: the request behind it is the same to both', async (t) => {
    await fuzzAsync(
      t,
      fc.asyncProperty(chunkedBody, async (b) => {
        const bytes = latin1(`POST /c HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n${b}${NEXT}`);
        const proxy = proxyRequests(bytes);
        const ref = await llhttpRequests(bytes);
        assertRequestsAgree(proxy, ref, JSON.stringify(b));
        // The body ended where llhttp's did: both read the request behind it.
        if (proxy.messages.length === 2 && rfcAllowed(proxy.messages[0] as ProxyMessage) === null) assert.equal(ref.messages.length, 2);
      }),
    );
  });

  it('throws nothing but PolyproxyError PROTOCOL on arbitrary bytes, heads or framer, split anywhere', (t) => {
    const tokens = fc.constantFrom('GET / HTTP/1.1\r\n', 'HTTP/1.1 200 OK\r\n', 'Host: a\r\n', 'Content-Length: 3\r\n', 'Transfer-Encoding: chunked\r\n', '\r\n', '\n', '\r', ' ', ':', '\0', '0', 'f', ';', 'abc', '5\r\nhello\r\n', '0\r\n\r\n');
    const input = fc.oneof(fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)), fc.array(tokens, { maxLength: 20 }).map((parts) => latin1(parts.join(''))));
    const ok = (fn: () => unknown): void => {
      try {
        fn();
      } catch (err) {
        assertProtocol(err);
      }
    };
    fuzz(
      t,
      fc.property(input, fc.nat(), (buf, cut) => {
        ok(() => parseRequestHead(buf));
        ok(() => parseResponseHead(buf, 'GET'));
        const framer = new ChunkedFramer();
        const at = cut % (buf.length + 1);
        ok(() => framer.feed(buf, 0, at) >= 0 || framer.feed(buf, at));
      }),
    );
  });
});
