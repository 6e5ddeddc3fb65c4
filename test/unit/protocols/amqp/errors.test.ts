/** Reply codes and texts per failure kind. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import { REPLY_CODES, replyText } from '../../../../src/protocols/amqp/errors.ts';

describe('amqp errors', () => {
  it('the spec codes: 530 unrouted, 541 broker trouble, 320 drain, 506 too many, 403 TLS', () => {
    assert.deepEqual(
      [REPLY_CODES.NOT_FOUND, REPLY_CODES.BACKEND_UNREACHABLE, REPLY_CODES.SHUTTING_DOWN, REPLY_CODES.TOO_MANY, REPLY_CODES.TLS_REQUIRED, REPLY_CODES.PROTOCOL],
      [530, 541, 320, 506, 403, 503],
    );
  });

  it('texts start with the code name, as RabbitMQ writes them', () => {
    assert.equal(replyText(new PolyproxyError('NOT_FOUND', 'x'), 530, 'shop'), "NOT_ALLOWED - vhost 'shop' is not routed by this proxy");
    assert.equal(replyText(new PolyproxyError('SHUTTING_DOWN', 'x'), 320, undefined), 'CONNECTION_FORCED - the proxy is shutting down');
    assert.equal(replyText(new PolyproxyError('PROTOCOL', 'bad frame'), 501, undefined), 'FRAME_ERROR - bad frame');
  });
});
