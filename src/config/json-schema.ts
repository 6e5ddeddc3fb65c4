/**
 * The config file's JSON Schema, generated from the zod schema (schema.ts)
 * so editors complete and validate polyproxy.yaml
 * (`# yaml-language-server: $schema=…/polyproxy.schema.json`). It describes
 * the input: defaults, types, ranges, enums, required and unknown fields.
 * Cross-field rules (duplicate ports, a route endpoint's syntax, TLS files)
 * are `polyproxy check`'s.
 */
import { z } from 'zod';
import { configSchema } from './schema.ts';

export const JSON_SCHEMA_FILE = 'polyproxy.schema.json';

export function configJsonSchema(): Record<string, unknown> {
  const generated = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown> & { properties: Record<string, Record<string, unknown>> };
  // Its default is the machine's CPU count: not a constant to write down.
  const { default: _cpuCount, ...workers } = generated.properties.workers ?? {};
  return {
    $schema: generated.$schema,
    title: 'polyproxy configuration',
    description: 'polyproxy.yaml / polyproxy.json. Generated from src/config/schema.ts; `polyproxy check --config FILE` also checks files, certificates, ports and routes.',
    ...generated,
    properties: { ...generated.properties, workers: { ...workers, description: 'Worker processes sharing the listening ports (default: the CPU count).' } },
  };
}

/** The file's text: stable key order as generated, two-space indent, trailing newline. */
export function configJsonSchemaText(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}
