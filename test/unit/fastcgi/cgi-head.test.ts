/** The CGI response head at the start of FCGI_STDOUT (RFC 3875 section 6). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CgiHeadParser, parseCgiHead, splitCgiOutput } from '../../../src/fastcgi/cgi-head.ts';
import { FastCgiError } from '../../../src/fastcgi/errors.ts';

const protocolError = (e: unknown): boolean => e instanceof FastCgiError && e.code === 'FCGI_ERR_PROTOCOL';

describe('CGI response head', () => {
  it('takes the status from Status:, keeps other headers in order', () => {
    const head = parseCgiHead('Status: 404 Not Found\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n');
    assert.equal(head.status, 404);
    assert.equal(head.statusText, 'Not Found');
    assert.deepEqual(head.headers, [
      ['Content-Type', 'text/plain'],
      ['Set-Cookie', 'a=1'],
      ['Set-Cookie', 'b=2'],
    ]);
  });

  it('defaults to 200, or 302 with a Location', () => {
    assert.equal(parseCgiHead('Content-Type: text/html\n').status, 200);
    assert.equal(parseCgiHead('Location: /elsewhere\n').status, 302);
    assert.equal(parseCgiHead('Status: 301\nLocation: /x\n').status, 301);
  });

  it('rejects malformed lines and statuses', () => {
    assert.throws(() => parseCgiHead('no colon here\r\n'), protocolError);
    assert.throws(() => parseCgiHead('Status: abc\r\n'), protocolError);
    assert.throws(() => parseCgiHead('Status: 42\r\n'), protocolError);
  });

  it('finds the blank line across chunks, CRLF or LF, and returns the first body bytes', () => {
    const output = Buffer.from('X-Powered-By: PHP\r\nContent-type: text/plain\r\n\r\nhello\r\n\r\nworld');
    for (let i = 0; i <= output.length; i++) {
      const parser = new CgiHeadParser();
      let result = parser.push(output.subarray(0, i));
      const rest: Buffer[] = [];
      if (result === undefined) result = parser.push(output.subarray(i));
      else rest.push(output.subarray(i));
      assert.ok(result !== undefined, `split at ${i}`);
      assert.equal(Buffer.concat([result.rest, ...rest]).toString(), 'hello\r\n\r\nworld');
      assert.equal(result.head.headers.length, 2);
    }
    const lf = new CgiHeadParser().push(Buffer.from('Status: 201\n\nbody'));
    assert.equal(lf?.head.status, 201);
    assert.equal(lf?.rest.toString(), 'body');
  });

  it('bounds the head it buffers', () => {
    const parser = new CgiHeadParser(100);
    assert.equal(parser.push(Buffer.from('A: b\r\n')), undefined);
    assert.throws(() => parser.push(Buffer.alloc(200, 0x61)), protocolError);
  });

  it('treats output without a blank line as a body when split whole', () => {
    const { head, body } = splitCgiOutput(Buffer.from('just text'));
    assert.equal(head.status, 200);
    assert.equal(body.toString(), 'just text');
  });
});
