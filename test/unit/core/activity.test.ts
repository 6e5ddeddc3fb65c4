import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ActivityTracker } from '../../../src/core/activity.ts';
import type { Activity, Resolver } from '../../../src/core/resolver.ts';
import { ResourceTable } from '../../../src/core/resource-stats.ts';

describe('ActivityTracker', () => {
  it('calls track once per resource per tick with the bytes and sessions since the last call, and while sessions stay open', () => {
    const table = new ResourceTable(2);
    const calls: Array<[string, Activity]> = [];
    const recorder: Resolver = { resolve: () => null, track: (id, activity) => calls.push([id, activity]) };
    const silent: Resolver = { resolve: () => null };
    const tracker = new ActivityTracker(table, 10000, () => [silent, recorder]);
    const shop = table.opened('shop');
    table.closed(table.opened('shop'), 100, 200);
    table.count('blog', 5, 6);
    tracker.tick();
    assert.deepEqual(calls, [
      ['shop', { bytesIn: 100, bytesOut: 200, connections: 2 }],
      ['blog', { bytesIn: 5, bytesOut: 6, connections: 1 }],
    ]);
    calls.length = 0;
    // Nothing new: shop still has a session open (busy), blog is idle.
    tracker.tick();
    assert.deepEqual(calls, [['shop', { bytesIn: 0, bytesOut: 0, connections: 0 }]]);
    calls.length = 0;
    table.closed(shop, 7, 8);
    tracker.tick();
    assert.deepEqual(calls, [['shop', { bytesIn: 7, bytesOut: 8, connections: 0 }]]);
    calls.length = 0;
    tracker.tick();
    assert.deepEqual(calls, []);
    // "_other" (past maxResources) is never tracked: it is not a resource.
    table.count('third', 1, 1);
    tracker.tick();
    assert.deepEqual(calls, []);
    assert.equal(tracker.calls, 4);
  });

  it('a throwing track hook is contained', () => {
    const table = new ResourceTable(10);
    const tracker = new ActivityTracker(table, 10000, () => [{ resolve: () => null, track: () => { throw new Error('tenant bug'); } }]);
    table.count('shop', 1, 1);
    assert.doesNotThrow(() => tracker.tick());
  });
});
