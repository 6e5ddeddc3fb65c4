import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ExpectQueue } from '../../../../../src/protocols/postgres/pool/expect-queue.ts';
import type { Statement } from '../../../../../src/protocols/postgres/pool/prepared-statements.ts';

const statement = (n: number): Statement => ({ serverName: `pp_${n}`, parseBody: Buffer.alloc(0), refs: 1, key: String(n) });

describe('ExpectQueue', () => {
  it('first in, first out across wrap-around and growth', () => {
    const q = new ExpectQueue(2);
    let next = 0;
    let expected = 0;
    for (let round = 0; round < 50; round++) {
      const pushes = (round % 5) + 1;
      for (let i = 0; i < pushes; i++, next++) q.push(next, next % 2 === 0, next % 3 === 0 ? statement(next) : null);
      const shifts = round % 3 === 0 ? pushes + 1 : pushes - 1;
      for (let i = 0; i < shifts && q.length > 0; i++, expected++) {
        assert.equal(q.epoch, expected);
        assert.equal(q.flag, expected % 2 === 0);
        const s = q.shift();
        assert.equal(s?.serverName ?? null, expected % 3 === 0 ? `pp_${expected}` : null);
      }
    }
    assert.equal(q.length, next - expected);
  });

  it('clear empties it; an empty queue shifts null and flags false', () => {
    const q = new ExpectQueue();
    q.push(1, true, statement(1));
    q.push(2, true, null);
    q.clear();
    assert.equal(q.length, 0);
    assert.equal(q.flag, false);
    assert.equal(q.shift(), null);
    q.push(3, false, null);
    assert.equal(q.epoch, 3);
  });
});
