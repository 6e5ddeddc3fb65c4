/**
 * src/config/json-schema.ts and the shipped polyproxy.schema.json: the
 * committed file is what the zod schema generates now (npm run build writes
 * it), the package ships it, and it agrees with the zod schema on real
 * configs (read back with z.fromJSONSchema as an independent validator).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { configJsonSchema, configJsonSchemaText, JSON_SCHEMA_FILE } from '../../../src/config/json-schema.ts';
import { parseConfig } from '../../../src/config/load.ts';
import { PROTOCOLS } from '../../../src/protocols/index.ts';
import { FULL_OBJECT } from './helpers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const validator = z.fromJSONSchema(configJsonSchema() as Parameters<typeof z.fromJSONSchema>[0]);

/** The README's YAML blocks that are whole config files (they have listeners). */
function readmeConfigs(): unknown[] {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  return [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)]
    .map((m) => m[1] as string)
    .filter((text) => /^listeners:/m.test(text))
    .flatMap((text) => parseAllDocuments(text).map((d) => d.toJS() as unknown));
}

describe('polyproxy.schema.json', () => {
  it('is up to date with src/config/schema.ts (npm run build writes it)', () => {
    assert.equal(readFileSync(path.join(ROOT, JSON_SCHEMA_FILE), 'utf8'), configJsonSchemaText(), `${JSON_SCHEMA_FILE} is stale: run npm run build and commit it`);
  });

  it('ships in the package, at its root', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { files: string[] };
    assert.ok(pkg.files.includes(JSON_SCHEMA_FILE));
  });

  it('has no machine-dependent default (workers is the CPU count at run time)', () => {
    const workers = (configJsonSchema().properties as Record<string, Record<string, unknown>>).workers;
    assert.equal(workers?.default, undefined);
  });

  it('offers every protocol for a listener', () => {
    const text = configJsonSchemaText();
    for (const protocol of PROTOCOLS) assert.ok(text.includes(`"const": "${protocol.name}"`), protocol.name);
  });

  it('accepts what the zod schema accepts: the full fixture and the README\'s config files', () => {
    const configs = [FULL_OBJECT, ...readmeConfigs()];
    assert.ok(configs.length > 3, 'found the README configs');
    for (const config of configs) {
      parseConfig(config, ROOT); // valid for polyproxy
      const result = validator.safeParse(config);
      assert.ok(result.success, `${JSON.stringify(config).slice(0, 200)}: ${result.error?.message ?? ''}`);
    }
  });

  it('refuses unknown fields, wrong types and a missing listeners list, as editors will show', () => {
    assert.equal(validator.safeParse({ listners: [] }).success, false);
    assert.equal(validator.safeParse({ listeners: [{ protocol: 'postgres', port: 1, bakend: 'x:1' }] }).success, false);
    assert.equal(validator.safeParse({ listeners: [{ protocol: 'postgres', port: 'x' }] }).success, false);
    assert.equal(validator.safeParse({ listeners: [{ protocol: 'gopher', port: 1 }] }).success, false);
    assert.equal(validator.safeParse({ workers: 2 }).success, false);
  });
});
