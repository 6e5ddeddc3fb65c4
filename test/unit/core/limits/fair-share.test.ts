import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ListenerShare } from '../../../../src/core/limits/fair-share.ts';

test('below the reserve every tenant fits', () => {
  const share = new ListenerShare(10);
  for (let i = 0; i < 9; i++) {
    assert.equal(share.fits('a', 10), true);
    share.add('a');
  }
});

test('in the reserve a tenant alone is over its share; a second tenant under it gets in', () => {
  const share = new ListenerShare(10);
  for (let i = 0; i < 9; i++) share.add('a');
  assert.equal(share.fits('a', 10), false);
  assert.equal(share.fits('b', 10), true);
  share.add('b');
  assert.equal(share.total, 10);
});

test('the share is maxConnections over the tenants with sessions, counting the newcomer', () => {
  const share = new ListenerShare(100);
  for (let i = 0; i < 60; i++) share.add('a');
  for (let i = 0; i < 20; i++) share.add('b');
  for (let i = 0; i < 10; i++) share.add('c');
  // 90 of 100 open, reserve 20: share = 100 / 3 = 33.
  assert.equal(share.fits('a', 20), false);
  assert.equal(share.fits('b', 20), true);
  assert.equal(share.fits('c', 20), true);
  // A fourth tenant: 100 / 4 = 25, it holds none.
  assert.equal(share.fits('d', 20), true);
});

test('remove gives the slot back; maxConnections 0 turns fair share off', () => {
  const share = new ListenerShare(10);
  for (let i = 0; i < 9; i++) share.add('a');
  share.remove('a');
  assert.equal(share.fits('a', 10), true);
  assert.equal(new ListenerShare(0).fits('a', 100), true);
});
