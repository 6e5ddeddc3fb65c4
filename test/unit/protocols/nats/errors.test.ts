/** Every failure kind as a NATS -ERR line. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import { NATS_ERRORS, NatsError, errorLine } from '../../../../src/protocols/nats/errors.ts';

describe('nats errors', () => {
  it('words each kind as nats-server does', () => {
    assert.equal(errorLine(new PolyproxyError('NOT_FOUND', 'x')), "-ERR 'Authorization Violation'\r\n");
    assert.equal(errorLine(new PolyproxyError('HANDSHAKE_TIMEOUT', 'x')), "-ERR 'Authentication Timeout'\r\n");
    assert.equal(errorLine(new PolyproxyError('TOO_MANY', 'x')), "-ERR 'maximum connections exceeded'\r\n");
    assert.equal(errorLine(new PolyproxyError('SHUTTING_DOWN', 'x')), "-ERR 'Server Shutdown'\r\n");
    assert.equal(errorLine(new NatsError('PROTOCOL', 'x', 'Maximum Control Line Exceeded')), "-ERR 'Maximum Control Line Exceeded'\r\n");
    for (const text of Object.values(NATS_ERRORS)) assert.ok(!text.includes("'") && !/[\r\n]/.test(text));
  });
});
