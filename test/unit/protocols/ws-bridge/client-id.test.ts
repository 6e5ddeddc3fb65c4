import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_CLIENT_ID_LENGTH, handshakeProblem, parseClientId } from '../../../../src/protocols/ws-bridge/client-id.ts';

test('parseClientId: the first path segment, as sent', () => {
  assert.equal(parseClientId('/abc'), 'abc');
  assert.equal(parseClientId('/abc/'), 'abc');
  assert.equal(parseClientId('/abc?token=1'), 'abc');
  assert.equal(parseClientId('/abc#x'), 'abc');
  assert.equal(parseClientId('/a%20b'), 'a%20b');
  assert.equal(parseClientId("/user:1@x.y-z_~!$&'()*+,;="), "user:1@x.y-z_~!$&'()*+,;=");
  assert.equal(parseClientId('/abc/?q=/x'), 'abc');
});

test('parseClientId: no usable id → null', () => {
  for (const target of [undefined, '', '/', '//', '//x', '/a/b', '*', 'http://h/a', '/a b', '/%zz', '/%2', '/.', '/..', '/%2e', '/%2E%2e', '/.%2e', '/%2e.', '/%2e%2e/', '/é', '/a"b', '/a<b', `/${'x'.repeat(MAX_CLIENT_ID_LENGTH + 1)}`, '/?x', '/a/b?x']) {
    assert.equal(parseClientId(target), null, String(target));
  }
  assert.equal(parseClientId(`/${'x'.repeat(MAX_CLIENT_ID_LENGTH)}`)?.length, MAX_CLIENT_ID_LENGTH);
  // Issue 15 fuzzing: an id appended to the API URL must stay a segment there; `%2e%2e` resolves as `..`.
  assert.equal(new URL('http://api.example/clients/%2e%2e').pathname, '/');
  assert.equal(parseClientId('/%2e%2e%2e'), '%2e%2e%2e');
});

const good = { upgrade: 'websocket', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' };

test('handshakeProblem: what ws would refuse, before the API is asked', () => {
  assert.equal(handshakeProblem('GET', good), null);
  assert.equal(handshakeProblem('GET', { ...good, upgrade: 'WebSocket', 'sec-websocket-version': '8' }), null);
  assert.equal(handshakeProblem('POST', good), 'Invalid HTTP method');
  assert.equal(handshakeProblem('GET', { ...good, upgrade: 'h2c' }), 'Invalid Upgrade header');
  assert.equal(handshakeProblem('GET', { ...good, 'sec-websocket-key': 'short==' }), 'Missing or invalid Sec-WebSocket-Key header');
  assert.equal(handshakeProblem('GET', { ...good, 'sec-websocket-key': undefined }), 'Missing or invalid Sec-WebSocket-Key header');
  assert.equal(handshakeProblem('GET', { ...good, 'sec-websocket-version': '12' }), 'Missing or invalid Sec-WebSocket-Version header');
});
