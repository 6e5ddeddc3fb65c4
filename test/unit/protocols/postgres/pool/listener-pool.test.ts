/** The pool's config rules (config.ts checkPostgresListener) and the listener's refusals before a client reaches the pool. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, parseConfig } from '../../../../../src/config/load.ts';
import { perWorkerSettings } from '../../../../../src/protocols/postgres/pool/listener-pool.ts';
import { DEFAULT_SETTINGS } from '../../../../helpers/pg-pool-front.ts';

function problem(raw: unknown): string {
  try {
    parseConfig(raw, '/');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.message;
  }
  assert.fail('config was accepted');
}

const routes = { db: '127.0.0.1:5432' };
const auth = { users: { app: { password: 'x' } } };

describe('postgres listener pool config', () => {
  it('pool needs auth', () => {
    assert.match(problem({ routes, listeners: [{ protocol: 'postgres', port: 1, pool: { size: 5 } }] }), /listeners\.0\.pool: pooling needs proxy-side authentication/);
  });

  it('defaults', () => {
    const config = parseConfig({ routes, listeners: [{ protocol: 'postgres', port: 1, auth, pool: {} }] }, '/');
    const listener = config.listeners[0] as { pool?: unknown };
    assert.deepEqual(listener.pool, { mode: 'transaction', size: 20, minSize: 0, maxClientConnections: 1000, maxServerConnectionsPerBackend: 100, queueTimeoutMs: 5000, serverIdleTimeoutMs: 600000 });
  });

  it('minSize within size and the per-backend budget; unknown fields and modes refused', () => {
    assert.match(problem({ routes, listeners: [{ protocol: 'postgres', port: 1, auth, pool: { size: 2, minSize: 3 } }] }), /minSize \(3\) is larger than size \(2\)/);
    assert.match(problem({ routes, listeners: [{ protocol: 'postgres', port: 1, auth, pool: { size: 20, minSize: 5, maxServerConnectionsPerBackend: 4 } }] }), /minSize \(5\) is larger than maxServerConnectionsPerBackend \(4\)/);
    assert.match(problem({ routes, listeners: [{ protocol: 'postgres', port: 1, auth, pool: { mode: 'statement' } }] }), /listeners\.0\.pool\.mode/);
    assert.match(problem({ routes, listeners: [{ protocol: 'postgres', port: 1, auth, pool: { poolSize: 3 } }] }), /poolSize/);
    assert.match(problem({ routes, listeners: [{ protocol: 'postgres', port: 1, auth, pool: { size: 0 } }] }), /listeners\.0\.pool\.size/);
  });

  it('limits are for the whole proxy: each worker gets its share', () => {
    const settings = { ...DEFAULT_SETTINGS, size: 20, minSize: 5, maxClientConnections: 1001, maxServerConnectionsPerBackend: 100 };
    assert.equal(perWorkerSettings(settings, 1), settings);
    assert.deepEqual(perWorkerSettings(settings, 2), { ...settings, size: 10, minSize: 2, maxClientConnections: 501, maxServerConnectionsPerBackend: 50 });
    // Never below one server connection per worker; 0 (no limit) stays 0.
    assert.deepEqual(perWorkerSettings({ ...settings, size: 3, minSize: 3, maxClientConnections: 0, maxServerConnectionsPerBackend: 0 }, 4), { ...settings, size: 1, minSize: 0, maxClientConnections: 0, maxServerConnectionsPerBackend: 0 });
  });
});
