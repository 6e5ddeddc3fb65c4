import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resolverHookErrors } from '../../../src/core/metrics.ts';
import { callHook, describeError, tenantResolver } from '../../../src/core/tenant-code.ts';

async function hookErrors(hook: string): Promise<number> {
  const metric = await resolverHookErrors.get();
  return metric.values.find((v) => v.labels.hook === hook)?.value ?? 0;
}

/** Lets promise jobs and immediates run, so a rejection nobody handled would have been reported. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
}

const throwing = (): never => {
  throw new Error('trap');
};

describe('callHook', () => {
  it('absorbs and counts a sync throw, a rejection, a rejecting or throwing thenable, a throwing then getter and a hostile promise', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      const before = await hookErrors('onConnect');
      const results: Array<() => unknown> = [
        throwing,
        () => Promise.reject(new Error('rejected')),
        () => ({ then: (_: unknown, fail: (e: unknown) => void) => fail(new Error('thenable')) }),
        () => ({ then: throwing }),
        () => ({
          get then(): never {
            throw new Error('getter');
          },
        }),
        () => new Proxy({}, { get: throwing }),
      ];
      for (const result of results) assert.doesNotThrow(() => callHook('onConnect', result));
      await settle();
      assert.deepEqual(unhandled, []);
      assert.equal(await hookErrors('onConnect'), before + results.length);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('absorbs the later rejection of a promise no handler can be attached to (hostile constructor getter), and only that one', async () => {
    // In a process of its own: the test runner listens for unhandled rejections itself.
    const script = `
      import { callHook } from ${JSON.stringify(new URL('../../../src/core/tenant-code.ts', import.meta.url).href)};
      import { resolverHookErrors } from ${JSON.stringify(new URL('../../../src/core/metrics.ts', import.meta.url).href)};
      const hostile = new Promise((_, reject) => setTimeout(reject, 5, new Error('later')));
      Object.defineProperty(hostile, 'constructor', { get() { throw new Error('species'); } });
      callHook('onConnect', () => hostile);
      setTimeout(async () => {
        const n = (await resolverHookErrors.get()).values.find((v) => v.labels.hook === 'onConnect')?.value;
        process.stdout.write(String(n));
        if (process.argv[1] === 'ours') Promise.reject(new Error('our own bug'));
      }, 50);
    `;
    const run = (mode: string): { status: number | null; stdout: string } =>
      spawnSync(process.execPath, ['--input-type=module', '-e', script, mode], { encoding: 'utf8', env: { ...process.env, POLYPROXY_LOG_LEVEL: 'silent' } });
    const absorbed = run('tenant');
    assert.equal(absorbed.status, 0);
    assert.equal(absorbed.stdout, '2', 'the failed then and the later rejection are both counted');
    // A rejection that is not tenant code's still ends the process, as Node does by default.
    assert.equal(run('ours').status, 1);
  });

  it('does not count hooks that return nothing, a value, or a promise that fulfils', async () => {
    const before = await hookErrors('onDisconnect');
    for (const result of [undefined, 5, 'x', {}, Promise.resolve(), { then: (ok: () => void) => ok() }]) callHook('onDisconnect', () => result);
    await settle();
    assert.equal(await hookErrors('onDisconnect'), before);
  });
});

describe('tenantResolver', () => {
  it('reads the methods once and binds them to the user object', () => {
    let reads = 0;
    const user = {
      prefix: 'p:',
      get resolve() {
        reads++;
        return function (this: { prefix: string }, id: string) {
          return { endpoint: `${this.prefix}${id}` };
        };
      },
      onConnect: null,
    };
    const resolver = tenantResolver(user);
    assert.deepEqual(resolver.resolve('a', undefined as never), { endpoint: 'p:a' });
    resolver.resolve('b', undefined as never);
    assert.equal(reads, 1);
    assert.equal(resolver.onConnect, undefined);
    assert.equal('onConnect' in resolver, false);
  });

  it('refuses a resolver whose resolve or hooks are not functions, or whose reads throw', () => {
    assert.throws(() => tenantResolver({}), /resolve must be a function/);
    assert.throws(() => tenantResolver({ resolve: () => null, onDisconnect: 'x' }), /onDisconnect must be a function/);
    assert.throws(() => tenantResolver(new Proxy({}, { get: throwing })), /trap/);
  });
});

describe('describeError', () => {
  it('describes anything without trusting it', () => {
    assert.equal(describeError(new TypeError('x')), 'TypeError: x');
    assert.equal(describeError(Symbol('s')), 'Symbol(s)');
    assert.equal(describeError(undefined), 'undefined');
    assert.equal(describeError({ toString: throwing }), 'thrown [object Object]');
    const err = new Error('x');
    Object.defineProperty(err, 'message', { get: throwing });
    assert.equal(describeError(err), 'a thrown value that cannot be read');
    assert.equal(describeError(new Proxy({}, { getPrototypeOf: throwing })), 'a thrown value that cannot be read');
    assert.equal(describeError('y'.repeat(600)).length, 503);
  });
});
