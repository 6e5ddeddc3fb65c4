/**
 * src/config/load.ts: reading a YAML or JSON file, resolving relative paths
 * against its folder, and turning every problem into a ConfigError naming
 * the file. The schema rules themselves are in schema.test.ts.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfigFile, parseConfig } from '../../../src/config/load.ts';
import { FULL_OBJECT, FULL_YAML, MINIMAL, withMinimal } from './helpers.ts';

let dir: string;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'polyproxy-config-'));
  await mkdir(path.join(dir, 'sub'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let fileCounter = 0;
/** Writes `text` to a fresh file in the temp dir (or `sub/`) and returns its absolute path. */
async function file(text: string, ext = 'yaml', sub = false): Promise<string> {
  const p = path.join(dir, sub ? 'sub' : '', `config-${++fileCounter}.${ext}`);
  await writeFile(p, text);
  return p;
}

describe('loadConfigFile: valid files', () => {
  it('a full YAML file and the same in JSON load to the same object', async () => {
    const fromYaml = await loadConfigFile(await file(FULL_YAML, 'yaml'));
    const fromJson = await loadConfigFile(await file(JSON.stringify(FULL_OBJECT, null, 2), 'json'));
    assert.deepEqual(fromYaml, fromJson);
  });

  it('the full file loads every value as written (paths made absolute)', async () => {
    const config = await loadConfigFile(await file(FULL_YAML));
    assert.deepEqual(config, {
      ...FULL_OBJECT,
      resolver: { module: path.join(dir, 'resolvers/tenants.ts'), timeoutMs: 2000, trackIntervalMs: 10000 },
      listeners: [
        {
          ...FULL_OBJECT.listeners[0],
          tls: { cert: path.join(dir, 'certs/server.crt'), key: path.join(dir, 'certs/server.key'), ca: path.resolve(dir, '../ca/ca.crt'), requireClientCert: true },
        },
        {
          ...FULL_OBJECT.listeners[1],
          host: '0.0.0.0',
          connectTimeoutMs: 5000,
          idleTimeoutMs: 0,
          handshakeTimeoutMs: 10000,
          maxConnections: 0,
          firstResponseTimeoutMs: 0,
          tcpKeepAliveMs: 60000,
        },
      ],
    });
  });

  it('unquoted host:port values in YAML stay strings', async () => {
    const config = await loadConfigFile(await file('listeners:\n  - protocol: tcp\n    port: 1\n    backend: 10.0.0.1:80\nroutes:\n  a: 1.2.3.4:5\n'));
    assert.equal(config.listeners[0]?.backend, '10.0.0.1:80');
    assert.equal(config.routes.a, '1.2.3.4:5');
  });

  it('defaults are filled in', async () => {
    const config = await loadConfigFile(await file('listeners:\n  - protocol: postgres\n    port: 5432\n'));
    assert.deepEqual(config, {
      workers: os.availableParallelism(),
      logLevel: 'info',
      shutdownTimeoutSeconds: 30,
      security: { allowPrivateBackends: false, allowBackends: [] },
      cache: { ttlSeconds: 60, maxEntries: 100000 },
      metrics: { maxResources: 1000 },
      health: { intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 2, failureThreshold: 3, openMs: 10000 },
      coldStart: { timeoutMs: 30000, maxWaiting: 1000, pollIntervalMs: 100 },
      routes: {},
      resolver: { timeoutMs: 5000, trackIntervalMs: 10000 },
      listeners: [{ protocol: 'postgres', port: 5432, host: '0.0.0.0', connectTimeoutMs: 5000, idleTimeoutMs: 0, handshakeTimeoutMs: 10000, maxConnections: 0, tcpKeepAliveMs: 60000, firstResponseTimeoutMs: 15000, name: 'postgres-5432' }],
    });
  });

  it("a route's backend tls.ca is resolved against the config folder; tls needs protocol: h2 (issue 20)", () => {
    const listeners = [{ protocol: 'http', port: 1 }];
    const config = parseConfig({ listeners, routes: { 'a.test': { endpoint: '10.0.0.1:443', protocol: 'h2', tls: { ca: 'ca.pem', servername: 'a.internal' } }, 'b.test': { endpoint: '10.0.0.1:443', protocol: 'h2', tls: true } } }, '/etc/pp');
    assert.deepEqual(config.routes['a.test'], { endpoint: '10.0.0.1:443', protocol: 'h2', tls: { ca: '/etc/pp/ca.pem', servername: 'a.internal' } });
    assert.deepEqual(config.routes['b.test'], { endpoint: '10.0.0.1:443', protocol: 'h2', tls: true });
    assert.throws(() => parseConfig({ listeners, routes: { 'c.test': { endpoint: '10.0.0.1:443', tls: true } } }, '/etc/pp'), /tls needs protocol: h2/);
  });

  it('tls.requireClientCert defaults to false and ca stays absent', () => {
    const config = parseConfig({ listeners: [{ protocol: 'postgres', port: 1, tls: { cert: 'a.crt', key: 'a.key' } }] }, '/etc/pp');
    assert.deepEqual(config.listeners[0]?.tls, { cert: '/etc/pp/a.crt', key: '/etc/pp/a.key', requireClientCert: false });
  });

  it('partial nested objects get their own defaults', () => {
    const config = parseConfig(withMinimal({ security: { allowPrivateBackends: true }, cache: { ttlSeconds: 5 }, resolver: { module: '/abs/r.js' } }), '/x');
    assert.deepEqual(config.security, { allowPrivateBackends: true, allowBackends: [] });
    assert.deepEqual(config.cache, { ttlSeconds: 5, maxEntries: 100000 });
    assert.deepEqual(config.resolver, { module: '/abs/r.js', timeoutMs: 5000, trackIntervalMs: 10000 });
  });
});

describe('loadConfigFile: relative paths', () => {
  it('tls and resolver paths are resolved against the config file folder, not the cwd', async () => {
    const p = await file(
      'resolver:\n  module: ../r/resolver.ts\nlisteners:\n  - protocol: postgres\n    port: 1\n    tls: { cert: c.pem, key: keys/k.pem, ca: ./ca.pem }\n',
      'yaml',
      true,
    );
    const cwd = process.cwd();
    assert.notEqual(cwd, path.dirname(p));
    const config = await loadConfigFile(p);
    const sub = path.join(dir, 'sub');
    assert.equal(config.resolver.module, path.join(dir, 'r/resolver.ts'));
    assert.deepEqual(config.listeners[0]?.tls, { cert: path.join(sub, 'c.pem'), key: path.join(sub, 'keys/k.pem'), ca: path.join(sub, 'ca.pem'), requireClientCert: false });
  });

  it('a relative config file path is resolved against the cwd first', async () => {
    const p = await file('listeners:\n  - protocol: postgres\n    port: 1\n    tls: { cert: c.pem, key: k.pem }\n');
    const config = await loadConfigFile(path.relative(process.cwd(), p));
    assert.equal(config.listeners[0]?.tls?.cert, path.join(dir, 'c.pem'));
  });

  it('absolute paths are kept', async () => {
    const config = await loadConfigFile(await file('resolver: { module: /opt/r.js }\nlisteners:\n  - protocol: postgres\n    port: 1\n    tls: { cert: /etc/c.pem, key: /etc/k.pem, ca: /etc/ca.pem }\n'));
    assert.equal(config.resolver.module, '/opt/r.js');
    assert.deepEqual(config.listeners[0]?.tls, { cert: '/etc/c.pem', key: '/etc/k.pem', ca: '/etc/ca.pem', requireClientCert: false });
  });

  it('parseConfig resolves against the baseDir it is given', () => {
    const config = parseConfig({ ...MINIMAL, resolver: { module: 'r.ts' } }, '/srv/pp');
    assert.equal(config.resolver.module, '/srv/pp/r.ts');
  });
});

describe('loadConfigFile: errors', () => {
  it('loadConfigFile errors name the file and the field', async () => {
    const p = await file('listeners:\n  - protocol: postgres\n    port: "5432"\n');
    await assert.rejects(loadConfigFile(p), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.ok(err.message.startsWith(`${p} is invalid:`), err.message);
      assert.match(err.message, /^listeners\.0\.port: /m);
      return true;
    });
  });
});

describe('loadConfigFile: unreadable input', () => {
  it('a file that is not YAML gives ConfigError', async () => {
    const p = await file('listeners: [\n  { protocol: postgres, port: 1\n', 'yaml');
    await assert.rejects(loadConfigFile(p), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.match(err.message, /is not valid YAML or JSON/);
      assert.ok(err.message.includes(p));
      return true;
    });
  });

  it('broken JSON gives ConfigError', async () => {
    const p = await file('{ "listeners": [ { "protocol": "postgres", "port": 1 }', 'json');
    await assert.rejects(loadConfigFile(p), (err: unknown) => err instanceof ConfigError && /not valid YAML or JSON/.test(err.message));
  });

  it('a YAML scalar or an empty file is a schema error, still a ConfigError', async () => {
    await assert.rejects(loadConfigFile(await file('just some text\n')), (err: unknown) => err instanceof ConfigError && /\(root\): .*expected object/.test(err.message));
    await assert.rejects(loadConfigFile(await file('')), (err: unknown) => err instanceof ConfigError && /^listeners: /m.test(err.message));
  });

  it('a missing file gives ConfigError naming it', async () => {
    const p = path.join(dir, 'does-not-exist.yaml');
    await assert.rejects(loadConfigFile(p), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /^cannot read /);
      assert.ok(err.message.includes(p));
      return true;
    });
  });
});
