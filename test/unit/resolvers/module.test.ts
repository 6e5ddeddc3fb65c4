import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../../../src/config/load.ts';
import { loadResolverModule } from '../../../src/resolvers/module.ts';

async function moduleFile(source: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'polyproxy-resolver-'));
  const file = path.join(dir, 'resolver.mjs');
  await writeFile(file, source);
  return file;
}

describe('loadResolverModule', () => {
  it('returns the resolver methods bound to the exported object, read once', async () => {
    const file = await moduleFile(`
      let reads = 0;
      export default {
        backend: '127.0.0.1:5432',
        get resolve() { reads++; return function () { return { endpoint: this.backend, reads }; }; },
        onConnect() {},
      };
    `);
    const resolver = await loadResolverModule(file, {});
    assert.deepEqual(resolver.resolve('a', undefined as never), { endpoint: '127.0.0.1:5432', reads: 1 });
    assert.deepEqual(resolver.resolve('b', undefined as never), { endpoint: '127.0.0.1:5432', reads: 1 });
    assert.equal(typeof resolver.onConnect, 'function');
    assert.equal(resolver.onDisconnect, undefined);
  });

  it('refuses, as a config error, a hook that is not a function and a resolver whose properties throw', async () => {
    const bad = [
      'export default { resolve() { return null; }, onConnect: 5 };',
      "export default { get resolve() { throw new Error('getter'); } };",
      "export default new Proxy({}, { get() { throw new Error('trap'); } });",
      'export default () => ({ resolve: 5 });',
    ];
    for (const source of bad) await assert.rejects(loadResolverModule(await moduleFile(source), {}), ConfigError, source);
  });
});
