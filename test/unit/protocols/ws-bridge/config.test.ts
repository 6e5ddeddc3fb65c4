import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, parseConfig } from '../../../../src/config/load.ts';

const listener = (extra: Record<string, unknown>) => ({ workers: 1, listeners: [{ name: 'ws', protocol: 'ws-bridge', port: 7001, api: 'http://127.0.0.1:8000/wsoverhttp/', ...extra }] });

test('ws-bridge listener: defaults', () => {
  const config = parseConfig(listener({}), process.cwd());
  const l = config.listeners[0];
  assert.equal(l?.protocol, 'ws-bridge');
  if (l?.protocol !== 'ws-bridge') return;
  assert.equal(l.metricsPath, '/metrics');
  assert.equal(l.ordering, 'ordered');
  assert.equal(l.duplicateClientId, 'replace');
  assert.equal(l.onApiFailure, 'drop');
  assert.equal(l.pingIntervalMs, 30000);
  assert.equal(l.deadPeerTimeoutMs, 70000);
  assert.equal(l.maxMessageBytes, 1024 * 1024);
  assert.deepEqual(l.pool, { maxConnections: 10000, maxIdle: 1000, idleTimeoutMs: 60000, timeoutMs: 60000 });
});

test('ws-bridge listener: bad fields are named', () => {
  const problem = (extra: Record<string, unknown>): string => {
    try {
      parseConfig(listener(extra), process.cwd());
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.message;
    }
    return 'accepted';
  };
  assert.match(problem({ api: 'ftp://x/' }), /listeners\.0\.api/);
  assert.match(problem({ api: undefined }), /listeners\.0\.api/);
  assert.match(problem({ ordering: 'random' }), /listeners\.0\.ordering/);
  assert.match(problem({ duplicateClientId: 'both' }), /listeners\.0\.duplicateClientId/);
  assert.match(problem({ onApiFailure: 'retry' }), /listeners\.0\.onApiFailure/);
  assert.match(problem({ metricsPath: 'metrics' }), /listeners\.0\.metricsPath/);
  assert.match(problem({ pingIntervalMs: 1000, deadPeerTimeoutMs: 1000 }), /listeners\.0\.deadPeerTimeoutMs/);
  assert.match(problem({ backend: '127.0.0.1:1' }), /listeners\.0\.backend/);
  assert.match(problem({ tls: { cert: 'c', key: 'k' } }), /listeners\.0\.tls/);
  assert.match(problem({ pool: { maxIdle: -1 } }), /listeners\.0\.pool\.maxIdle/);
  assert.match(problem({ pool: { maxIdel: 1 } }), /maxIdel/);
});

test('ws-bridge listener: onApiFailure takes drop, error-message, close', () => {
  for (const mode of ['drop', 'error-message', 'close']) {
    const l = parseConfig(listener({ onApiFailure: mode }), process.cwd()).listeners[0];
    assert.equal(l?.protocol === 'ws-bridge' && l.onApiFailure, mode);
  }
});
