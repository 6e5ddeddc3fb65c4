/**
 * The request head the backend gets for an absolute-form target (issue 15,
 * RFC 9112 §3.2.2): origin form, the received Host replaced by the target's
 * authority (the one the request was routed by), X-Forwarded-Host the same;
 * an origin-form head is copied byte for byte. Host and framing lines with
 * whitespace other parsers may misread go out as `name: value`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseRequestHead, parseResponseHead } from '../../../../src/protocols/http/head-parser.ts';
import { requestHeadBytes, responseHeadBytes } from '../../../../src/protocols/http/rewrite.ts';

const info = { clientAddress: '::ffff:10.0.0.9', proto: 'http' };
const head = (text: string) => {
  const parsed = parseRequestHead(Buffer.from(text, 'latin1'));
  assert.ok(parsed !== undefined);
  return parsed.value;
};

describe('requestHeadBytes', () => {
  it('sends an absolute-form request in origin form with the Host of its target', () => {
    const out = requestHeadBytes(head('GET http://Suspended.test:8080/p?q=1 HTTP/1.1\r\nX-A: 1\r\nHost: allowed.test\r\nX-B: 2\r\n\r\n'), info).toString('latin1');
    assert.equal(out, 'GET /p?q=1 HTTP/1.1\r\nhost: Suspended.test:8080\r\nX-A: 1\r\nX-B: 2\r\nx-forwarded-for: 10.0.0.9\r\nx-forwarded-proto: http\r\nx-forwarded-host: Suspended.test:8080\r\n\r\n');
  });

  it('drops a client RFC 7239 Forwarded field, any case, and keeps look-alikes (issue 15)', () => {
    const out = requestHeadBytes(head('GET / HTTP/1.1\r\nHost: a.test\r\nFORWARDED: host=b.test\r\nForwarded-X: 1\r\nforwarded: for=1.2.3.4;host="b.test"\r\n\r\n'), info).toString('latin1');
    assert.equal(out, 'GET / HTTP/1.1\r\nHost: a.test\r\nForwarded-X: 1\r\nx-forwarded-for: 10.0.0.9\r\nx-forwarded-proto: http\r\nx-forwarded-host: a.test\r\n\r\n');
  });

  it('gives an empty path as "/", or "*" for OPTIONS (§3.2.4), and adds Host for HTTP/1.0', () => {
    assert.match(requestHeadBytes(head('GET https://a.test?x HTTP/1.0\r\n\r\n'), info).toString('latin1'), /^GET \/\?x HTTP\/1\.0\r\nhost: a\.test\r\nx-forwarded-for/);
    assert.match(requestHeadBytes(head('OPTIONS http://a.test HTTP/1.1\r\nHost: a.test\r\n\r\n'), info).toString('latin1'), /^OPTIONS \* HTTP\/1\.1\r\nhost: a\.test\r\nx-forwarded-for/);
  });

  it('copies an origin-form or asterisk-form request line and its Host as received', () => {
    for (const text of ['GET /x HTTP/1.1\r\nHOST: A.test\r\n\r\n', 'OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n']) {
      const out = requestHeadBytes(head(text), info).toString('latin1');
      assert.ok(out.startsWith(text.slice(0, -2)), out);
    }
  });

  it('sends Host and framing lines with unusual whitespace as "name: value", other lines as received', () => {
    const out = requestHeadBytes(head('POST / HTTP/1.1\r\nHost:\ta.test \r\nX-A:\t1\t\r\nTransfer-Encoding: gzip ,\tchunked\t\r\nX-B: 2\r\n\r\n'), info).toString('latin1');
    assert.ok(out.startsWith('POST / HTTP/1.1\r\nHost: a.test\r\nX-A:\t1\t\r\nTransfer-Encoding: gzip ,\tchunked\r\nX-B: 2\r\n'), out);
    const tidy = 'POST / HTTP/1.1\r\nHost:a.test\r\nContent-Length: 5\r\n';
    assert.ok(requestHeadBytes(head(`${tidy}\r\n`), info).toString('latin1').startsWith(tidy));
  });

  it('does the same for responses (llhttp reads "chunked<HTAB>" as another coding)', () => {
    const parsed = parseResponseHead(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\nX-A: 1 \r\n\r\n', 'latin1'), 'GET');
    assert.ok(parsed !== undefined);
    assert.equal(responseHeadBytes(parsed.value, 1, false, '').toString('latin1'), 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1 \r\n\r\n');
    const length = parseResponseHead(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length:\t5\t\r\n\r\n', 'latin1'), 'GET');
    assert.ok(length !== undefined);
    assert.equal(responseHeadBytes(length.value, 1, true, '').toString('latin1'), 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nconnection: close\r\n\r\n');
  });
});
