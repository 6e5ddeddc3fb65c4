import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../src/core/errors.ts';
import { FD_RESERVE, defaultMaxConnections, fdExhaustedError, isFdExhaustion, openFilesLimit } from '../../../src/core/fd-limit.ts';

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
    assert.equal(defaultMaxConnections(1024, 1), (1024 - FD_RESERVE) / 2);
    assert.equal(defaultMaxConnections(1024, 3), Math.floor((1024 - FD_RESERVE) / 2 / 3));
    assert.equal(defaultMaxConnections(64, 2), 1, 'never 0 (that would mean unlimited)');
    assert.equal(defaultMaxConnections(null, 2), 0, 'unknown limit: no limit');
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
