/** The nats listener's fields: routeBy, tokenSeparator, the announced INFO values. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, parseConfig } from '../../../../src/config/load.ts';

function problem(raw: unknown): string {
  try {
    parseConfig(raw, '/');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.message;
  }
  assert.fail('config was accepted');
}

describe('nats listener config', () => {
  it('has nats-server’s defaults for what INFO announces', () => {
    const config = parseConfig({ listeners: [{ protocol: 'nats', port: 1 }] }, '/');
    assert.deepEqual(
      { ...config.listeners[0] },
      { ...config.listeners[0], routeBy: 'user', maxPayload: 1048576, headers: true, serverVersion: '2.2.0', handshakeTimeoutMs: 5000 },
    );
  });

  it('checks its fields', () => {
    assert.match(problem({ listeners: [{ protocol: 'nats', port: 1, tokenSeparator: ':' }] }), /listeners\.0\.tokenSeparator: tokenSeparator is only used with routeBy: token/);
    parseConfig({ listeners: [{ protocol: 'nats', port: 1, routeBy: 'token', tokenSeparator: ':' }] }, '/');
    assert.match(problem({ listeners: [{ protocol: 'nats', port: 1, serverVersion: '2.9' }] }), /listeners\.0\.serverVersion/);
    assert.match(problem({ listeners: [{ protocol: 'nats', port: 1, maxPayload: 0 }] }), /listeners\.0\.maxPayload/);
    assert.match(problem({ listeners: [{ protocol: 'nats', port: 1, routeBy: 'name' }] }), /listeners\.0\.routeBy/);
  });
});
