/** Every failure kind as a RESP error line. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import type { FailureKind } from '../../../../src/core/errors.ts';
import { encodeError } from '../../../../src/protocols/redis/errors.ts';

const line = (kind: FailureKind, user?: string, message = 'm'): string => encodeError(new PolyproxyError(kind, message), user).toString();

describe('redis errors', () => {
  it('uses Redis’s own words where Redis has them', () => {
    assert.equal(line('NOT_FOUND', 'x'), '-WRONGPASS invalid username-password pair or user is disabled.\r\n');
    assert.equal(line('FORBIDDEN', 'x'), '-WRONGPASS invalid username-password pair or user is disabled.\r\n');
    assert.equal(line('TOO_MANY'), '-ERR max number of clients reached\r\n');
    assert.equal(line('PROTOCOL', undefined, 'Protocol error: invalid bulk length'), '-ERR Protocol error: invalid bulk length\r\n');
  });

  it('says what happened otherwise, on one line, with a printable user name', () => {
    assert.equal(line('BACKEND_UNREACHABLE', 'carol'), "-ERR cannot reach the server for user 'carol', try again later\r\n");
    assert.equal(line('UNAVAILABLE', 'a\r\nb'), "-ERR the server for user 'a??b' is unavailable, try again later\r\n");
    assert.equal(line('SHUTTING_DOWN'), '-ERR the proxy is shutting down, closing connection\r\n');
    assert.equal(line('HANDSHAKE_TIMEOUT'), '-ERR timeout waiting for AUTH or HELLO AUTH, closing connection\r\n');
    assert.equal(line('TLS_REQUIRED', undefined, 'a valid client certificate is required\r\n(x)'), '-ERR a valid client certificate is required (x)\r\n');
    for (const kind of ['TIMEOUT', 'INTERNAL'] as const) assert.match(line(kind, 'u'), /^-ERR [^\r\n]+\r\n$/);
  });
});
