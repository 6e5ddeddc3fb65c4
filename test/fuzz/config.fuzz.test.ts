/**
 * Fuzzing config loading (issue 15): valid configs built from the schema's
 * fields validate, and the result, written out again, validates to the same
 * value; arbitrary and mutated objects either validate or fail with a
 * ConfigError whose every line names a field, and mutated YAML files read
 * by loadConfigFile give a config or a ConfigError — never anything else.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { ConfigError, loadConfigFile, parseConfig } from '../../src/config/load.ts';
import { fuzz, fuzzAsync } from '../helpers/fuzz.ts';

const BASE_DIR = '/etc/polyproxy';
const TOP_LEVEL = ['workers', 'logLevel', 'shutdownTimeoutSeconds', 'security', 'cache', 'admin', 'metrics', 'health', 'coldStart', 'routes', 'resolver', 'listeners'];

const endpoint = fc.oneof(
  fc.tuple(fc.constantFrom('db.internal', '10.0.0.7', 'Backend-1.example', 'localhost'), fc.integer({ min: 1, max: 65535 })).map(([host, port]) => `${host}:${port}`),
  fc.integer({ min: 1, max: 65535 }).map((port) => `[::1]:${port}`),
  fc.constantFrom('unix:/run/pg.sock', 'unix:/tmp/x'),
);
const ms = fc.integer({ min: 1, max: 600000 });
const maybe = <T,>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { nil: undefined });

/** Drops the keys whose value is undefined (absent fields). */
function defined(object: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined));
}

const common = {
  host: maybe(fc.constantFrom('127.0.0.1', '0.0.0.0', '::')),
  connectTimeoutMs: maybe(ms),
  idleTimeoutMs: maybe(fc.integer({ min: 0, max: 600000 })),
  handshakeTimeoutMs: maybe(fc.integer({ min: 2000, max: 600000 })),
  maxConnections: maybe(fc.integer({ min: 0, max: 100000 })),
};

const listener = fc.oneof(
  fc.record({ ...common, protocol: fc.constantFrom('postgres', 'mongodb'), backend: maybe(fc.oneof(endpoint, fc.array(endpoint, { minLength: 1, maxLength: 3 }))) }),
  fc.record({ ...common, protocol: fc.constant('mysql'), serverVersion: maybe(fc.constantFrom('8.0.36', '10.11.6-MariaDB')) }),
  fc.record({ ...common, protocol: fc.constant('smtp'), routeBy: maybe(fc.constantFrom('ehlo', 'rcpt')), hostname: maybe(fc.constantFrom('mx.example', 'proxy')), maxLineLength: maybe(fc.integer({ min: 512, max: 65536 })) }),
  fc.record({ ...common, protocol: fc.constant('http'), maxHeaders: maybe(fc.integer({ min: 1, max: 10000 })), telemetryHeaders: maybe(fc.boolean()), pool: maybe(fc.record({ maxPerBackend: maybe(fc.integer({ min: 0, max: 100 })), queueTimeoutMs: maybe(ms) }).map(defined)) }),
  fc.record({ ...common, protocol: fc.constant('tcp'), backend: endpoint, firstBytesMax: maybe(fc.integer({ min: 1, max: 65536 })) }),
  fc.record({ ...common, protocol: fc.constant('ws-bridge'), api: fc.constantFrom('http://api.internal/clients/', 'https://api.example:8443/ws/'), ordering: maybe(fc.constantFrom('ordered', 'parallel')), pingIntervalMs: maybe(fc.integer({ min: 1, max: 60000 })) }),
  fc.record({ ...common, protocol: fc.constant('fastcgi'), backends: fc.array(endpoint, { minLength: 1, maxLength: 3 }), documentRoot: fc.constantFrom('/var/www', '/srv/app/public'), params: maybe(fc.dictionary(fc.stringMatching(/^[A-Z_]{1,8}$/), fc.string({ maxLength: 8 }), { maxKeys: 3, noNullPrototype: true })) }),
);

/** Valid configs: each listener on its own port (or port 0), optional top-level sections. */
const validConfig = fc
  .record({
    listeners: fc.array(listener.map(defined), { minLength: 1, maxLength: 3 }),
    workers: maybe(fc.integer({ min: 1, max: 256 })),
    logLevel: maybe(fc.constantFrom('error', 'info', 'debug', 'silent')),
    shutdownTimeoutSeconds: maybe(fc.double({ min: 0, max: 100, noNaN: true })),
    security: maybe(fc.record({ allowPrivateBackends: maybe(fc.boolean()), allowBackends: maybe(fc.array(fc.constantFrom('10.0.0.0/8', '127.0.0.1', 'unix:/run/'), { maxLength: 2 })) }).map(defined)),
    cache: maybe(fc.record({ ttlSeconds: maybe(fc.integer({ min: 0, max: 3600 })), maxEntries: maybe(fc.integer({ min: 1, max: 1000000 })) }).map(defined)),
    admin: maybe(fc.record({ port: fc.integer({ min: 0, max: 65535 }), allowedHosts: maybe(fc.array(fc.constantFrom('proxy.local', 'admin.example'), { maxLength: 2 })) }).map(defined)),
    health: maybe(fc.record({ intervalMs: maybe(fc.integer({ min: 0, max: 10000 })), rise: maybe(fc.integer({ min: 1, max: 5 })), httpPath: maybe(fc.constantFrom('/healthz', '/')) }).map(defined)),
    routes: maybe(fc.dictionary(fc.stringMatching(/^[a-z0-9.-]{1,10}$/), fc.oneof(endpoint, fc.array(endpoint, { minLength: 1, maxLength: 2 }), fc.record({ primary: endpoint, replicas: maybe(fc.array(endpoint, { maxLength: 2 })) }).map(defined)), { maxKeys: 3, noNullPrototype: true })),
    resolver: maybe(fc.record({ module: maybe(fc.constantFrom('./resolver.ts', '/opt/resolver.js')), timeoutMs: maybe(ms) }).map(defined)),
  })
  .map((config) => {
    const listeners = config.listeners.map((entry, i) => ({ ...entry, port: 10000 + i }));
    return defined({ ...config, listeners });
  });

/** Every line of a ConfigError names a field: `(root)` or a path whose first part is a config key or a key of the input. */
function assertNamesFields(err: unknown, input: unknown): void {
  assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
  const [head, ...lines] = err.message.split('\n');
  assert.match(head as string, / is invalid:$/);
  assert.ok(lines.length > 0, 'at least one problem is listed');
  const inputKeys = input !== null && typeof input === 'object' ? Object.keys(input) : [];
  for (const line of lines) {
    assert.match(line, /^\S.*: \S/, `a "field: problem" line: ${line}`);
    const first = line.startsWith('(root): ') ? '(root)' : (line.split(/[.:]/, 1)[0] as string);
    assert.ok(first === '(root)' || TOP_LEVEL.includes(first) || inputKeys.includes(first), `names a field: ${line}`);
  }
}

/** A JSON-like value with one change at a random path: a key dropped, replaced by any JSON value, or an unknown key added. */
function mutate(value: unknown, steps: readonly number[], replacement: unknown, how: number): unknown {
  if (value === null || typeof value !== 'object') return replacement;
  const copy: Record<string, unknown> | unknown[] = Array.isArray(value) ? [...(value as unknown[])] : { ...(value as Record<string, unknown>) };
  const keys = Object.keys(copy);
  const [step, ...rest] = steps;
  if (step === undefined || keys.length === 0) {
    if (how === 0 && keys.length > 0) delete (copy as Record<string, unknown>)[keys[0] as string];
    else (copy as Record<string, unknown>)[how === 1 ? 'unknownField' : (keys[0] ?? 'x')] = replacement;
    return copy;
  }
  const key = keys[step % keys.length] as string;
  (copy as Record<string, unknown>)[key] = mutate((copy as Record<string, unknown>)[key], rest, replacement, how);
  return copy;
}

const mutatedConfig = fc
  .tuple(validConfig, fc.array(fc.nat(), { maxLength: 4 }), fc.jsonValue({ maxDepth: 2 }), fc.integer({ min: 0, max: 2 }))
  .map(([config, steps, replacement, how]) => mutate(config, steps, replacement, how));

/** One listener, few sections: the YAML parser's time grows with the document. */
const smallMutatedConfig = fc
  .tuple(fc.tuple(listener.map(defined), fc.option(fc.record({ intervalMs: fc.integer({ min: 0, max: 10000 }) }), { nil: undefined })), fc.array(fc.nat(), { maxLength: 3 }), fc.jsonValue({ maxDepth: 1 }), fc.integer({ min: 0, max: 2 }))
  .map(([[entry, health], steps, replacement, how]) => mutate(defined({ listeners: [{ ...entry, port: 10000 }], health }), steps, replacement, how));

function parseOrError(raw: unknown): { config: unknown } | { error: unknown } {
  try {
    return { config: parseConfig(raw, BASE_DIR) };
  } catch (error) {
    return { error };
  }
}

describe('config loading', () => {
  it('a valid config validates, and validates to the same value once written out', (t) => {
    fuzz(
      t,
      fc.property(validConfig, (raw) => {
        const config = parseConfig(raw, BASE_DIR);
        assert.deepStrictEqual(parseConfig(JSON.parse(JSON.stringify(config)), BASE_DIR), config);
      }),
      { smoke: 100 },
    );
  });

  it('arbitrary and mutated objects validate or fail with a ConfigError naming a field, never anything else', (t) => {
    fuzz(
      t,
      fc.property(fc.oneof({ arbitrary: mutatedConfig, weight: 4 }, fc.jsonValue({ maxDepth: 3 })), (raw) => {
        const result = parseOrError(raw);
        if ('error' in result) assertNamesFields(result.error, raw);
        // Written out again it validates to the same value (JSON has no -0: compare as JSON).
        else assert.deepStrictEqual(JSON.parse(JSON.stringify(parseConfig(JSON.parse(JSON.stringify(result.config)), BASE_DIR))), JSON.parse(JSON.stringify(result.config)));
      }),
      { smoke: 100 },
    );
  });

  describe('loadConfigFile', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'polyproxy-config-fuzz-'));
    const file = path.join(dir, 'polyproxy.yaml');
    // The YAML parser reports odd-but-valid input (an anchor before ':', a tag on a map) as process warnings: thousands of lines here.
    const emitWarning = process.emitWarning;
    before(() => {
      process.emitWarning = () => {};
    });
    after(() => {
      process.emitWarning = emitWarning;
      rmSync(dir, { recursive: true, force: true });
    });

    it('reads any (mutated) YAML file into a config or a ConfigError, never anything else', async (t) => {
      const yamlText = fc
        .tuple(smallMutatedConfig, fc.array(fc.tuple(fc.nat(), fc.constantFrom(':', '- ', '"', "'", '\n', '  ', '{', ']', '#', '&a', '*a', '!!binary', '\t', '\0')), { maxLength: 3 }))
        .map(([raw, edits]) => {
          // JSON text is YAML; the edits add YAML syntax (anchors, tags, block entries, comments) and break it.
          let yaml = JSON.stringify(raw, null, 1);
          for (const [at, piece] of edits) {
            const i = at % (yaml.length + 1);
            yaml = yaml.slice(0, i) + piece + yaml.slice(i);
          }
          return yaml;
        });
      await fuzzAsync(
        t,
        fc.asyncProperty(yamlText, async (yaml) => {
          writeFileSync(file, yaml);
          try {
            await loadConfigFile(file);
          } catch (err) {
            assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
            assert.ok(err.message.includes(file), 'the message names the file');
          }
        }),
        { smoke: 100 },
      );
    });
  });
});
