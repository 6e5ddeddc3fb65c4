/** Deadline: one timer over several waits, each rejected with its own error when late. */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { Deadline, within } from '../../../src/core/deadline.ts';
import { PolyproxyError } from '../../../src/core/errors.ts';

const backendLate = (): PolyproxyError => new PolyproxyError('BACKEND_UNREACHABLE', 'backend late', { source: 'backend' });
const clientLate = (): PolyproxyError => new PolyproxyError('HANDSHAKE_TIMEOUT', 'client late', { source: 'client' });

/** A promise settled by hand. */
function pending<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (err: Error) => void } {
  let resolve!: (value: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

async function rejection(promise: Promise<unknown>): Promise<PolyproxyError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof PolyproxyError, String(err));
    return err;
  }
  assert.fail('resolved');
}

describe('Deadline', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
  afterEach(() => mock.timers.reset());

  it('passes on a value or an error that comes in time', async () => {
    const deadline = new Deadline(100);
    assert.equal(await deadline.wait(Promise.resolve(7), backendLate), 7);
    const failed = await rejection(deadline.wait(Promise.reject(new PolyproxyError('PROTOCOL', 'garbled', { source: 'backend' })), backendLate));
    assert.equal(failed.kind, 'PROTOCOL');
    deadline.clear();
  });

  it('rejects the pending wait with that wait\'s error when the time is up', async () => {
    const deadline = new Deadline(100);
    const first = pending<number>();
    const waiting = deadline.wait(first.promise, clientLate);
    mock.timers.tick(99);
    first.resolve(1);
    assert.equal(await waiting, 1);
    const second = deadline.wait(pending<number>().promise, backendLate);
    mock.timers.tick(1);
    const err = await rejection(second);
    assert.equal(err.kind, 'BACKEND_UNREACHABLE');
    assert.equal(err.source, 'backend');
  });

  it('one clock for every wait: a wait after expiry fails at once, with its own error', async () => {
    const deadline = new Deadline(50);
    mock.timers.tick(50);
    const err = await rejection(deadline.wait(Promise.resolve('too late'), clientLate));
    assert.equal(err.kind, 'HANDSHAKE_TIMEOUT');
    assert.equal(err.source, 'client');
  });

  it('clear() stops the clock: a later wait is not cut off', async () => {
    const deadline = new Deadline(50);
    deadline.clear();
    const slow = pending<string>();
    const waiting = deadline.wait(slow.promise, backendLate);
    mock.timers.tick(1000);
    slow.resolve('answer');
    assert.equal(await waiting, 'answer');
  });
});

describe('within', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
  afterEach(() => mock.timers.reset());

  it('bounds one wait: its value in time, its error when late', async () => {
    assert.equal(await within(Promise.resolve('ok'), 10, backendLate), 'ok');
    const late = within(pending<string>().promise, 10, backendLate);
    mock.timers.tick(10);
    assert.equal((await rejection(late)).kind, 'BACKEND_UNREACHABLE');
  });
});
