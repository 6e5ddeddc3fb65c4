import assert from 'node:assert/strict';
import { test } from 'node:test';
import { statusOf } from '../../../../src/core/http-error-response.ts';
import { API_UNAVAILABLE_REASON, CLOSE_API_UNAVAILABLE, apiError, apiFailureMessage } from '../../../../src/protocols/ws-bridge/errors.ts';
import type { ApiAnswer } from '../../../../src/protocols/ws-bridge/api-client.ts';

const answer = (outcome: ApiAnswer['outcome'], status = 0): ApiAnswer => ({ outcome, status, body: Buffer.alloc(0), binary: false, error: 'x' });

test('apiFailureMessage: the documented JSON, with the status an upgrade failing the same way gets', () => {
  const cases = [
    { answer: answer('timeout'), json: { error: 'api_timeout', status: 504 } },
    { answer: answer('unreachable'), json: { error: 'api_unavailable', status: 502 } },
    { answer: answer('unreachable', 503), json: { error: 'api_unavailable', status: 502 } },
  ];
  for (const c of cases) {
    const error = apiError(c.answer);
    const message = apiFailureMessage(error);
    assert.deepEqual(JSON.parse(message.toString('utf8')), c.json);
    assert.equal(c.json.status, statusOf(error));
    // Exactly these bytes: clients may compare the text.
    assert.equal(message.toString('utf8'), JSON.stringify(c.json));
  }
});

test('onApiFailure close: 1011 (RFC 6455 §7.4.1) with a reason that fits a close frame', () => {
  assert.equal(CLOSE_API_UNAVAILABLE, 1011);
  assert.equal(API_UNAVAILABLE_REASON, 'API unavailable');
  assert.ok(Buffer.byteLength(API_UNAVAILABLE_REASON) <= 123);
});
