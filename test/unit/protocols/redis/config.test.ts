/** The redis listener's fields: routeBy and its rule. */
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

describe('redis listener config', () => {
  it('routes by user by default; sni needs tls', () => {
    const config = parseConfig({ routes: { a: '1.2.3.4:5' }, listeners: [{ protocol: 'redis', port: 1 }] }, '/');
    assert.equal((config.listeners[0] as { routeBy?: string }).routeBy, 'user');
    assert.match(problem({ listeners: [{ protocol: 'redis', port: 1, routeBy: 'sni' }] }), /listeners\.0\.routeBy: routeBy: sni needs tls/);
    assert.match(problem({ listeners: [{ protocol: 'redis', port: 1, routeBy: 'db' }] }), /listeners\.0\.routeBy/);
    parseConfig({ listeners: [{ protocol: 'redis', port: 1, routeBy: 'sni', tls: { cert: 'c', key: 'k' } }] }, '/');
  });
});
