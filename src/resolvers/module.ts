/**
 * Loads a user's resolver module: its default export is a Resolver object,
 * or a function that takes the config and returns one (maybe async).
 * TypeScript modules load directly (Node strips their types).
 */
import { pathToFileURL } from 'node:url';
import { ConfigError } from '../config/load.ts';
import type { Resolver, ResolverModuleExport } from '../core/resolver.ts';
import { describeError, tenantResolver } from '../core/tenant-code.ts';

/** `version` > 0 loads the file afresh (a reload): ESM caches a module by URL, so the URL gets a query. */
export async function loadResolverModule(file: string, config: unknown, version = 0): Promise<Resolver> {
  let mod: { default?: ResolverModuleExport };
  try {
    const url = pathToFileURL(file).href + (version > 0 ? `?reload=${version}` : '');
    mod = (await import(url)) as { default?: ResolverModuleExport };
  } catch (err) {
    throw new ConfigError(`resolver.module: cannot load ${file}: ${(err as Error).message}`);
  }
  const exported = mod.default;
  const resolver = typeof exported === 'function' ? await exported(config) : exported;
  const shape = `${file} must default-export a Resolver (an object with resolve()) or a function returning one`;
  if (resolver === null || typeof resolver !== 'object') throw new ConfigError(`resolver.module: ${shape}`);
  try {
    // Read once, here: the proxy calls the copy, never the user's getters or traps.
    return tenantResolver(resolver);
  } catch (err) {
    throw new ConfigError(`resolver.module: ${shape}: ${describeError(err)}`);
  }
}
