/** The tcp listener's routing fields: backend or routes/resolver, routeBy sni, first-bytes limits. */
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

const TLS = { cert: 'c.pem', key: 'k.pem' };

describe('tcp listener config', () => {
  it('without backend it needs routes or a resolver module (names listeners.N.backend)', () => {
    assert.match(problem({ listeners: [{ protocol: 'tcp', port: 1 }] }), /listeners\.0\.backend: a tcp listener needs a backend, or routes \/ resolver\.module/);
    const withRoutes = parseConfig({ routes: { a: '1.2.3.4:5' }, listeners: [{ protocol: 'tcp', port: 1 }] }, '/');
    assert.equal(withRoutes.listeners[0]?.protocol, 'tcp');
    const withModule = parseConfig({ resolver: { module: 'r.ts' }, listeners: [{ protocol: 'tcp', port: 1, firstBytesTimeoutMs: 0, firstBytesMax: 100 }] }, '/');
    assert.deepEqual({ ...withModule.listeners[0] }, { ...withModule.listeners[0], firstBytesTimeoutMs: 0, firstBytesMax: 100 });
  });

  it('routeBy: sni needs tls, and no fixed backend', () => {
    assert.match(problem({ routes: { a: '1.2.3.4:5' }, listeners: [{ protocol: 'tcp', port: 1, routeBy: 'sni' }] }), /listeners\.0\.routeBy: routeBy: sni needs tls/);
    assert.match(problem({ listeners: [{ protocol: 'tcp', port: 1, backend: '1.2.3.4:5', tls: TLS, routeBy: 'sni' }] }), /listeners\.0\.routeBy: routeBy cannot be used with a fixed backend/);
    assert.match(problem({ routes: { a: '1.2.3.4:5' }, listeners: [{ protocol: 'tcp', port: 1, tls: TLS, routeBy: 'host' }] }), /listeners\.0\.routeBy: routeBy must be "sni"/);
    parseConfig({ routes: { '*.example.com': '1.2.3.4:5' }, listeners: [{ protocol: 'tcp', port: 1, tls: TLS, routeBy: 'sni' }] }, '/');
  });

  it('first-bytes limits are checked', () => {
    const base = { routes: { a: '1.2.3.4:5' } };
    assert.match(problem({ ...base, listeners: [{ protocol: 'tcp', port: 1, firstBytesTimeoutMs: -1 }] }), /listeners\.0\.firstBytesTimeoutMs/);
    assert.match(problem({ ...base, listeners: [{ protocol: 'tcp', port: 1, firstBytesMax: 0 }] }), /listeners\.0\.firstBytesMax/);
    assert.match(problem({ ...base, listeners: [{ protocol: 'tcp', port: 1, firstBytesMax: 70000 }] }), /listeners\.0\.firstBytesMax/);
    assert.match(problem({ ...base, listeners: [{ protocol: 'tcp', port: 1, firstBytesTimeoutMs: 5000, handshakeTimeoutMs: 5000 }] }), /listeners\.0\.firstBytesTimeoutMs: must be shorter than handshakeTimeoutMs \(5000\)/);
  });
});
