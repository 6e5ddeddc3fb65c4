import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { borrowBytes, lendSpare, onreadOption, readBuffer, returnLent, takeRead } from '../../../../src/core/io/shared-read-buffer.ts';

describe('io/shared-read-buffer', () => {
  it('gives every socket made with onreadOption the one read buffer', () => {
    const callback = (): boolean => true;
    const option = onreadOption(callback);
    assert.equal(option.buffer, readBuffer);
    assert.equal(option.callback, callback);
    assert.equal(onreadOption(callback).buffer, readBuffer);
  });

  it('takeRead copies the read out: the next read does not change it', () => {
    readBuffer.write('first', 0);
    const kept = takeRead(5);
    readBuffer.write('other', 0);
    assert.equal(kept.toString(), 'first');
  });

  it('borrowed bytes are views of the spare, reused by length and valid until the next borrow', () => {
    const a = borrowBytes(Buffer.from('abc'));
    assert.equal(a.toString(), 'abc');
    const b = borrowBytes(Buffer.from('xyz'));
    assert.equal(b, a, 'same length, same view: no Buffer object per chunk');
    assert.equal(a.toString(), 'xyz');
    const large = Buffer.alloc(readBuffer.length + 1, 0x61);
    const copy = borrowBytes(large);
    assert.notEqual(copy.buffer, a.buffer, 'more than the spare holds: a copy of its own');
    assert.deepEqual(copy, large);
  });

  it('a lent spare is left alone until returned, then serves again', () => {
    const before = borrowBytes(Buffer.from('queued'));
    const lent = lendSpare();
    assert.equal(lent.buffer, before.buffer, 'the queued write keeps the memory it points into');
    const next = borrowBytes(Buffer.from('later!'));
    assert.notEqual(next.buffer, lent.buffer);
    assert.equal(before.toString(), 'queued');
    returnLent(lent);
    // The next spare comes from the free list: the returned buffer.
    lendSpare();
    assert.equal(borrowBytes(Buffer.from('again!')).buffer, lent.buffer);
  });
});
