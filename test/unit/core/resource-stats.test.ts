import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OTHER_RESOURCES, ResourceTable, mergeResources, topResources } from '../../../src/core/resource-stats.ts';

describe('ResourceTable', () => {
  it('counts sessions and bytes per resource', () => {
    const table = new ResourceTable(10);
    const a = table.opened('a');
    table.opened('b');
    assert.deepEqual(table.all().find((r) => r.resourceId === 'a'), { resourceId: 'a', open: 1, total: 1, bytesIn: 0, bytesOut: 0 });
    table.closed(a, 10, 20);
    table.count('a', 1, 2);
    assert.deepEqual(table.all().find((r) => r.resourceId === 'a'), { resourceId: 'a', open: 0, total: 2, bytesIn: 11, bytesOut: 22 });
  });

  it('bounds cardinality: ids past the limit count as _other', () => {
    const table = new ResourceTable(2);
    for (let i = 0; i < 1000; i++) table.count(`tenant-${i}`, 1, 1);
    const rows = table.all();
    assert.equal(rows.length, 3);
    assert.deepEqual(rows.find((r) => r.resourceId === OTHER_RESOURCES), { resourceId: OTHER_RESOURCES, open: 0, total: 998, bytesIn: 998, bytesOut: 998 });
    // Known ids keep their own row.
    table.count('tenant-0', 5, 5);
    assert.equal(table.all().find((r) => r.resourceId === 'tenant-0')?.bytesIn, 6);
  });

  it('top and merge', () => {
    const w1 = [{ resourceId: 'a', open: 1, total: 1, bytesIn: 1, bytesOut: 1 }];
    const w2 = [
      { resourceId: 'a', open: 2, total: 2, bytesIn: 2, bytesOut: 2 },
      { resourceId: 'b', open: 0, total: 9, bytesIn: 100, bytesOut: 0 },
    ];
    const merged = mergeResources([w1, w2]);
    assert.deepEqual(merged.find((r) => r.resourceId === 'a'), { resourceId: 'a', open: 3, total: 3, bytesIn: 3, bytesOut: 3 });
    assert.deepEqual(topResources(merged, 1).map((r) => r.resourceId), ['a']);
    assert.deepEqual(topResources(merged, 5).map((r) => r.resourceId), ['a', 'b']);
  });
});
