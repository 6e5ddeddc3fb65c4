/**
 * Loads a user's resolver module: its default export is a Resolver object,
 * or a function that takes the config and returns one (maybe async).
 * TypeScript modules load directly (Node strips their types).
 */
import { pathToFileURL } from 'node:url';
import { ConfigError } from '../config/load.ts';
import type { Resolver, ResolverModuleExport } from '../core/resolver.ts';

export async function loadResolverModule(file: string, config: unknown): Promise<Resolver> {
  let mod: { default?: ResolverModuleExport };
  try {
    mod = (await import(pathToFileURL(file).href)) as { default?: ResolverModuleExport };
  } catch (err) {
    throw new ConfigError(`resolver.module: cannot load ${file}: ${(err as Error).message}`);
  }
  const exported = mod.default;
  const resolver = typeof exported === 'function' ? await exported(config) : exported;
  if (resolver === null || typeof resolver !== 'object' || typeof resolver.resolve !== 'function') {
    throw new ConfigError(`resolver.module: ${file} must default-export a Resolver (an object with resolve()) or a function returning one`);
  }
  return resolver;
}
