/** src/protocols/smtp/errors.ts: failures as SMTP reply lines (RFC 5321 4.2, RFC 3463), and which ones the session survives. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import type { FailureKind } from '../../../../src/core/errors.ts';
import { SMTP_ERRORS, SmtpReplyError, encodeFailure, failureReply, refusesInSession } from '../../../../src/protocols/smtp/errors.ts';

const KINDS: FailureKind[] = ['NOT_FOUND', 'FORBIDDEN', 'UNAVAILABLE', 'TIMEOUT', 'INTERNAL', 'BACKEND_UNREACHABLE', 'PROTOCOL', 'HANDSHAKE_TIMEOUT', 'TLS_REQUIRED', 'TOO_MANY'];

describe('smtp errors', () => {
  it('every kind is one reply line: code, enhanced status, text, CRLF', () => {
    for (const kind of KINDS) {
      const line = failureReply(new PolyproxyError(kind, 'x'), 'example.com');
      const { code, status } = SMTP_ERRORS[kind];
      assert.match(line, /^\d{3} \d\.\d\.\d [^\r\n]+\r\n$/, kind);
      assert.ok(line.startsWith(`${code} ${status} `), line);
      // The class digit of the enhanced status matches the reply class (4xx transient, 5xx permanent).
      assert.equal(status[0], String(code)[0], kind);
    }
  });

  it('temporary failures are 421 so the sending MTA retries; routing refusals are 550', () => {
    assert.equal(failureReply(new PolyproxyError('UNAVAILABLE', 'x'), 'a.test'), '421 4.3.0 Service for a.test temporarily unavailable, closing connection\r\n');
    assert.equal(failureReply(new PolyproxyError('NOT_FOUND', 'x'), 'a.test'), '550 5.1.2 Mail for a.test is not accepted here (not routed)\r\n');
    assert.equal(failureReply(new PolyproxyError('FORBIDDEN', 'x'), undefined), '550 5.7.1 Mail for the requested domain is not allowed\r\n');
    assert.equal(failureReply(new PolyproxyError('TLS_REQUIRED', 'x'), undefined), '530 5.7.0 Must issue a STARTTLS command first\r\n');
  });

  it('only NOT_FOUND and FORBIDDEN leave the session open', () => {
    for (const kind of KINDS) assert.equal(refusesInSession(new PolyproxyError(kind, 'x')), kind === 'NOT_FOUND' || kind === 'FORBIDDEN', kind);
  });

  it('encodeFailure sends an SmtpReplyError reply as given, anything else from the table', () => {
    assert.equal(encodeFailure(new SmtpReplyError('PROTOCOL', 'bad', '501 5.5.4 Syntax: EHLO domain\r\n'), 'x').toString(), '501 5.5.4 Syntax: EHLO domain\r\n');
    const raw = Buffer.from('554 5.7.1 backend says no\r\n');
    assert.deepEqual(encodeFailure(new SmtpReplyError('FORBIDDEN', 'no', raw, { source: 'backend' }), 'x'), raw);
    assert.equal(encodeFailure(new PolyproxyError('TOO_MANY', 'x'), undefined).toString(), '421 4.3.2 Too many connections, try again later\r\n');
  });
});
