/**
 * Loads and validates a config file (YAML or JSON; YAML is a superset).
 * Relative paths in the file (certificates, resolver module) are resolved
 * against the file's folder, so a config works from any working directory.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { ZodError } from 'zod';
import type { z } from 'zod';
import { configSchema } from './schema.ts';
import type { Config, TlsConfig } from './schema.ts';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** One line per problem, each naming the field: `listeners.0.port: Invalid input: expected number, received string`. */
export function formatIssues(error: ZodError): string {
  return error.issues.map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`).join('\n');
}

/**
 * Messages a person can act on: a missing field says "required", an unknown
 * one names the closest known field. `inst` is the schema that raised the
 * issue (for unknown keys, the strict object whose shape lists the known ones).
 */
export const friendlyError: z.core.$ZodErrorMap = (issue) => {
  if (issue.code === 'invalid_type' && issue.input === undefined) return `required (${issue.expected})`;
  if (issue.code === 'unrecognized_keys') {
    const shape = (issue.inst as { _zod?: { def?: { shape?: Record<string, unknown> } } } | undefined)?._zod?.def?.shape;
    const known = shape === undefined ? [] : Object.keys(shape);
    return issue.keys
      .map((key) => {
        const near = closest(key, known);
        return near === null ? `unknown field "${key}"${known.length > 0 ? ` (fields here: ${known.join(', ')})` : ''}` : `unknown field "${key}" (did you mean "${near}"?)`;
      })
      .join('; ');
  }
  return undefined;
};

/** The known name within a small edit distance (case-insensitive), or null. */
export function closest(word: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== null && bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : null;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min((previous[j] as number) + 1, (row[j - 1] as number) + 1, (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length] as number;
}

/** Validates an already-parsed object; `baseDir` anchors relative paths. */
export function parseConfig(raw: unknown, baseDir: string, source = 'config'): Config {
  const result = configSchema.safeParse(raw ?? {}, { error: friendlyError });
  if (!result.success) throw new ConfigError(`${source} is invalid:\n${formatIssues(result.error)}`);
  return resolvePaths(result.data, baseDir);
}

export async function loadConfigFile(file: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw new ConfigError(`${file} is not valid YAML or JSON: ${(err as Error).message}`);
  }
  return parseConfig(raw, path.dirname(path.resolve(file)), file);
}

function resolvePaths(config: Config, baseDir: string): Config {
  const abs = (p: string): string => path.resolve(baseDir, p);
  return {
    ...config,
    resolver: config.resolver.module === undefined ? config.resolver : { ...config.resolver, module: abs(config.resolver.module) },
    listeners: config.listeners.map((listener) => (listener.tls === undefined ? listener : { ...listener, tls: resolveTlsPaths(listener.tls, abs) })),
    routes: resolveRouteCaPaths(config.routes, abs),
  };
}

/** A route's backend `tls.ca` file, made absolute (the table is returned as is when no route names one). */
function resolveRouteCaPaths(routes: Config['routes'], abs: (p: string) => string): Config['routes'] {
  let out: Config['routes'] | null = null;
  for (const [key, value] of Object.entries(routes)) {
    if (typeof value !== 'object' || Array.isArray(value) || !('tls' in value) || typeof value.tls !== 'object' || value.tls.ca === undefined) continue;
    out ??= { ...routes };
    out[key] = { ...value, tls: { ...value.tls, ca: abs(value.tls.ca) } };
  }
  return out ?? routes;
}

/** Every file a listener's `tls` block names (default, SNI certificates, CA), made absolute. */
function resolveTlsPaths(config: TlsConfig, abs: (p: string) => string): TlsConfig {
  return {
    ...config,
    cert: abs(config.cert),
    key: abs(config.key),
    ...(config.certificates === undefined ? {} : { certificates: config.certificates.map((entry) => ({ ...entry, cert: abs(entry.cert), key: abs(entry.key) })) }),
    ...(config.ca === undefined ? {} : { ca: abs(config.ca) }),
  };
}
