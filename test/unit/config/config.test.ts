import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfigFile, parseConfig } from '../../../src/config/load.ts';
import { configSchema } from '../../../src/config/schema.ts';

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

/** Expects a ConfigError whose message has a line starting with `field: `; returns that line. */
function assertNamesField(fn: () => unknown, field: string, why?: RegExp): string {
  let error: unknown;
  try {
    fn();
  } catch (err) {
    error = err;
  }
  assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
  assert.equal(error.name, 'ConfigError');
  const line = error.message.split('\n').find((l) => l.startsWith(`${field}: `));
  assert.ok(line !== undefined, `no line naming "${field}" in:\n${error.message}`);
  if (why !== undefined) assert.match(line, why);
  return line;
}

const MINIMAL = { listeners: [{ protocol: 'postgres', port: 5432 }] };
const withMinimal = (extra: Record<string, unknown>): Record<string, unknown> => ({ ...MINIMAL, ...extra });

const FULL_YAML = `# every field, set
workers: 2
logLevel: warn
shutdownTimeoutSeconds: 12
security:
  allowPrivateBackends: false
  allowBackends:
    - 127.0.0.0/8
    - "::1"
    - unix:/var/run/postgresql
cache:
  ttlSeconds: 30
  maxEntries: 500
admin:
  host: 127.0.0.1
  port: 9900
metrics:
  maxResources: 50
health:
  intervalMs: 500
  timeoutMs: 300
  rise: 1
  fall: 3
  failureThreshold: 2
  openMs: 4000
  httpPath: /healthz
coldStart:
  timeoutMs: 9000
  maxWaiting: 10
  pollIntervalMs: 50
routes:
  shop: 127.0.0.1:5432
  "*.example.com":
    - 127.0.0.1:5433
    - 127.0.0.2:5433
  db:
    primary: 127.0.0.1:5434
    replicas: [127.0.0.1:5435, "[::1]:5436"]
  sock: unix:/var/run/postgresql/.s.PGSQL.5432
resolver:
  module: ./resolvers/tenants.ts
  timeoutMs: 2000
listeners:
  - name: pg-main
    protocol: postgres
    host: 127.0.0.1
    port: 6432
    tls:
      cert: certs/server.crt
      key: ./certs/server.key
      ca: ../ca/ca.crt
      requireClientCert: true
    connectTimeoutMs: 3000
    idleTimeoutMs: 60000
    handshakeTimeoutMs: 4000
    maxConnections: 100
    firstResponseTimeoutMs: 8000
    tcpKeepAliveMs: 30000
  - name: raw
    protocol: tcp
    port: 7000
    backend: [127.0.0.1:7001, 127.0.0.1:7002]
`;

const FULL_OBJECT = {
  workers: 2,
  logLevel: 'warn',
  shutdownTimeoutSeconds: 12,
  security: { allowPrivateBackends: false, allowBackends: ['127.0.0.0/8', '::1', 'unix:/var/run/postgresql'] },
  cache: { ttlSeconds: 30, maxEntries: 500 },
  admin: { host: '127.0.0.1', port: 9900 },
  metrics: { maxResources: 50 },
  health: { intervalMs: 500, timeoutMs: 300, rise: 1, fall: 3, failureThreshold: 2, openMs: 4000, httpPath: '/healthz' },
  coldStart: { timeoutMs: 9000, maxWaiting: 10, pollIntervalMs: 50 },
  routes: {
    shop: '127.0.0.1:5432',
    '*.example.com': ['127.0.0.1:5433', '127.0.0.2:5433'],
    db: { primary: '127.0.0.1:5434', replicas: ['127.0.0.1:5435', '[::1]:5436'] },
    sock: 'unix:/var/run/postgresql/.s.PGSQL.5432',
  },
  resolver: { module: './resolvers/tenants.ts', timeoutMs: 2000 },
  listeners: [
    {
      name: 'pg-main',
      protocol: 'postgres',
      host: '127.0.0.1',
      port: 6432,
      tls: { cert: 'certs/server.crt', key: './certs/server.key', ca: '../ca/ca.crt', requireClientCert: true },
      connectTimeoutMs: 3000,
      idleTimeoutMs: 60000,
      handshakeTimeoutMs: 4000,
      maxConnections: 100,
      firstResponseTimeoutMs: 8000,
      tcpKeepAliveMs: 30000,
    },
    { name: 'raw', protocol: 'tcp', port: 7000, backend: ['127.0.0.1:7001', '127.0.0.1:7002'] },
  ],
};

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
      resolver: { module: path.join(dir, 'resolvers/tenants.ts'), timeoutMs: 2000 },
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
      resolver: { timeoutMs: 5000 },
      listeners: [{ protocol: 'postgres', port: 5432, host: '0.0.0.0', connectTimeoutMs: 5000, idleTimeoutMs: 0, handshakeTimeoutMs: 10000, maxConnections: 0, tcpKeepAliveMs: 60000, firstResponseTimeoutMs: 15000, name: 'postgres-5432' }],
    });
  });

  it('tls.requireClientCert defaults to false and ca stays absent', () => {
    const config = parseConfig({ listeners: [{ protocol: 'postgres', port: 1, tls: { cert: 'a.crt', key: 'a.key' } }] }, '/etc/pp');
    assert.deepEqual(config.listeners[0]?.tls, { cert: '/etc/pp/a.crt', key: '/etc/pp/a.key', requireClientCert: false });
  });

  it('partial nested objects get their own defaults', () => {
    const config = parseConfig(withMinimal({ security: { allowPrivateBackends: true }, cache: { ttlSeconds: 5 }, resolver: { module: '/abs/r.js' } }), '/x');
    assert.deepEqual(config.security, { allowPrivateBackends: true, allowBackends: [] });
    assert.deepEqual(config.cache, { ttlSeconds: 5, maxEntries: 100000 });
    assert.deepEqual(config.resolver, { module: '/abs/r.js', timeoutMs: 5000 });
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

describe('config errors name the field', () => {
  it('unknown top-level field (typo "listner")', () => {
    const line = assertNamesField(() => parseConfig({ listner: [], ...MINIMAL }, '/'), '(root)', /Unrecognized key: "listner"/);
    assert.ok(line.includes('listner'));
  });

  it('the typo alone also reports the missing listeners', () => {
    const raw = { listner: [{ protocol: 'postgres', port: 1 }] };
    assertNamesField(() => parseConfig(raw, '/'), '(root)', /"listner"/);
    assertNamesField(() => parseConfig(raw, '/'), 'listeners');
  });

  it('unknown listener field', () => {
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'postgres', port: 1, prot: 'x' }] }, '/'), 'listeners.0', /Unrecognized key: "prot"/);
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
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'redis', port: 1 }] }, '/'), 'listeners.0.protocol', /one of: postgres, tcp/);
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

describe('configSchema', () => {
  it('accepts the full object and rejects nothing in it', () => {
    const result = configSchema.safeParse(FULL_OBJECT);
    assert.equal(result.success, true, result.success ? '' : JSON.stringify(result.error.issues));
  });
});
