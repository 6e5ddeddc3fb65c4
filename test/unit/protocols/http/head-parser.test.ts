/**
 * The http head parser over wire bytes: whole, byte by byte and split at
 * every offset; every smuggling / injection case refused with PROTOCOL;
 * RFC 9112 §2–§6. The chunked framer is in chunked.test.ts; the properties
 * against llhttp, and that nothing but PolyproxyError('PROTOCOL') is thrown,
 * are in test/fuzz/http.fuzz.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import { parseRequestHead, parseResponseHead } from '../../../../src/protocols/http/head-parser.ts';
import type { HttpHead, HttpParseError } from '../../../../src/protocols/http/head-parser.ts';

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

describe('issue 15: framing fields and request targets', () => {
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

  it('trims only SP and HTAB from Connection tokens', () => {
    assert.deepEqual(parseRequestHead(b('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\xa0, \tX-A \r\n\r\n'))?.value.connection, ['close\xa0', 'x-a']);
    assert.equal(parseRequestHead(b('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\xa0\r\n\r\n'))?.value.keepAlive, true);
  });
});
