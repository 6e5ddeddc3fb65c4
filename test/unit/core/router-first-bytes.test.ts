/**
 * ResolveContext.firstBytes (raw TCP routed by what the client sent): the
 * lookup is per connection — not cached, not shared with a concurrent
 * lookup of the same id — and the resolver sees the bytes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ResolveContext, Resolver } from '../../../src/core/resolver.ts';
import { Router } from '../../../src/core/router.ts';
import { SsrfGuard } from '../../../src/core/ssrf-guard.ts';

const CTX: ResolveContext = { protocol: 'tcp', listener: 'kv', clientAddress: '127.0.0.1', clientPort: 40000, tls: undefined };

function byFirstByte(seen: Array<Buffer | undefined>): Resolver {
  return {
    async resolve(_id, ctx) {
      seen.push(ctx.firstBytes);
      await new Promise((resolve) => setTimeout(resolve, 5));
      return { endpoint: ctx.firstBytes?.[0] === 0x42 ? '127.0.0.2:2' : '127.0.0.1:1', ttlMs: 60_000 };
    },
  };
}

function router(resolver: Resolver): Router {
  const guard = new SsrfGuard({ allowPrivateBackends: false, allowBackends: ['127.0.0.0/8'] });
  return new Router({ sources: [{ name: 'module', resolver }], guard, cacheTtlMs: 60_000, cacheMaxEntries: 100, resolveTimeoutMs: 1000 });
}

describe('Router with ResolveContext.firstBytes', () => {
  it('asks the resolver for every connection, concurrent ones included, with their own bytes', async () => {
    const seen: Array<Buffer | undefined> = [];
    const r = router(byFirstByte(seen));
    const [a, b] = await Promise.all([r.route('kv', { ...CTX, firstBytes: Buffer.from('A') }), r.route('kv', { ...CTX, firstBytes: Buffer.from('B') })]);
    assert.equal(a.candidates[0]?.label, '127.0.0.1:1');
    assert.equal(b.candidates[0]?.label, '127.0.0.2:2');
    const again = await r.route('kv', { ...CTX, firstBytes: Buffer.alloc(0) });
    assert.equal(again.cacheHit, false);
    assert.equal(again.candidates[0]?.label, '127.0.0.1:1');
    assert.deepEqual(seen.map((s) => s?.toString()), ['A', 'B', '']);
    assert.equal(r.stats().entries, 0, 'nothing cached');
  });

  it('without firstBytes the id is cached as before', async () => {
    const seen: Array<Buffer | undefined> = [];
    const r = router(byFirstByte(seen));
    await r.route('shop.example.com', CTX);
    const second = await r.route('shop.example.com', CTX);
    assert.equal(second.cacheHit, true);
    assert.deepEqual(seen, [undefined]);
  });
});
