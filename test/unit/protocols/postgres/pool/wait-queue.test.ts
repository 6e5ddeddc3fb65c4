/** The FIFO of waiting clients: order, removal, expiry by deadline. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WaitQueue } from '../../../../../src/protocols/postgres/pool/wait-queue.ts';
import type { Waiter } from '../../../../../src/protocols/postgres/pool/wait-queue.ts';

const waiter = (since: number): Waiter => ({ waitingSince: since, queue: null });

describe('WaitQueue', () => {
  it('first in, first out; remove from the middle; expire the old ones', () => {
    const q = new WaitQueue();
    const [a, b, c, d] = [waiter(1), waiter(2), waiter(3), waiter(4)];
    for (const w of [a, b, c, d]) q.push(w);
    assert.equal(q.length, 4);
    assert.equal(a.queue, q);
    q.remove(b);
    assert.equal(b.queue, null);
    assert.equal(q.shift(), a);
    assert.equal(q.peek(), c);
    assert.deepEqual(q.expire(3), [c]);
    assert.equal(q.length, 1);
    assert.equal(q.shift(), d);
    assert.equal(q.shift(), undefined);
  });

  it('stays FIFO over many pushes and shifts (the head is compacted)', () => {
    const q = new WaitQueue();
    const all = Array.from({ length: 500 }, (_, i) => waiter(i));
    let next = 0;
    for (const w of all) {
      q.push(w);
      if (w.waitingSince % 3 === 0) assert.equal(q.shift(), all[next++]);
    }
    while (q.length > 0) assert.equal(q.shift(), all[next++]);
    assert.equal(next, 500);
  });
});
