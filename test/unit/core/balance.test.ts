/** Core's pick phase: round-robin rotation shared through a Rotation, and a uniform shuffle. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { roundRobin, shuffled } from '../../../src/core/balance.ts';

describe('balance', () => {
  it('round-robin starts one further each time; the rest follow in order as fallbacks', () => {
    const list = ['a', 'b', 'c'];
    const rotation = { next: 0 };
    const orders = Array.from({ length: 4 }, () => roundRobin(list, rotation).join(''));
    assert.deepEqual(orders, ['abc', 'bca', 'cab', 'abc']);
    assert.equal(roundRobin(list, { next: 3 }), list, 'starting at 0: the list itself, no copy');
  });

  it('a one-element list is returned as is and does not move the rotation', () => {
    const rotation = { next: 5 };
    assert.deepEqual(roundRobin(['a'], rotation), ['a']);
    assert.equal(rotation.next, 5);
  });

  it('shuffled is a permutation, leaves its input alone, and reaches every first choice', () => {
    const list = ['a', 'b', 'c'];
    const firsts = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const out = shuffled(list);
      assert.deepEqual([...out].sort(), list);
      firsts.add(out[0] as string);
    }
    assert.deepEqual(list, ['a', 'b', 'c']);
    // P(a given first choice never drawn in 200 fair draws) = (2/3)^200.
    assert.equal(firsts.size, 3);
  });
});
