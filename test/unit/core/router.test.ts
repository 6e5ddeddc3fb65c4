import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { Router } from '../../../src/core/router.ts';
import type { ResolverSource, RouterOptions } from '../../../src/core/router.ts';
import { SsrfGuard } from '../../../src/core/ssrf-guard.ts';
import type { HostLookup } from '../../../src/core/ssrf-guard.ts';
import { PolyproxyError, ResolveError } from '../../../src/core/errors.ts';
import type { FailureKind } from '../../../src/core/errors.ts';
import { StaticRoutes } from '../../../src/core/static-routes.ts';
import type { ResolveContext, ResolveResult, Resolver, Route } from '../../../src/core/resolver.ts';
import type { Endpoint } from '../../../src/core/endpoint.ts';
import type { EndpointHealth, ProbeKind } from '../../../src/core/health.ts';
import { resolverHookErrors } from '../../../src/core/metrics.ts';

const CTX: ResolveContext = { protocol: 'postgres', listener: 'pg', clientAddress: '127.0.0.1', clientPort: 40000, tls: undefined };
const TCP_CTX: ResolveContext = { ...CTX, protocol: 'tcp', listener: 'tcp' };

const loopbackGuard = (lookup?: HostLookup): SsrfGuard => new SsrfGuard({ allowPrivateBackends: false, allowBackends: ['127.0.0.0/8'] }, lookup);

/** A resolver that records every call and answers with `answer(id, callNumber)`. */
interface FakeResolver extends Resolver {
  readonly calls: string[];
  readonly purged: string[];
}

function fake(answer: (id: string, call: number) => ResolveResult | Promise<ResolveResult>, log?: string[], name?: string): FakeResolver {
  const calls: string[] = [];
  const purged: string[] = [];
  return {
    calls,
    purged,
    resolve(id: string) {
      calls.push(id);
      if (log !== undefined && name !== undefined) log.push(name);
      return answer(id, calls.length);
    },
    purge(id: string) {
      purged.push(id);
    },
  };
}

/** An async resolver that always answers `route`. */
function always(route: Route | null): FakeResolver {
  return fake(async () => route);
}

function makeRouter(sources: ReadonlyArray<Resolver | ResolverSource>, options: Partial<RouterOptions> = {}): Router {
  return new Router({
    sources: sources.map((s, i) => ('resolver' in s ? s : { name: `source${i}`, resolver: s })),
    guard: loopbackGuard(),
    cacheTtlMs: 60_000,
    cacheMaxEntries: 1000,
    resolveTimeoutMs: 1000,
    ...options,
  });
}

/** Awaits the promise, expecting a PolyproxyError of `kind`; returns it. */
async function failsWith(promise: Promise<unknown>, kind: FailureKind): Promise<PolyproxyError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof PolyproxyError, `expected PolyproxyError, got ${String(err)}`);
    assert.equal(err.kind, kind, `kind (message: ${err.message})`);
    assert.equal(err.code, `PP_ERR_${kind}`);
    return err;
  }
  assert.fail(`expected ${kind}, but the promise resolved`);
}

function hostPort(e: Endpoint | undefined): string {
  assert.ok(e !== undefined, 'endpoint expected');
  return e.type === 'tcp' ? `${e.host}:${e.port}` : `unix:${e.path}`;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Polls `router.route()` (without a fixed sleep of known length) until it is a cache miss; returns how many hits were seen. */
async function untilMiss(router: Router, id: string, deadlineMs = 2000): Promise<number> {
  const deadline = Date.now() + deadlineMs;
  let hits = 0;
  while (Date.now() < deadline) {
    const d = await router.route(id, CTX);
    if (!d.cacheHit) return hits;
    hits++;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  assert.fail(`"${id}" was still cached after ${deadlineMs} ms`);
}

describe('Router: sources in order', () => {
  it('asks sources in order and stops at the first answer', async () => {
    const order: string[] = [];
    const a = fake(() => null, order, 'a');
    const b = fake(() => ({ endpoint: '127.0.0.2:5432' }), order, 'b');
    const c = fake(() => ({ endpoint: '127.0.0.3:5432' }), order, 'c');
    const router = makeRouter([
      { name: 'a', resolver: a },
      { name: 'b', resolver: b },
      { name: 'c', resolver: c },
    ]);
    const d = await router.route('shop', CTX);
    assert.deepEqual(order, ['a', 'b']);
    assert.equal(d.entry.source.name, 'b');
    assert.equal(d.entry.resourceId, 'shop');
    assert.equal(hostPort(d.candidates[0]), '127.0.0.2:5432');
    assert.deepEqual(c.calls, []);
  });

  it('passes the resource id and context to the resolver', async () => {
    let seen: [string, ResolveContext] | undefined;
    const router = makeRouter([
      {
        resolve(id: string, ctx: ResolveContext) {
          seen = [id, ctx];
          return { endpoint: '127.0.0.1:1' };
        },
      },
    ]);
    await router.route('Shop', CTX);
    assert.deepEqual(seen, ['Shop', CTX]);
  });

  it('null, undefined and NOT_FOUND all pass to the next source', async () => {
    const order: string[] = [];
    const router = makeRouter([
      { name: 'null', resolver: fake(() => null, order, 'null') },
      { name: 'undefined', resolver: fake(async () => undefined, order, 'undefined') },
      {
        name: 'notfound',
        resolver: fake(
          () => {
            throw new ResolveError('NOT_FOUND');
          },
          order,
          'notfound',
        ),
      },
      {
        name: 'async-notfound',
        resolver: fake(
          async () => {
            throw new ResolveError('NOT_FOUND', 'nope');
          },
          order,
          'async-notfound',
        ),
      },
      { name: 'plain-notfound', resolver: fake(() => Promise.reject({ code: 'NOT_FOUND' }), order, 'plain-notfound') },
      { name: 'last', resolver: fake(() => ({ endpoint: '127.0.0.9:9' }), order, 'last') },
    ]);
    const d = await router.route('x', CTX);
    assert.deepEqual(order, ['null', 'undefined', 'notfound', 'async-notfound', 'plain-notfound', 'last']);
    assert.equal(d.entry.source.name, 'last');
  });

  it('when every source throws NOT_FOUND, the last one is the answer', async () => {
    const router = makeRouter([
      fake(() => {
        throw new ResolveError('NOT_FOUND', 'first says no');
      }),
      fake(() => {
        throw new ResolveError('NOT_FOUND', 'last says no');
      }),
      always(null),
    ]);
    const err = await failsWith(router.route('x', CTX), 'NOT_FOUND');
    assert.equal(err.message, 'last says no');
    assert.equal(err.source, 'resolver');
  });

  it('when every source returns null, NOT_FOUND names the id', async () => {
    const router = makeRouter([always(null), fake(() => undefined)]);
    const err = await failsWith(router.route('missing-db', CTX), 'NOT_FOUND');
    assert.ok(err instanceof ResolveError);
    assert.match(err.message, /missing-db/);
  });

  it('with no sources at all the answer is NOT_FOUND', async () => {
    await failsWith(makeRouter([]).route('x', CTX), 'NOT_FOUND');
  });

  for (const kind of ['FORBIDDEN', 'UNAVAILABLE', 'TIMEOUT', 'INTERNAL'] as const) {
    it(`${kind} thrown by a resolver propagates and stops the chain`, async () => {
      const next = always({ endpoint: '127.0.0.1:1' });
      const router = makeRouter([
        fake(async () => {
          throw new ResolveError(kind, `${kind} from resolver`);
        }),
        next,
      ]);
      const err = await failsWith(router.route('x', CTX), kind);
      assert.equal(err.message, `${kind} from resolver`);
      assert.deepEqual(next.calls, []);
    });
  }

  it('a synchronous throw is handled like a rejection', async () => {
    const router = makeRouter([
      fake(() => {
        throw new ResolveError('UNAVAILABLE', 'sync');
      }),
    ]);
    assert.equal((await failsWith(router.route('x', CTX), 'UNAVAILABLE')).message, 'sync');
  });

  it('a plain object error { code: "FORBIDDEN" } is mapped to a ResolveError', async () => {
    const router = makeRouter([fake(() => Promise.reject({ code: 'FORBIDDEN', message: 'tenant suspended' })), always({ endpoint: '127.0.0.1:1' })]);
    const err = await failsWith(router.route('x', CTX), 'FORBIDDEN');
    assert.ok(err instanceof ResolveError);
    assert.equal(err.message, 'tenant suspended');
    assert.equal(err.source, 'resolver');
    assert.deepEqual(err.cause, { code: 'FORBIDDEN', message: 'tenant suspended' });
  });

  it('an Error with an unknown code, or a string, becomes INTERNAL', async () => {
    const boom = Object.assign(new Error('ECONNREFUSED to redis'), { code: 'ECONNREFUSED' });
    const err = await failsWith(makeRouter([fake(() => Promise.reject(boom))]).route('x', CTX), 'INTERNAL');
    assert.equal(err.message, 'ECONNREFUSED to redis');
    assert.equal(err.cause, boom);
    const err2 = await failsWith(makeRouter([fake(() => Promise.reject('just a string'))]).route('x', CTX), 'INTERNAL');
    assert.equal(err2.message, 'just a string');
  });
});

describe('Router: resolve timeout', () => {
  it('a resolver slower than resolveTimeoutMs fails with TIMEOUT naming the source', async () => {
    const slow = deferred<Route>();
    const next = always({ endpoint: '127.0.0.1:1' });
    const router = makeRouter([{ name: 'slowpoke', resolver: fake(() => slow.promise) }, next], { resolveTimeoutMs: 30 });
    const started = Date.now();
    const err = await failsWith(router.route('x', CTX), 'TIMEOUT');
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 25 && elapsed < 1000, `timed out after ${elapsed} ms`);
    assert.match(err.message, /slowpoke/);
    assert.match(err.message, /30 ms/);
    assert.deepEqual(next.calls, [], 'a TIMEOUT is not a NOT_FOUND: the chain stops');
    // The late answer is dropped, not cached.
    slow.resolve({ endpoint: '127.0.0.5:5' });
    await slow.promise;
    assert.equal(router.stats().entries, 0);
    // The next call asks again (and now gets the answer in time).
    const d = await router.route('x', CTX);
    assert.equal(d.cacheHit, false);
    assert.equal(hostPort(d.candidates[0]), '127.0.0.5:5');
  });

  it('a resolver that answers in time is not affected', async () => {
    const router = makeRouter([fake(() => new Promise<Route>((resolve) => setImmediate(() => resolve({ endpoint: '127.0.0.1:7' }))))], { resolveTimeoutMs: 1000 });
    assert.equal(hostPort((await router.route('x', CTX)).candidates[0]), '127.0.0.1:7');
  });

  it('a late rejection after the timeout does not surface as an unhandled rejection', async () => {
    const slow = deferred<Route>();
    const router = makeRouter([fake(() => slow.promise)], { resolveTimeoutMs: 10 });
    await failsWith(router.route('x', CTX), 'TIMEOUT');
    let unhandled: unknown = null;
    const onUnhandled = (reason: unknown): void => {
      unhandled = reason;
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      slow.reject(new Error('late'));
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    assert.equal(unhandled, null);
  });
});

describe('Router: cache', () => {
  it('the second call is a cache hit and the resolver is called once', async () => {
    const r = always({ endpoint: '127.0.0.1:5432' });
    const router = makeRouter([r]);
    const first = await router.route('shop', CTX);
    const second = await router.route('shop', CTX);
    assert.equal(first.cacheHit, false);
    assert.equal(second.cacheHit, true);
    assert.equal(second.entry, first.entry);
    assert.deepEqual(r.calls, ['shop']);
    assert.deepEqual(router.stats(), { entries: 1, hits: 1, misses: 1 });
  });

  it('cached() answers a hit without a promise, counts it, and is undefined on a miss', async () => {
    const r = always({ endpoint: '127.0.0.1:5432' });
    const router = makeRouter([r]);
    assert.equal(router.cached('shop', CTX), undefined);
    const first = await router.route('shop', CTX);
    const hit = router.cached('shop', CTX);
    assert.ok(hit !== undefined && !(hit instanceof Promise));
    assert.equal(hit.cacheHit, true);
    assert.equal(hit.entry, first.entry);
    assert.equal(router.cached('shop', TCP_CTX), undefined, 'per protocol');
    assert.equal(router.cached('shop', { ...CTX, firstBytes: Buffer.from('x') }), undefined, 'first-byte lookups are never cached');
    assert.deepEqual(r.calls, ['shop']);
    assert.deepEqual(router.stats(), { entries: 1, hits: 1, misses: 1 });
    router.purge('shop');
    assert.equal(router.cached('shop', CTX), undefined);
  });

  it('the cache is per protocol', async () => {
    const r = always({ endpoint: '127.0.0.1:5432' });
    const router = makeRouter([r]);
    await router.route('shop', CTX);
    const other = await router.route('shop', TCP_CTX);
    assert.equal(other.cacheHit, false);
    assert.deepEqual(r.calls, ['shop', 'shop']);
    assert.equal(router.stats().entries, 2);
  });

  it('failures are not cached', async () => {
    const r = fake((_id, call) => (call === 1 ? Promise.reject(new ResolveError('UNAVAILABLE')) : { endpoint: '127.0.0.1:1' }));
    const router = makeRouter([r]);
    await failsWith(router.route('x', CTX), 'UNAVAILABLE');
    assert.equal(router.stats().entries, 0);
    const d = await router.route('x', CTX);
    assert.equal(d.cacheHit, false);
    assert.equal(r.calls.length, 2);
  });

  it('entries expire after cacheTtlMs', async () => {
    const r = always({ endpoint: '127.0.0.1:5432' });
    const router = makeRouter([r], { cacheTtlMs: 25 });
    assert.equal((await router.route('shop', CTX)).cacheHit, false);
    await untilMiss(router, 'shop');
    assert.equal(r.calls.length, 2);
  });

  it('route.ttlMs overrides cacheTtlMs', async () => {
    const r = always({ endpoint: '127.0.0.1:5432', ttlMs: 25 });
    const router = makeRouter([r], { cacheTtlMs: 3_600_000 });
    await router.route('shop', CTX);
    assert.equal((await router.route('shop', CTX)).cacheHit, true);
    await untilMiss(router, 'shop');
    assert.equal(r.calls.length, 2);
  });

  it('route.ttlMs = 0 disables caching for that route', async () => {
    const r = always({ endpoint: '127.0.0.1:5432', ttlMs: 0 });
    const router = makeRouter([r]);
    for (let i = 0; i < 3; i++) assert.equal((await router.route('shop', CTX)).cacheHit, false);
    assert.equal(r.calls.length, 3);
    assert.equal(router.stats().entries, 0);
  });

  it('cacheTtlMs = 0 disables caching', async () => {
    const r = always({ endpoint: '127.0.0.1:5432' });
    const router = makeRouter([r], { cacheTtlMs: 0 });
    await router.route('shop', CTX);
    assert.equal((await router.route('shop', CTX)).cacheHit, false);
    assert.equal(r.calls.length, 2);
  });

  it('cacheMaxEntries bounds the cache, evicting the least recently used', async () => {
    const r = fake(() => ({ endpoint: '127.0.0.1:1' }));
    const router = makeRouter([r], { cacheMaxEntries: 2 });
    await router.route('a', CTX);
    await router.route('b', CTX);
    assert.equal((await router.route('a', CTX)).cacheHit, true); // a is now most recent
    await router.route('c', CTX); // evicts b
    assert.equal(router.stats().entries, 2);
    assert.equal((await router.route('a', CTX)).cacheHit, true);
    assert.equal((await router.route('c', CTX)).cacheHit, true);
    assert.equal((await router.route('b', CTX)).cacheHit, false);
    assert.deepEqual(r.calls, ['a', 'b', 'c', 'b']);
  });
});

describe('Router: purge', () => {
  it('purge(id) drops that id for every protocol and calls each resolver.purge', async () => {
    const a = always(null);
    const b = always({ endpoint: '127.0.0.1:1' });
    const router = makeRouter([a, b]);
    await router.route('shop', CTX);
    await router.route('shop', TCP_CTX);
    await router.route('blog', CTX);
    assert.equal(router.purge('shop'), 2);
    assert.deepEqual(a.purged, ['shop']);
    assert.deepEqual(b.purged, ['shop']);
    assert.equal(router.stats().entries, 1);
    assert.equal((await router.route('shop', CTX)).cacheHit, false);
    assert.equal((await router.route('blog', CTX)).cacheHit, true);
  });

  it('purge(id) does not drop ids that merely end with the same text', async () => {
    const router = makeRouter([always({ endpoint: '127.0.0.1:1' })]);
    await router.route('myshop', CTX);
    assert.equal(router.purge('shop'), 0);
    assert.equal((await router.route('myshop', CTX)).cacheHit, true);
  });

  it('purge(id) for an uncached id returns 0 but still tells the resolvers', async () => {
    const r = always({ endpoint: '127.0.0.1:1' });
    const router = makeRouter([r]);
    assert.equal(router.purge('never-seen'), 0);
    assert.deepEqual(r.purged, ['never-seen']);
  });

  it('a throwing resolver.purge does not stop the purge', async () => {
    const bad: Resolver = {
      resolve: () => null,
      purge() {
        throw new Error('purge hook broke');
      },
    };
    const good = always({ endpoint: '127.0.0.1:1' });
    const router = makeRouter([bad, good]);
    await router.route('shop', CTX);
    assert.equal(router.purge('shop'), 1);
    assert.deepEqual(good.purged, ['shop']);
    assert.equal(router.stats().entries, 0);
  });

  it('purge() drops everything and returns the count', async () => {
    const r = always({ endpoint: '127.0.0.1:1' });
    const router = makeRouter([r]);
    await router.route('a', CTX);
    await router.route('b', CTX);
    await router.route('a', TCP_CTX);
    assert.equal(router.purge(), 3);
    assert.equal(router.stats().entries, 0);
    assert.equal((await router.route('a', CTX)).cacheHit, false);
    assert.equal(r.calls.length, 4);
  });

  it(
    'an answer resolved before a purge is not cached after it',
    async () => {
      const first = deferred<Route>();
      const r = fake((_id, call) => (call === 1 ? first.promise : { endpoint: '127.0.0.2:2' }));
      const router = makeRouter([r]);
      const pending = router.route('shop', CTX);
      router.purge('shop'); // e.g. the tenant moved while the lookup was running
      first.resolve({ endpoint: '127.0.0.1:1' });
      await pending;
      const after = await router.route('shop', CTX);
      assert.equal(hostPort(after.candidates[0]), '127.0.0.2:2');
    },
  );
});

describe('Router: concurrent lookups', () => {
  it('50 concurrent route() calls for one id cost one resolver call', async () => {
    const gate = deferred<Route>();
    const r = fake(() => gate.promise);
    const router = makeRouter([r]);
    const all = Array.from({ length: 50 }, () => router.route('shop', CTX));
    // Let every call reach the in-flight map before answering.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(r.calls.length, 1);
    gate.resolve({ endpoint: '127.0.0.1:5432' });
    const decisions = await Promise.all(all);
    assert.equal(r.calls.length, 1);
    assert.equal(decisions.length, 50);
    const entry = decisions[0]?.entry;
    for (const d of decisions) {
      assert.equal(d.entry, entry);
      assert.equal(d.cacheHit, false);
      assert.equal(hostPort(d.candidates[0]), '127.0.0.1:5432');
    }
    assert.equal(router.stats().entries, 1);
    assert.equal((await router.route('shop', CTX)).cacheHit, true);
    assert.equal(r.calls.length, 1);
  });

  it('50 concurrent calls share one failure, and the next call tries again', async () => {
    const gate = deferred<Route>();
    const r = fake((_id, call) => (call === 1 ? gate.promise : { endpoint: '127.0.0.1:1' }));
    const router = makeRouter([r]);
    const all = Array.from({ length: 50 }, () => router.route('shop', CTX));
    gate.reject(new ResolveError('UNAVAILABLE', 'registry down'));
    const results = await Promise.allSettled(all);
    assert.equal(r.calls.length, 1);
    for (const res of results) {
      assert.equal(res.status, 'rejected');
      assert.equal(res.status === 'rejected' ? (res.reason as PolyproxyError).kind : null, 'UNAVAILABLE');
    }
    assert.equal(hostPort((await router.route('shop', CTX)).candidates[0]), '127.0.0.1:1');
    assert.equal(r.calls.length, 2);
  });

  it('different ids are resolved separately', async () => {
    const r = fake((id) => new Promise<Route>((resolve) => setImmediate(() => resolve({ endpoint: id === 'a' ? '127.0.0.1:1' : '127.0.0.2:2' }))));
    const router = makeRouter([r]);
    const [a, b] = await Promise.all([router.route('a', CTX), router.route('b', CTX)]);
    assert.deepEqual(r.calls.sort(), ['a', 'b']);
    assert.equal(hostPort(a.candidates[0]), '127.0.0.1:1');
    assert.equal(hostPort(b.candidates[0]), '127.0.0.2:2');
  });
});

describe('Router: balancing', () => {
  const LIST = ['127.0.0.1:1001', '127.0.0.2:1002', '127.0.0.3:1003'];

  it('round-robin rotates the first candidate and always returns every candidate', async () => {
    const router = makeRouter([always({ endpoint: [...LIST] })]);
    const seen: string[][] = [];
    for (let i = 0; i < 6; i++) seen.push((await router.route('pool', CTX)).candidates.map(hostPort));
    assert.deepEqual(seen, [
      [LIST[0], LIST[1], LIST[2]],
      [LIST[1], LIST[2], LIST[0]],
      [LIST[2], LIST[0], LIST[1]],
      [LIST[0], LIST[1], LIST[2]],
      [LIST[1], LIST[2], LIST[0]],
      [LIST[2], LIST[0], LIST[1]],
    ]);
  });

  it('cached() rotates like route(), sharing one round-robin', async () => {
    const router = makeRouter([always({ endpoint: [...LIST] })]);
    const firsts: string[] = [hostPort((await router.route('pool', CTX)).candidates[0])];
    for (let i = 0; i < 2; i++) firsts.push(hostPort(router.cached('pool', CTX)?.candidates[0]));
    firsts.push(hostPort((await router.route('pool', CTX)).candidates[0]));
    assert.deepEqual(firsts, [LIST[0], LIST[1], LIST[2], LIST[0]]);
  });

  it('the cached endpoint list is not reordered by picking', async () => {
    const router = makeRouter([always({ endpoint: [...LIST] })]);
    await router.route('pool', CTX);
    const d = await router.route('pool', CTX);
    assert.deepEqual(d.entry.endpoints.map(hostPort), LIST);
    assert.deepEqual(d.candidates.map(hostPort), [LIST[1], LIST[2], LIST[0]]);
  });

  it('a single endpoint is always the only candidate', async () => {
    const router = makeRouter([always({ endpoint: ['127.0.0.1:1'] })]);
    for (let i = 0; i < 3; i++) assert.deepEqual((await router.route('x', CTX)).candidates.map(hostPort), ['127.0.0.1:1']);
  });

  it('ids sharing one wildcard static route share its rotation', async () => {
    const routes = new StaticRoutes({ '*.example.com': [...LIST] });
    const router = makeRouter([{ name: 'routes', resolver: routes }]);
    const firsts: string[] = [];
    for (const id of ['a.example.com', 'b.example.com', 'c.example.com', 'a.example.com']) {
      firsts.push(hostPort((await router.route(id, CTX)).candidates[0]));
    }
    assert.deepEqual(firsts, [LIST[0], LIST[1], LIST[2], LIST[0]]);
  });

  it('different routes rotate independently', async () => {
    const routes = new StaticRoutes({ one: [...LIST], two: [...LIST] });
    const router = makeRouter([routes]);
    assert.equal(hostPort((await router.route('one', CTX)).candidates[0]), LIST[0]);
    assert.equal(hostPort((await router.route('one', CTX)).candidates[0]), LIST[1]);
    assert.equal(hostPort((await router.route('two', CTX)).candidates[0]), LIST[0]);
  });
});

describe('Router: guard phase', () => {
  it('an endpoint the SSRF guard refuses fails with FORBIDDEN and is not cached', async () => {
    const r = always({ endpoint: '10.0.0.1:5432' });
    const router = makeRouter([r]);
    const err = await failsWith(router.route('x', CTX), 'FORBIDDEN');
    assert.match(err.message, /10\.0\.0\.1/);
    assert.match(err.message, /private/);
    assert.equal(router.stats().entries, 0);
  });

  it('one forbidden endpoint in a list forbids the route', async () => {
    const router = makeRouter([always({ endpoint: ['127.0.0.1:1', '169.254.169.254:80'] })]);
    const err = await failsWith(router.route('x', CTX), 'FORBIDDEN');
    assert.match(err.message, /link-local/);
  });

  it('a replica the SSRF guard refuses forbids the route (the read/write split dials replicas)', async () => {
    const router = makeRouter([always({ endpoint: '127.0.0.1:5432', replicas: ['127.0.0.2:5432', '169.254.169.254:5432'] })]);
    const err = await failsWith(router.route('x', CTX), 'FORBIDDEN');
    assert.match(err.message, /169\.254\.169\.254/);
    assert.equal(router.stats().entries, 0);
  });

  it('a hostname replica comes back as the checked IP literal', async () => {
    const lookup: HostLookup = async () => [{ address: '127.0.0.3', family: 4 }];
    const router = makeRouter([always({ endpoint: '127.0.0.1:5432', replicas: ['replica.internal:5433'] })], { guard: loopbackGuard(lookup) });
    const d = await router.route('x', CTX);
    assert.deepEqual(d.entry.route.replicas, ['127.0.0.3:5433']);
  });

  it('FORBIDDEN from the guard does not fall through to the next source', async () => {
    const next = always({ endpoint: '127.0.0.1:1' });
    const router = makeRouter([always({ endpoint: '[::1]:5432' }), next]);
    await failsWith(router.route('x', CTX), 'FORBIDDEN');
    assert.deepEqual(next.calls, []);
  });

  it('allowPrivateBackends lets a private address through', async () => {
    const router = makeRouter([always({ endpoint: '10.0.0.1:5432' })], { guard: new SsrfGuard({ allowPrivateBackends: true, allowBackends: [] }) });
    assert.equal(hostPort((await router.route('x', CTX)).candidates[0]), '10.0.0.1:5432');
  });

  for (const bad of ['localhost', '10.0.0.1:0', '::1:5432', 'unix:relative', '']) {
    it(`a resolver returning the bad endpoint ${JSON.stringify(bad)} gives INTERNAL`, async () => {
      const router = makeRouter([{ name: 'mod', resolver: always({ endpoint: bad }) }]);
      const err = await failsWith(router.route('x', CTX), 'INTERNAL');
      assert.match(err.message, /resolver "mod" returned a/);
      assert.equal(err.source, 'internal');
    });
  }

  it('a bad endpoint inside a list gives INTERNAL', async () => {
    const router = makeRouter([always({ endpoint: ['127.0.0.1:1', 'nope'] })]);
    assert.match((await failsWith(router.route('x', CTX), 'INTERNAL')).message, /bad endpoint/);
  });

  it('an empty endpoint list, or no endpoint at all, gives INTERNAL', async () => {
    await failsWith(makeRouter([always({ endpoint: [] })]).route('x', CTX), 'INTERNAL');
    await failsWith(makeRouter([always({} as Route)]).route('x', CTX), 'INTERNAL');
    await failsWith(makeRouter([always({ endpoint: 5432 } as unknown as Route)]).route('x', CTX), 'INTERNAL');
  });

  it('a hostname endpoint comes back as the checked IP literal', async () => {
    const looked: string[] = [];
    const lookup: HostLookup = async (host) => {
      looked.push(host);
      return [{ address: '127.0.0.1', family: 4 }];
    };
    const router = makeRouter([always({ endpoint: 'localhost:5432' })], { guard: loopbackGuard(lookup) });
    const d = await router.route('x', CTX);
    const e = d.candidates[0];
    assert.deepEqual(e, { type: 'tcp', host: '127.0.0.1', port: 5432, label: 'localhost:5432' });
    assert.deepEqual(d.entry.endpoints, [e]);
    // The cached answer holds the checked IP: no second lookup.
    await router.route('x', CTX);
    assert.deepEqual(looked, ['localhost']);
  });

  it('"localhost:5432" through the system resolver is an IP literal', async () => {
    const guard = new SsrfGuard({ allowPrivateBackends: false, allowBackends: ['127.0.0.0/8', '::1'] });
    const router = makeRouter([always({ endpoint: 'localhost:5432' })], { guard });
    const e = (await router.route('x', CTX)).candidates[0];
    assert.ok(e !== undefined && e.type === 'tcp');
    assert.notEqual(isIP(e.host), 0, `${e.host} should be an IP literal`);
    assert.ok(e.host === '::1' || e.host.startsWith('127.'), e.host);
    assert.equal(e.port, 5432);
  });

  it('a hostname resolving to a forbidden address is FORBIDDEN', async () => {
    const lookup: HostLookup = async () => [
      { address: '127.0.0.1', family: 4 },
      { address: '10.1.2.3', family: 4 },
    ];
    const router = makeRouter([always({ endpoint: 'db.internal:5432' })], { guard: loopbackGuard(lookup) });
    assert.match((await failsWith(router.route('x', CTX), 'FORBIDDEN')).message, /db\.internal resolves to 10\.1\.2\.3/);
  });
});

describe('Router: health probe kind', () => {
  /** Records the probe kind of every watch; every endpoint usable. */
  function recordingHealth(kinds: ProbeKind[]): EndpointHealth {
    return { watch: (_endpoints: readonly Endpoint[], kind: ProbeKind) => kinds.push(kind), usable: (candidates: readonly Endpoint[]) => candidates } as unknown as EndpointHealth;
  }

  it("endpoints are watched with the kind listed for the routing protocol, else a connect", async () => {
    const kinds: ProbeKind[] = [];
    const router = makeRouter([always({ endpoint: ['127.0.0.1:1', '127.0.0.1:2'] })], { health: recordingHealth(kinds), probeKinds: new Map([['web', 'http']]) });
    await router.route('a', { ...CTX, protocol: 'web' });
    await router.route('a', CTX);
    assert.deepEqual(kinds, ['http', 'tcp']);
    const unlisted = makeRouter([always({ endpoint: '127.0.0.1:1' })], { health: recordingHealth(kinds) });
    await unlisted.route('a', { ...CTX, protocol: 'web' });
    assert.deepEqual(kinds, ['http', 'tcp', 'tcp']);
  });
});

/** Runs `fn` with unhandled rejections captured instead of failing the run; returns them. */
async function unhandledDuring(fn: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const onUnhandled = (reason: unknown): void => {
    seen.push(reason);
  };
  process.on('unhandledRejection', onUnhandled);
  try {
    await fn();
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
  return seen;
}

async function hookErrors(hook: string): Promise<number> {
  const metric = await resolverHookErrors.get();
  return metric.values.find((v) => v.labels.hook === hook)?.value ?? 0;
}

describe('Router: a resolver is tenant code (issue 16)', () => {
  it('a thenable that never settles fails with TIMEOUT like a promise (defect 2)', { timeout: 5000 }, async () => {
    const never = { then: (): void => {} };
    const router = makeRouter([{ name: 'hung', resolver: { resolve: () => never as unknown as Route } }], { resolveTimeoutMs: 30 });
    const err = await failsWith(router.route('x', CTX), 'TIMEOUT');
    assert.match(err.message, /hung/);
  });

  it('a thenable (Bluebird-like) that answers is awaited; one that rejects fails the lookup', async () => {
    const answers = { then: (ok: (r: Route) => void): void => void setImmediate(ok, { endpoint: '127.0.0.1:7' }) };
    assert.equal(hostPort((await makeRouter([{ resolve: () => answers as unknown as Route }]).route('x', CTX)).candidates[0]), '127.0.0.1:7');
    const rejects = { then: (_: unknown, fail: (e: unknown) => void): void => fail(new ResolveError('FORBIDDEN', 'no')) };
    await failsWith(makeRouter([{ resolve: () => rejects as unknown as Route }]).route('x', CTX), 'FORBIDDEN');
    const throwing = {
      then(): void {
        throw new Error('then threw');
      },
    };
    await failsWith(makeRouter([{ resolve: () => throwing as unknown as Route }]).route('x', CTX), 'INTERNAL');
  });

  it('a ttlMs that is a Symbol or an object whose valueOf throws fails the lookup, without an unhandled rejection (defect 1)', async () => {
    for (const ttlMs of [Symbol('ttl'), { valueOf: () => { throw new Error('valueOf'); } }]) {
      const router = makeRouter([always({ endpoint: '127.0.0.1:1', ttlMs } as unknown as Route)]);
      const unhandled = await unhandledDuring(async () => {
        const err = await failsWith(router.route('x', CTX), 'INTERNAL');
        assert.match(err.message, /ttlMs/);
      });
      assert.deepEqual(unhandled, []);
      assert.equal(router.stats().entries, 0);
    }
  });

  it("a route timeoutMs that is not a number ('abc') is refused, naming the field (defect 6)", async () => {
    const before = await hookErrors('resolve');
    const err = await failsWith(makeRouter([{ name: 'mod', resolver: always({ endpoint: '127.0.0.1:1', timeoutMs: 'abc' } as unknown as Route) }]).route('x', CTX), 'INTERNAL');
    assert.match(err.message, /resolver "mod" returned a bad route for "x": timeoutMs/);
    assert.equal(await hookErrors('resolve'), before + 1);
  });

  it('the route is read once: a cache hit uses the checked copy, and a getter is not asked again', async () => {
    let reads = 0;
    const answer = {
      get endpoint(): string {
        reads++;
        return reads === 1 ? '127.0.0.1:5' : 'not an endpoint';
      },
    };
    const router = makeRouter([{ resolve: () => answer as Route }]);
    assert.equal(hostPort((await router.route('x', CTX)).candidates[0]), '127.0.0.1:5');
    const hit = await router.route('x', CTX);
    assert.equal(hit.cacheHit, true);
    assert.equal(hostPort(hit.candidates[0]), '127.0.0.1:5');
    assert.equal(reads, 1);
  });

  it('a resolve that throws a hostile value (a proxy whose traps throw) fails with INTERNAL and is counted', async () => {
    const hostile = new Proxy(
      {},
      {
        get: () => {
          throw new Error('trap');
        },
        has: () => {
          throw new Error('trap');
        },
        getPrototypeOf: () => {
          throw new Error('trap');
        },
      },
    );
    const before = await hookErrors('resolve');
    const router = makeRouter([
      {
        resolve: () => {
          throw hostile;
        },
      },
    ]);
    await failsWith(router.route('x', CTX), 'INTERNAL');
    await failsWith(makeRouter([{ resolve: () => Promise.reject(hostile) }]).route('x', CTX), 'INTERNAL');
    assert.equal(await hookErrors('resolve'), before + 2);
  });

  it('a purge hook that throws or rejects neither stops the purge nor surfaces as an unhandled rejection (defect 1)', async () => {
    const before = await hookErrors('purge');
    const rejecting: Resolver = { resolve: () => ({ endpoint: '127.0.0.1:1' }), purge: () => Promise.reject(new Error('purge')) as unknown as void };
    const throwing: Resolver = {
      resolve: () => null,
      purge: () => {
        throw new Error('purge');
      },
    };
    const router = makeRouter([throwing, rejecting]);
    await router.route('x', CTX);
    const unhandled = await unhandledDuring(async () => {
      assert.equal(router.purge('x'), 1);
    });
    assert.deepEqual(unhandled, []);
    assert.equal(await hookErrors('purge'), before + 2);
  });
});

/**
 * ResolveContext.firstBytes (raw TCP routed by what the client sent): the
 * lookup is per connection — not cached, not shared with a concurrent
 * lookup of the same id — and the resolver sees the bytes.
 */
describe('firstBytes: per-connection lookups', () => {
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
});
