/** src/protocols/http/errors.ts: each PolyproxyError kind as its HTTP status and a well-formed error page. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import { errorResponse, statusOf } from '../../../../src/protocols/http/errors.ts';
import { HttpParseError } from '../../../../src/protocols/http/head-parser.ts';

describe('http errors', () => {
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
});
