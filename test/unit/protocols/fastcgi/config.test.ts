/** The fastcgi listener's config: defaults, required fields, and the common fields it refuses. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, parseConfig } from '../../../../src/config/load.ts';

const base = { protocol: 'fastcgi', port: 0, backends: ['127.0.0.1:9000', 'unix:/run/php/php-fpm.sock'], documentRoot: '/var/www/html' };

function problems(listener: Record<string, unknown>): string {
  try {
    parseConfig({ workers: 1, listeners: [listener] }, '/tmp', 'test');
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  return '';
}

describe('fastcgi listener config', () => {
  it('fills in the defaults', () => {
    const listener = parseConfig({ workers: 1, listeners: [base] }, '/tmp', 'test').listeners[0];
    assert.equal(listener?.protocol, 'fastcgi');
    if (listener?.protocol !== 'fastcgi') return;
    assert.deepEqual(
      { balance: listener.balance, index: listener.index, backendTimeoutMs: listener.backendTimeoutMs, healthCheckIntervalMs: listener.healthCheckIntervalMs, maxConnectionsPerBackend: listener.maxConnectionsPerBackend, params: listener.params, name: listener.name },
      { balance: 'round-robin', index: 'index.php', backendTimeoutMs: 60000, healthCheckIntervalMs: 5000, maxConnectionsPerBackend: 8, params: {}, name: 'fastcgi-listener0' },
    );
  });

  it('names the bad field', () => {
    assert.match(problems({ ...base, backends: [] }), /backends/);
    assert.match(problems({ ...base, backends: ['nope'] }), /backends/);
    assert.match(problems({ ...base, balance: 'least-conn' }), /balance/);
    assert.match(problems({ ...base, documentRoot: 'relative/path' }), /documentRoot/);
    assert.match(problems({ ...base, documentRoot: undefined }), /documentRoot/);
    assert.match(problems({ ...base, backend: '127.0.0.1:9000' }), /backend.*backends/);
    assert.match(problems({ ...base, tls: { cert: 'c.pem', key: 'k.pem' } }), /tls/);
    assert.match(problems({ ...base, bogus: 1 }), /bogus/);
  });
});
