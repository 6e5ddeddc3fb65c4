/**
 * The bookkeeping every listener shares (core's pipeline Listener and the
 * server-style ones): failures counted by kind into polyproxy_errors_total
 * and `failed` unless the client caused them, idle() waiters woken when the
 * last session ends, the drained hook once draining with none left.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../src/core/errors.ts';
import { ListenerBase } from '../../../src/core/listener-base.ts';
import { errorsTotal } from '../../../src/core/metrics.ts';
import { errorCounts } from '../../helpers/errors-total.ts';

class Book extends ListenerBase {
  open = 0;
  drainedCalls = 0;

  get sessions(): number {
    return this.open;
  }

  drain(): void {
    this.startDraining();
    this.settle();
  }

  end(): void {
    this.open--;
    this.settle();
  }

  protected override drained(): void {
    this.drainedCalls++;
  }
}

describe('ListenerBase', () => {
  it('countFailure: errors_total by kind with the listener and protocol labels; failed only when the client is not the cause', async () => {
    const book = new Book('book-count', 'test');
    book.countFailure(new PolyproxyError('BACKEND_UNREACHABLE', 'down'));
    book.countFailure(new PolyproxyError('BACKEND_UNREACHABLE', 'down'));
    book.countFailure(new PolyproxyError('PROTOCOL', 'garbage', { source: 'client' }));
    book.countFailure(new PolyproxyError('NOT_FOUND', 'who?'));
    assert.deepEqual(await errorCounts('book-count'), { BACKEND_UNREACHABLE: 2, PROTOCOL: 1, NOT_FOUND: 1 });
    assert.ok((await errorsTotal.get()).values.filter((v) => v.labels.listener === 'book-count').every((v) => v.labels.protocol === 'test'));
    assert.equal(book.counters.failed, 3);
    assert.equal(book.counters.refused, 0);
  });

  it('idle() resolves at once with no session, else when the last one ends', async () => {
    const book = new Book('book-idle', 'test');
    await book.idle();
    book.open = 2;
    let idle = false;
    const waiting = book.idle().then(() => (idle = true));
    book.end();
    await Promise.resolve();
    assert.equal(idle, false);
    book.end();
    await waiting;
    assert.equal(idle, true);
    assert.equal(book.drainedCalls, 0, 'not draining: nothing to release');
  });

  it('drained runs once draining and no session is left, and for an idle() after it', async () => {
    const book = new Book('book-drain', 'test');
    book.open = 1;
    book.drain();
    assert.equal(book.draining, true);
    assert.equal(book.drainedCalls, 0);
    const waiting = book.idle();
    book.end();
    await waiting;
    assert.equal(book.drainedCalls, 1);
    await book.idle();
    assert.equal(book.drainedCalls, 2);
  });
});
