/**
 * src/config/schema.ts: every rule of the config schema, seen through
 * parseConfig so each refusal is the ConfigError line naming the field.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../../src/config/load.ts';
import { configSchema } from '../../../src/config/schema.ts';
import { FULL_OBJECT, MINIMAL, assertNamesField, withMinimal } from './helpers.ts';

describe('config errors name the field', () => {
  it('unknown top-level field (typo "listner")', () => {
    const line = assertNamesField(() => parseConfig({ listner: [], ...MINIMAL }, '/'), '(root)', /unknown field "listner" \(did you mean "listeners"\?\)/);
    assert.ok(line.includes('listner'));
  });

  it('the typo alone also reports the missing listeners', () => {
    const raw = { listner: [{ protocol: 'postgres', port: 1 }] };
    assertNamesField(() => parseConfig(raw, '/'), '(root)', /"listner"/);
    assertNamesField(() => parseConfig(raw, '/'), 'listeners');
  });

  it('unknown listener field', () => {
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'postgres', port: 1, prot: 'x' }] }, '/'), 'listeners.0', /unknown field "prot" \(did you mean "port"\?\)/);
  });

  it('unknown nested field (security, cache, resolver, tls)', () => {
    assertNamesField(() => parseConfig(withMinimal({ security: { allowPrivate: true } }), '/'), 'security', /"allowPrivate"/);
    assertNamesField(() => parseConfig(withMinimal({ cache: { ttl: 1 } }), '/'), 'cache', /"ttl"/);
    assertNamesField(() => parseConfig(withMinimal({ resolver: { path: 'x' } }), '/'), 'resolver', /"path"/);
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'postgres', port: 1, tls: { cert: 'c', key: 'k', verify: true } }] }, '/'), 'listeners.0.tls', /"verify"/);
  });

  it('listeners.0.port as a string', () => {
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'postgres', port: '5432' }] }, '/'), 'listeners.0.port', /expected number, received string/);
  });

  it('port 70000, -1 and 1.5', () => {
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'postgres', port: 70000 }] }, '/'), 'listeners.0.port', /65535/);
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'postgres', port: -1 }] }, '/'), 'listeners.0.port');
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'postgres', port: 1.5 }] }, '/'), 'listeners.0.port');
  });

  it('an error in the second listener names index 1', () => {
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'postgres', port: 1 }, { protocol: 'postgres', port: 'x' }] }, '/'), 'listeners.1.port');
  });

  it('unknown or missing protocol', () => {
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'gopher', port: 1 }] }, '/'), 'listeners.0.protocol', /one of: postgres, tcp/);
    assertNamesField(() => parseConfig({ listeners: [{ port: 1 }] }, '/'), 'listeners.0.protocol', /one of: postgres, tcp/);
  });

  it('a tcp listener needs a backend', () => {
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'tcp', port: 1 }] }, '/'), 'listeners.0.backend');
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'tcp', port: 1, backend: 'nope' }] }, '/'), 'listeners.0.backend', /invalid endpoint "nope"/);
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'tcp', port: 1, backend: ['h:1', 'h:0'] }] }, '/'), 'listeners.0.backend.1', /port 0 out of range/);
  });

  it('bad endpoint in routes (routes.x)', () => {
    assertNamesField(() => parseConfig(withMinimal({ routes: { x: 'nope' } }), '/'), 'routes.x', /invalid endpoint "nope"/);
    assertNamesField(() => parseConfig(withMinimal({ routes: { x: ['h:1', 'bad host:1'] } }), '/'), 'routes.x.1', /bad host/);
    assertNamesField(() => parseConfig(withMinimal({ routes: { x: { primary: 'h:0' } } }), '/'), 'routes.x.primary', /port 0 out of range/);
    assertNamesField(() => parseConfig(withMinimal({ routes: { x: { primary: 'h:1', replicas: ['::1:5'] } } }), '/'), 'routes.x.replicas.0', /\[addr\]:port/);
    assertNamesField(() => parseConfig(withMinimal({ routes: { x: [] } }), '/'), 'routes.x');
  });

  it('bad allowBackends entry', () => {
    assertNamesField(() => parseConfig(withMinimal({ security: { allowBackends: ['127.0.0.0/8', '10.0.0.1/8'] } }), '/'), 'security.allowBackends.1', /host bits are set/);
    assertNamesField(() => parseConfig(withMinimal({ security: { allowBackends: ['not-an-ip'] } }), '/'), 'security.allowBackends.0', /"not-an-ip"/);
    assertNamesField(() => parseConfig(withMinimal({ security: { allowBackends: ['unix:relative'] } }), '/'), 'security.allowBackends.0', /absolute path/);
  });

  it('duplicate listener names', () => {
    const raw = {
      listeners: [
        { name: 'pg', protocol: 'postgres', port: 1 },
        { name: 'pg', protocol: 'tcp', port: 2, backend: 'h:1' },
      ],
    };
    assertNamesField(() => parseConfig(raw, '/'), 'listeners.1.name', /duplicate listener name "pg"/);
  });

  it('two listeners on one host:port', () => {
    const raw = {
      listeners: [
        { name: 'a', protocol: 'postgres', port: 5432 },
        { name: 'b', protocol: 'postgres', port: 5432 },
      ],
    };
    assertNamesField(() => parseConfig(raw, '/'), 'listeners.1.port', /port 5432 is used by another listener/);
    // Different hosts, or port 0 (any free port), do not clash.
    parseConfig({ listeners: [{ ...raw.listeners[0], host: '127.0.0.1' }, { ...raw.listeners[1], host: '127.0.0.2' }] }, '/');
    parseConfig({ listeners: [{ ...raw.listeners[0], port: 0 }, { ...raw.listeners[1], port: 0 }] }, '/');
  });

  it('requireClientCert without ca', () => {
    const raw = { listeners: [{ protocol: 'postgres', port: 1, tls: { cert: 'c', key: 'k', requireClientCert: true } }] };
    assertNamesField(() => parseConfig(raw, '/'), 'listeners.0.tls.ca', /requireClientCert needs a ca/);
  });

  it('empty or missing listeners', () => {
    assertNamesField(() => parseConfig({ listeners: [] }, '/'), 'listeners', /at least one listener/);
    assertNamesField(() => parseConfig({}, '/'), 'listeners');
    assertNamesField(() => parseConfig(null, '/'), 'listeners');
  });

  it('other scalar fields', () => {
    assertNamesField(() => parseConfig(withMinimal({ workers: 0 }), '/'), 'workers');
    assertNamesField(() => parseConfig(withMinimal({ workers: 257 }), '/'), 'workers');
    assertNamesField(() => parseConfig(withMinimal({ logLevel: 'verbose' }), '/'), 'logLevel');
    assertNamesField(() => parseConfig(withMinimal({ cache: { maxEntries: 0 } }), '/'), 'cache.maxEntries');
    assertNamesField(() => parseConfig(withMinimal({ resolver: { timeoutMs: 0 } }), '/'), 'resolver.timeoutMs');
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'postgres', port: 1, name: 'has space' }] }, '/'), 'listeners.0.name', /letters, digits/);
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'postgres', port: 1, idleTimeoutMs: -5 }] }, '/'), 'listeners.0.idleTimeoutMs');
  });

  it('several problems are all reported, one line each, after the source name', () => {
    try {
      parseConfig({ bogus: 1, listeners: [{ protocol: 'postgres', port: 'x' }] }, '/', 'my.yaml');
      assert.fail('should throw');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      const lines = err.message.split('\n');
      assert.equal(lines[0], 'my.yaml is invalid:');
      assert.deepEqual(lines.slice(1).map((l) => l.split(':')[0]).sort(), ['(root)', 'listeners.0.port']);
    }
  });
});

describe('configSchema', () => {
  it('accepts the full object and rejects nothing in it', () => {
    const result = configSchema.safeParse(FULL_OBJECT);
    assert.equal(result.success, true, result.success ? '' : JSON.stringify(result.error.issues));
  });
});

describe('fleet and resolver sources', () => {
  it('cluster.redis and resolver.redis take a url, a sentinel or a cluster (one of them); prefixes and timeouts default', () => {
    const config = parseConfig({ ...MINIMAL, cluster: { redis: { url: 'rediss://redis.example:6380' } }, resolver: { redis: { sentinel: { name: 'main', nodes: ['10.0.0.1:26379', '[fd00::1]:26379'] } }, http: { url: 'http://cp:8000/resolve' } } }, '/');
    assert.equal(config.cluster?.redis.prefix, 'polyproxy:');
    assert.equal(config.cluster?.commandTimeoutMs, 500);
    assert.equal(config.cluster?.heartbeatMs, 5000);
    assert.equal(config.resolver.redis?.prefix, 'polyproxy:route:');
    assert.deepEqual(config.resolver.redis?.sentinel?.nodes, ['10.0.0.1:26379', '[fd00::1]:26379']);
    assert.equal(config.resolver.http?.timeoutMs, 1000);
    assert.equal(config.resolver.http?.track, false);
    assert.equal(config.resolver.trackIntervalMs, 10000);
    assertNamesField(() => parseConfig({ ...MINIMAL, cluster: { redis: {} } }, '/'), 'cluster.redis', /url .*, sentinel .* or cluster/);
    const onCluster = parseConfig({ ...MINIMAL, cluster: { redis: { cluster: { nodes: ['redis-0:6379', '[fd00::2]:6379'], password: 'p' } } } }, '/');
    assert.deepEqual(onCluster.cluster?.redis.cluster?.nodes, ['redis-0:6379', '[fd00::2]:6379']);
    assertNamesField(() => parseConfig({ ...MINIMAL, cluster: { redis: { url: 'redis://a:1', cluster: { nodes: ['a:1'] } } } }, '/'), 'cluster.redis', /one of them/);
    assertNamesField(() => parseConfig({ ...MINIMAL, cluster: { redis: { cluster: { nodes: ['no-port'] } } } }, '/'), 'cluster.redis.cluster.nodes.0', /host:port/);
    assertNamesField(() => parseConfig({ ...MINIMAL, cluster: { redis: { url: 'redis://a:1', sentinel: { name: 'm', nodes: ['a:1'] } } } }, '/'), 'cluster.redis', /one of them/);
    assertNamesField(() => parseConfig({ ...MINIMAL, cluster: { redis: { url: 'http://a:1' } } }, '/'), 'cluster.redis.url', /redis:\/\/ or rediss:\/\//);
    assertNamesField(() => parseConfig({ ...MINIMAL, resolver: { http: { url: 'ftp://x' } } }, '/'), 'resolver.http.url', /http:\/\/ or https:\/\//);
    assertNamesField(() => parseConfig({ ...MINIMAL, cluster: { redis: { url: 'redis://a:1' }, instanceId: 'has space' } }, '/'), 'cluster.instanceId', /no spaces/);
  });
});
