/**
 * The http head parser and chunked framer over wire bytes: whole, byte by
 * byte and split at every offset; every smuggling / injection case refused
 * with PROTOCOL. RFC 9112 §2–§7. (Their properties against llhttp, and
 * that nothing but PolyproxyError('PROTOCOL') is thrown: test/fuzz/http.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import { ChunkedFramer } from '../../../../src/protocols/http/chunked.ts';
import { errorResponse, statusOf } from '../../../../src/protocols/http/errors.ts';
import { HttpParseError, parseRequestHead, parseResponseHead } from '../../../../src/protocols/http/head-parser.ts';
import type { HttpHead } from '../../../../src/protocols/http/head-parser.ts';
import { normalizeHost } from '../../../../src/protocols/http/session.ts';

const b = (text: string): Buffer => Buffer.from(text, 'latin1');

/** Feeds growing prefixes the way a connection buffers them; returns the parse once complete. */
function incremental(bytes: Buffer, cuts: number[]): { value: HttpHead; consumed: number } {
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    const got = parseRequestHead(bytes.subarray(0, cut), undefined, from);
    if (got !== undefined) return got;
    from = cut;
  }
  throw new Error('never completed');
}

function isProtocol(status?: number): (err: unknown) => boolean {
  return (err) => err instanceof PolyproxyError && err.kind === 'PROTOCOL' && (status === undefined || (err as HttpParseError).status === status);
}

const GET = b('GET /p?q=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nAccept: */*\r\n\r\nNEXT');

describe('parseRequestHead', () => {
  it('parses a request whole, byte by byte and split at every offset', () => {
    const whole = parseRequestHead(GET);
    assert.ok(whole !== undefined);
    assert.equal(whole.consumed, GET.length - 4);
    assert.equal(whole.value.method, 'GET');
    assert.equal(whole.value.target, '/p?q=1');
    assert.equal(whole.value.host, 'Example.COM:8080');
    assert.equal(whole.value.framing, 'none');
    assert.equal(whole.value.keepAlive, true);
    assert.deepEqual(whole.value.connection, ['keep-alive', 'x-hop']);
    assert.equal(whole.value.headers.length, 4);
    const bytewise = incremental(GET, Array.from({ length: GET.length }, (_, i) => i + 1));
    assert.deepEqual(bytewise, whole);
    for (let cut = 1; cut < GET.length; cut++) assert.deepEqual(incremental(GET, [cut]), whole, `cut ${cut}`);
  });

  it('reads framing, keep-alive, upgrade and expect', () => {
    const post = parseRequestHead(b('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nExpect: 100-Continue\r\n\r\n'))?.value;
    assert.equal(post?.framing, 'length');
    assert.equal(post?.contentLength, 10);
    assert.equal(post?.expectContinue, true);
    const chunked = parseRequestHead(b('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n'))?.value;
    assert.equal(chunked?.framing, 'chunked');
    const old = parseRequestHead(b('GET / HTTP/1.0\r\n\r\n'))?.value;
    assert.equal(old?.keepAlive, false);
    assert.equal(old?.host, undefined);
    const ws = parseRequestHead(b('GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'))?.value;
    assert.equal(ws?.upgrade, 'websocket');
    assert.equal(parseRequestHead(b('\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n'))?.value.method, 'GET');
  });

  it('refuses every smuggling and injection case with PROTOCOL 400', () => {
    const bad = [
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 5\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n',
      'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nX\0: a\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nX : a\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n',
      'GET / HTTP/1.1\nHost: a\n\n',
      'GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n',
      'GET / HTTP/1.1\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
      'GET /a b HTTP/1.1\r\nHost: a\r\n\r\n',
      'G(T / HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET / HTTP/1.1 \r\nHost: a\r\n\r\n',
    ];
    for (const text of bad) assert.throws(() => parseRequestHead(b(text)), isProtocol(400), JSON.stringify(text));
    assert.throws(() => parseRequestHead(b('GET / HTTP/2.0\r\n\r\n')), isProtocol(505));
  });

  it('enforces the head size and header count limits with 431', () => {
    assert.throws(() => parseRequestHead(b(`GET / HTTP/1.1\r\nX: ${'a'.repeat(2000)}`), { maxHeadBytes: 1024, maxHeaders: 100 }), isProtocol(431));
    const many = `GET / HTTP/1.1\r\nHost: a\r\n${'X: 1\r\n'.repeat(5)}\r\n`;
    assert.throws(() => parseRequestHead(b(many), { maxHeadBytes: 1024, maxHeaders: 5 }), isProtocol(431));
  });
});

describe('parseResponseHead', () => {
  it('frames HEAD, 1xx, 204, 304, lengths, chunked and close-delimited bodies', () => {
    const r = (text: string, method = 'GET'): HttpHead | undefined => parseResponseHead(b(text), method)?.value;
    assert.equal(r('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', 'HEAD')?.framing, 'none');
    assert.equal(r('HTTP/1.1 100 Continue\r\n\r\n')?.framing, 'none');
    assert.equal(r('HTTP/1.1 204 No Content\r\n\r\n')?.framing, 'none');
    assert.equal(r('HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n')?.framing, 'none');
    assert.equal(r('HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n')?.contentLength, 9);
    assert.equal(r('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')?.framing, 'chunked');
    const close = r('HTTP/1.1 200 OK\r\n\r\n');
    assert.equal(close?.framing, 'close');
    assert.equal(close?.keepAlive, false);
    assert.equal(r('HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n')?.status, 200);
    for (let cut = 1; cut < 30; cut++) assert.equal(parseResponseHead(b('HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n').subarray(0, cut), 'GET'), undefined);
  });

  it('refuses malformed backend heads with 502', () => {
    for (const text of ['HTTP/1.1 2000 OK\r\n\r\n', 'HTTX/1.1 200 OK\r\n\r\n', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n', 'HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n']) {
      assert.throws(() => parseResponseHead(b(text), 'GET'), isProtocol(502), JSON.stringify(text));
    }
  });

  it('refuses Content-Length with Transfer-Encoding, and chunked twice, where no body follows too (HEAD, 1xx, 204, 304): the head is forwarded (issue 15, found by test/fuzz/http)', () => {
    for (const [status, method] of [['200 OK', 'HEAD'], ['204 No Content', 'GET'], ['304 Not Modified', 'GET'], ['103 Early Hints', 'GET']] as const) {
      for (const fields of ['Content-Length: 0\r\nTransfer-Encoding: chunked', 'Transfer-Encoding: chunked\r\nContent-Length: 5', 'Transfer-Encoding: chunked, chunked']) {
        const text = `HTTP/1.1 ${status}\r\n${fields}\r\n\r\n`;
        assert.throws(() => parseResponseHead(b(text), method), isProtocol(502), `${method} ${JSON.stringify(text)}`);
      }
      assert.equal(parseResponseHead(b(`HTTP/1.1 ${status}\r\nTransfer-Encoding: chunked\r\n\r\n`), method)?.value.framing, 'none');
    }
  });
});

describe('ChunkedFramer', () => {
  const BODY = b('5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT');
  const END = BODY.length - 4;

  it('finds the end whole, byte by byte and split at every offset', () => {
    assert.equal(new ChunkedFramer().feed(BODY), END);
    const bytewise = new ChunkedFramer();
    let found = -1;
    for (let i = 0; i < BODY.length && found < 0; i++) {
      const at = bytewise.feed(BODY, i, i + 1);
      if (at >= 0) found = at;
    }
    assert.equal(found, END);
    for (let cut = 0; cut <= END; cut++) {
      const framer = new ChunkedFramer();
      const first = framer.feed(BODY, 0, cut);
      const end = first >= 0 ? first : framer.feed(BODY, cut);
      assert.equal(end, END, `cut ${cut}`);
      assert.ok(framer.done);
    }
  });

  it('refuses invalid chunk sizes, missing CRLFs, bare LF and bad trailers', () => {
    const bad = ['zz\r\n', '-1\r\n', '\r\n', '5\nhello\r\n', '5\r\nhelloX\r\n', '5\r\nhello\r\r', '1ffffffffffffffff\r\n', '0\r\n bad\r\n\r\n', '0\r\nX: a\0b\r\n\r\n', '0\r\n\r\r', '5 x\r\n', '5;a\0\r\n', '0\r\nX: 1\n'];
    for (const text of bad) assert.throws(() => new ChunkedFramer().feed(b(text)), isProtocol(400), JSON.stringify(text));
    assert.throws(() => new ChunkedFramer('backend').feed(b('zz\r\n')), isProtocol(502));
  });
});

describe('errors and hosts', () => {
  it('maps kinds to statuses and pages', () => {
    const expected: Array<[PolyproxyError, number]> = [
      [new PolyproxyError('NOT_FOUND', 'x'), 404],
      [new PolyproxyError('FORBIDDEN', 'x'), 403],
      [new PolyproxyError('UNAVAILABLE', 'x'), 503],
      [new PolyproxyError('TIMEOUT', 'x'), 504],
      [new PolyproxyError('BACKEND_UNREACHABLE', 'x'), 502],
      [new PolyproxyError('PROTOCOL', 'x'), 400],
      [new PolyproxyError('HANDSHAKE_TIMEOUT', 'x'), 408],
      [new PolyproxyError('TOO_MANY', 'x'), 503],
      [new HttpParseError('big', 431), 431],
    ];
    for (const [err, status] of expected) {
      assert.equal(statusOf(err), status);
      const page = errorResponse(err, 'a.test').toString();
      assert.match(page, new RegExp(`^HTTP/1\\.1 ${status} `));
      const body = page.slice(page.indexOf('\r\n\r\n') + 4);
      assert.match(page, new RegExp(`content-length: ${Buffer.byteLength(body)}\r\n`));
      assert.match(errorResponse(err, 'a.test', 'application/json').toString(), /"status":/);
    }
  });

  it('normalizes Host: lowercase, port stripped, junk refused', () => {
    assert.equal(normalizeHost('Example.COM:8080'), 'example.com');
    assert.equal(normalizeHost('[::1]:80'), '[::1]');
    assert.equal(normalizeHost('a.test.'), 'a.test');
    assert.equal(normalizeHost('a/b'), undefined);
    assert.equal(normalizeHost(''), undefined);
    assert.equal(normalizeHost('a:b'), undefined);
  });
});

// Issue 15 (request smuggling): each case was accepted before the fix.
describe('issue 15: framing fields, request targets and chunk extensions', () => {
  const req = (fields: string, line = 'POST / HTTP/1.1'): Buffer => b(`${line}\r\nHost: a\r\n${fields}\r\n`);
  const res = (fields: string): Buffer => b(`HTTP/1.1 200 OK\r\n${fields}\r\n`);

  it('refuses 0xA0 (or any byte but SP/HTAB) around Transfer-Encoding and Content-Length values: 400, 502 from a backend', () => {
    for (const field of ['Transfer-Encoding: \xa0chunked', 'Transfer-Encoding: chunked\xa0', 'Transfer-Encoding: gzip,\xa0chunked\xa0', 'Transfer-Encoding: gzip\xa0, chunked', 'Transfer-Encoding: \x0bchunked', 'Transfer-Encoding: chunked\x0c']) {
      assert.throws(() => parseRequestHead(req(`${field}\r\n`)), isProtocol(400), JSON.stringify(field));
      assert.throws(() => parseResponseHead(res(`${field}\r\n`), 'GET'), isProtocol(502), JSON.stringify(field));
    }
    for (const field of ['Content-Length: 1000\xa0', 'Content-Length: \xa0\xa05', 'Content-Length: 5,\xa05', 'Content-Length: 5\xa0', 'Content-Length: +5', 'Content-Length: 5\x0b']) {
      assert.throws(() => parseRequestHead(req(`${field}\r\n`)), isProtocol(400), JSON.stringify(field));
      assert.throws(() => parseResponseHead(res(`${field}\r\n`), 'GET'), isProtocol(502), JSON.stringify(field));
    }
    // SP and HTAB are the optional whitespace (RFC 9110 §5.6.3): still accepted.
    assert.equal(parseRequestHead(req('Content-Length: \t5 \t\r\n'))?.value.contentLength, 5);
    assert.equal(parseRequestHead(req('Transfer-Encoding: \tgzip ,\tCHUNKED \r\n'))?.value.framing, 'chunked');
    assert.equal(parseRequestHead(req('Transfer-Encoding: gzip;q="a b", chunked\r\n'))?.value.framing, 'chunked');
    assert.equal(parseResponseHead(res('Content-Length:\t7\t\r\n'), 'GET')?.value.contentLength, 7);
    assert.equal(parseResponseHead(res('Transfer-Encoding: gzip\r\n'), 'GET')?.value.framing, 'close');
  });

  it('refuses chunked applied twice or with parameters, and non-token codings, in responses too (502)', () => {
    for (const field of ['Transfer-Encoding: chunked, chunked', 'Transfer-Encoding: chunked;x=1', 'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked', 'Transfer-Encoding: "chunked"', 'Transfer-Encoding: gzip;q', 'Transfer-Encoding: ']) {
      assert.throws(() => parseRequestHead(req(`${field}\r\n`)), isProtocol(400), JSON.stringify(field));
      assert.throws(() => parseResponseHead(res(`${field}\r\n`), 'GET'), isProtocol(502), JSON.stringify(field));
    }
  });

  it('refuses any repeated Content-Length, equal or not (RFC 9112 §6.3; as nginx and llhttp)', () => {
    for (const fields of ['Content-Length: 1000,1000\r\n', 'Content-Length: 5\r\nContent-Length: 5\r\n', 'Content-Length: 5, 5\r\n', 'Content-Length: 5,\r\n', 'Content-Length: ,5\r\n', 'Content-Length: 0\r\nContent-Length: 0\r\n']) {
      assert.throws(() => parseRequestHead(req(fields)), isProtocol(400), JSON.stringify(fields));
      assert.throws(() => parseResponseHead(res(fields), 'GET'), isProtocol(502), JSON.stringify(fields));
    }
    assert.equal(parseRequestHead(req('Content-Length: 007\r\n'))?.value.contentLength, 7);
  });

  it('takes the host from an absolute-form target (RFC 9112 §3.2.2), refusing userinfo, empty hosts and other schemes', () => {
    const abs = parseRequestHead(b('GET http://Suspended.TEST:8080/p?q=1 HTTP/1.1\r\nHost: allowed.test\r\n\r\n'))?.value;
    assert.equal(abs?.host, 'Suspended.TEST:8080');
    assert.equal(abs?.absoluteForm, true);
    assert.equal(abs?.originTarget, '/p?q=1');
    assert.equal(abs?.target, 'http://Suspended.TEST:8080/p?q=1');
    assert.equal(parseRequestHead(b('GET HTTPS://a.test?x HTTP/1.1\r\nHost: a.test\r\n\r\n'))?.value.originTarget, '/?x');
    assert.equal(parseRequestHead(b('GET http://[::1]:80 HTTP/1.0\r\n\r\n'))?.value.host, '[::1]:80');
    // §3.2.4: OPTIONS with an empty path goes to the origin server as "*".
    assert.equal(parseRequestHead(b('OPTIONS http://a.test HTTP/1.1\r\nHost: a.test\r\n\r\n'))?.value.originTarget, '*');
    const origin = parseRequestHead(b('GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n'))?.value;
    assert.equal(origin?.absoluteForm, false);
    assert.equal(origin?.originTarget, '/x');
    const star = parseRequestHead(b('OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n'))?.value;
    assert.equal(star?.host, 'a.test');
    assert.equal(star?.originTarget, '*');
    for (const line of ['GET http://user@a.test/ HTTP/1.1', 'GET http:///x HTTP/1.1', 'GET http://:80/ HTTP/1.1', 'GET ftp://a.test/ HTTP/1.1', 'GET http:/a.test/ HTTP/1.1', 'GET http://a.test\\x/ HTTP/1.1', 'GET a.test:80 HTTP/1.1', 'GET foo HTTP/1.1', 'GET * HTTP/1.1', 'OPTIONS *x HTTP/1.1']) {
      assert.throws(() => parseRequestHead(b(`${line}\r\nHost: a.test\r\n\r\n`)), isProtocol(400), line);
    }
    // An HTTP/1.1 request still needs its Host field (§3.2).
    assert.throws(() => parseRequestHead(b('GET http://a.test/ HTTP/1.1\r\n\r\n')), isProtocol(400));
  });

  it('refuses CONNECT with 501: the listener is no tunnel', () => {
    assert.throws(() => parseRequestHead(b('CONNECT suspended.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n')), isProtocol(501));
    assert.throws(() => parseRequestHead(b('CONNECT / HTTP/1.1\r\nHost: allowed.test\r\n\r\n')), isProtocol(501));
  });

  it('refuses chunk extensions outside the chunk-ext grammar (RFC 9112 §7.1.1)', () => {
    const ok = ['2;a\r\nab\r\n0\r\n\r\n', '2;a=b\r\nab\r\n0\r\n\r\n', '2 ; a = "b;\\"c" ;d\r\nab\r\n0\r\n\r\n', '2;a="" \t;b=c\r\nab\r\n0;x\r\n\r\n', '2;a="\xe9\\\xe9"\r\nab\r\n0\r\n\r\n'];
    for (const text of ok) {
      const bytes = b(text);
      assert.equal(new ChunkedFramer().feed(bytes), bytes.length, JSON.stringify(text));
      for (let cut = 1; cut < bytes.length; cut++) {
        const framer = new ChunkedFramer();
        assert.equal(framer.feed(bytes, 0, cut), -1);
        assert.equal(framer.feed(bytes, cut), bytes.length, `${JSON.stringify(text)} cut ${cut}`);
      }
    }
    const bad = ['2;\r\n', '2;;a\r\n', '2; \r\n', '2;a=\r\n', '2;a="b\r\n', '2;a="b\\\r\n', '2;a=b c\r\n', '2;a=b \r\n', '2;a b\r\n', '2;a="b"c\r\n', '2;a=@\r\n', '2;=b\r\n', '2;a="\x7f"\r\n', '2;a\xa0\r\n', '2 \r\n'];
    for (const text of bad) assert.throws(() => new ChunkedFramer().feed(b(text)), isProtocol(400), JSON.stringify(text));
    assert.throws(() => new ChunkedFramer('backend').feed(b('2;\r\n')), isProtocol(502));
  });

  it('refuses trailer lines that are not field lines (RFC 9112 §7.1.2)', () => {
    const trailers = b('0\r\nX-T: a b\xe9\r\nY:\r\n\r\n');
    assert.equal(new ChunkedFramer().feed(trailers), trailers.length);
    for (const text of ['0\r\nX T: a\r\n\r\n', '0\r\nX\r\n\r\n', '0\r\nX :a\r\n\r\n', '0\r\nX\xa0: a\r\n\r\n', '0\r\n"X": a\r\n\r\n']) {
      assert.throws(() => new ChunkedFramer().feed(b(text)), isProtocol(400), JSON.stringify(text));
    }
  });

  it('trims only SP and HTAB from Connection tokens', () => {
    assert.deepEqual(parseRequestHead(b('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\xa0, \tX-A \r\n\r\n'))?.value.connection, ['close\xa0', 'x-a']);
    assert.equal(parseRequestHead(b('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\xa0\r\n\r\n'))?.value.keepAlive, true);
  });
});
