/**
 * Loads and validates a config file (YAML or JSON; YAML is a superset).
 * Relative paths in the file (certificates, resolver module) are resolved
 * against the file's folder, so a config works from any working directory.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { ZodError } from 'zod';
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

/** Validates an already-parsed object; `baseDir` anchors relative paths. */
export function parseConfig(raw: unknown, baseDir: string, source = 'config'): Config {
  const result = configSchema.safeParse(raw ?? {});
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
  };
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
