import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../src/core/errors.ts';
import { FD_RESERVE, PROXIED_SESSION, defaultMaxConnections, fdExhaustedError, isFdExhaustion, openFilesLimit } from '../../../src/core/fd-limit.ts';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

describe('fd-limit', () => {
  it('reads the soft open-files limit from /proc/self/limits; unlimited or missing is null', () => {
    assert.equal(openFilesLimit(LIMITS), 1024);
    assert.equal(openFilesLimit(LIMITS.replace('1024     ', 'unlimited')), null);
    assert.equal(openFilesLimit('Limit Soft Hard Units\n'), null);
    // This process, on Linux.
    const own = openFilesLimit();
    if (process.platform === 'linux') assert.ok(own === null || own > 0);
  });

  it('shares what is left after the reserve between listeners, two descriptors per session', () => {
    const p = PROXIED_SESSION;
    assert.deepEqual(defaultMaxConnections(1024, [p]), [(1024 - FD_RESERVE) / 2]);
    assert.deepEqual(defaultMaxConnections(1024, [p, p, p]), new Array(3).fill(Math.floor((1024 - FD_RESERVE) / 2 / 3)));
    assert.deepEqual(defaultMaxConnections(64, [p, p]), [1, 1], 'never 0 (that would mean unlimited)');
    assert.deepEqual(defaultMaxConnections(null, [p, p]), [0, 0], 'unknown limit: no limit');
  });

  it('a listener whose sessions hold one descriptor and share a bounded pool (ws-bridge): its share less the pool, or half its share when the pool could be as large', () => {
    const small = { perSession: 1, pool: 64 };
    assert.deepEqual(defaultMaxConnections(20_000, [small]), [20_000 - FD_RESERVE - 64]);
    const half = Math.floor((20_000 - FD_RESERVE) / 2);
    assert.deepEqual(defaultMaxConnections(20_000, [small, PROXIED_SESSION]), [half - 64, Math.floor(half / 2)]);
    // The default API pool (10,000 per worker) may hold one descriptor per client: two per client, as before.
    const large = { perSession: 1, pool: 10_000 };
    assert.deepEqual(defaultMaxConnections(20_000, [large]), [half]);
    assert.deepEqual(defaultMaxConnections(20_000, [large, PROXIED_SESSION, PROXIED_SESSION]), new Array(3).fill(Math.floor((20_000 - FD_RESERVE) / 3 / 2)));
    assert.deepEqual(defaultMaxConnections(200, [{ perSession: 1, pool: 16 }]), [200 - FD_RESERVE - 16]);
  });

  it('recognises EMFILE and ENFILE, also as the cause of the UNAVAILABLE error a dial gives', () => {
    const emfile = Object.assign(new Error('connect EMFILE'), { code: 'EMFILE' });
    assert.equal(isFdExhaustion(emfile), true);
    assert.equal(isFdExhaustion(Object.assign(new Error('x'), { code: 'ENFILE' })), true);
    assert.equal(isFdExhaustion(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })), false);
    assert.equal(isFdExhaustion(null), false);
    const wrapped = fdExhaustedError(emfile);
    assert.ok(wrapped instanceof PolyproxyError);
    assert.equal(wrapped.kind, 'UNAVAILABLE');
    assert.equal(wrapped.source, 'internal');
    assert.equal(isFdExhaustion(wrapped), true);
  });
});
