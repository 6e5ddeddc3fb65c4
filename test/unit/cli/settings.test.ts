/** src/cli/settings.ts: flags over POLYPROXY_* variables over the file; which mode runs; messages naming the flag or variable. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../../src/config/load.ts';
import { resolveSettings } from '../../../src/cli/settings.ts';

describe('resolveSettings', () => {
  it('an environment-only one-line start', () => {
    const s = resolveSettings({}, { POLYPROXY_PROTOCOL: 'postgres', POLYPROXY_PORT: '6432', POLYPROXY_BACKEND: 'a:1, b:2', POLYPROXY_HOST: '127.0.0.1', POLYPROXY_WORKERS: '2', POLYPROXY_ADMIN_PORT: '9900', POLYPROXY_LOG_LEVEL: 'warn' });
    assert.equal(s.mode, 'one-line');
    assert.deepEqual(s.protocol, { value: 'postgres', from: 'POLYPROXY_PROTOCOL' });
    assert.deepEqual(s.port, { value: 6432, from: 'POLYPROXY_PORT' });
    assert.deepEqual(s.backend, { value: ['a:1', 'b:2'], from: 'POLYPROXY_BACKEND' });
    assert.deepEqual(s.host?.value, '127.0.0.1');
    assert.deepEqual([s.workers?.value, s.adminPort?.value, s.logLevel?.value], [2, 9900, 'warn']);
  });

  it('a flag wins over its variable', () => {
    const s = resolveSettings({ port: '7000', workers: '3', backend: ['x:1'] }, { POLYPROXY_PROTOCOL: 'tcp', POLYPROXY_PORT: '6432', POLYPROXY_WORKERS: '2', POLYPROXY_BACKEND: 'y:1' });
    assert.deepEqual(s.port, { value: 7000, from: '--port' });
    assert.deepEqual(s.workers, { value: 3, from: '--workers' });
    assert.deepEqual(s.backend, { value: ['x:1'], from: '--backend' });
    assert.deepEqual(s.protocol, { value: 'tcp', from: 'POLYPROXY_PROTOCOL' });
  });

  it('TLS settings, with the boolean spelled as people do', () => {
    const s = resolveSettings({}, { POLYPROXY_PROTOCOL: 'postgres', POLYPROXY_PORT: '1', POLYPROXY_BACKEND: 'a:1', POLYPROXY_TLS_CERT: 'c.pem', POLYPROXY_TLS_KEY: 'k.pem', POLYPROXY_TLS_CA: 'ca.pem', POLYPROXY_TLS_REQUIRE_CLIENT_CERT: 'yes' });
    assert.deepEqual([s.tlsCert?.value, s.tlsKey?.value, s.tlsCa?.value, s.tlsRequireClientCert?.value], ['c.pem', 'k.pem', 'ca.pem', true]);
    assert.equal(resolveSettings({ 'tls-require-client-cert': false }, { POLYPROXY_TLS_REQUIRE_CLIENT_CERT: 'true' }).tlsRequireClientCert?.value, false);
    assert.throws(() => resolveSettings({}, { POLYPROXY_PORT: '1', POLYPROXY_TLS_REQUIRE_CLIENT_CERT: 'maybe' }), /POLYPROXY_TLS_REQUIRE_CLIENT_CERT: expected true or false, got "maybe"/);
  });

  it('POLYPROXY_CONFIG runs the file; --workers etc. still override', () => {
    const s = resolveSettings({ workers: '1' }, { POLYPROXY_CONFIG: '/etc/p.yaml', POLYPROXY_WORKERS: '4', POLYPROXY_ADMIN_PORT: '9901' });
    assert.equal(s.mode, 'file');
    assert.deepEqual(s.config, { value: '/etc/p.yaml', from: 'POLYPROXY_CONFIG' });
    assert.deepEqual([s.workers?.from, s.adminPort?.value], ['--workers', 9901]);
  });

  it('a flag that picks the other mode leaves the variables for this one unused (reported, not silently dropped)', () => {
    const file = resolveSettings({ config: 'x.yaml' }, { POLYPROXY_PORT: '6432' });
    assert.equal(file.mode, 'file');
    assert.deepEqual(file.unused, ['POLYPROXY_PORT']);
    assert.equal(file.port, undefined);
    const oneLine = resolveSettings({ protocol: 'tcp' }, { POLYPROXY_CONFIG: 'x.yaml' });
    assert.deepEqual([oneLine.mode, oneLine.unused, oneLine.config], ['one-line', ['POLYPROXY_CONFIG'], undefined]);
  });

  it('both modes in the environment is an error naming the variables', () => {
    assert.throws(() => resolveSettings({}, { POLYPROXY_CONFIG: 'x.yaml', POLYPROXY_PORT: '1' }), (err: unknown) => err instanceof ConfigError && /POLYPROXY_CONFIG and POLYPROXY_PORT are both set/.test(err.message));
  });

  it('numbers are whole numbers, named by where they came from', () => {
    assert.throws(() => resolveSettings({}, { POLYPROXY_PROTOCOL: 'tcp', POLYPROXY_PORT: 'http' }), /POLYPROXY_PORT: expected a whole number, got "http"/);
    assert.throws(() => resolveSettings({ workers: 'two' }, {}), /--workers: expected a whole number, got "two"/);
  });

  it('empty variables count as unset', () => {
    assert.equal(resolveSettings({}, { POLYPROXY_CONFIG: '', POLYPROXY_PORT: ' ' }).mode, null);
  });
});
