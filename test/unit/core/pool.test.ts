/**
 * Core's EndpointPool over a fake connection kind: the per-endpoint limit
 * counts active + idle + opening; a FIFO queue (urgent waiters first) hands a reusable connection
 * given back (or a freed slot) to the first waiter, never synchronously;
 * queue bound, queue timeout (ConnectionLimitError, a 503), cancel; LIFO
 * idle reuse; idle connections evicted by their kind free their slot; one
 * lazy sweep closes connections idle past idleTimeoutMs, oldest first;
 * close() fails waiters; empty endpoints leave no state behind.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConnectionLimitError, EndpointPool, PoolClosedError, evictIdle, isIdle } from '../../../src/core/pool.ts';
import type { EndpointPoolOptions, PoolKind, PoolWaiter, WaitTicket } from '../../../src/core/pool.ts';
import type { PolyproxyError } from '../../../src/core/errors.ts';
import { errorResponse, statusOf } from '../../../src/protocols/http/errors.ts';

const L = '127.0.0.1:1';

class Conn {
  alive = true;
  closed = 0;
  parked = 0;
  /** 'taken', 'closing' per unpark; 'handover' per handOver. */
  readonly log: string[] = [];
}

const KIND: PoolKind<Conn> = {
  reusable: (c) => c.alive && c.closed === 0,
  close: (c) => {
    c.closed++;
  },
  park: (c) => {
    c.parked++;
  },
  unpark: (c, taken) => {
    c.log.push(taken ? 'taken' : 'closing');
  },
  handOver: (c) => {
    c.log.push('handover');
  },
};

function pool(max: number, extra: Partial<EndpointPoolOptions> = {}): EndpointPool<Conn> {
  return new EndpointPool(KIND, { maxIdlePerEndpoint: 8, idleTimeoutMs: 30000, maxConnectionsPerEndpoint: max, queueTimeoutMs: 30000, maxQueue: 16, ...extra });
}

/** A waiter as a promise, plus its ticket. */
function wait(p: EndpointPool<Conn>, key = L, urgent = false): { granted: Promise<Conn | null>; ticket: WaitTicket | null; sync: () => boolean } {
  let ticket: WaitTicket | null = null;
  let called = false;
  const granted = new Promise<Conn | null>((resolve, reject) => {
    const waiter: PoolWaiter<Conn> = {
      poolGranted: (conn) => {
        called = true;
        resolve(conn);
      },
      poolFailed: (err: PolyproxyError) => {
        called = true;
        reject(err);
      },
    };
    ticket = p.enqueue(key, waiter, urgent);
  });
  return { granted, ticket, sync: () => called };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('EndpointPool slots', () => {
  it('bounds slots per endpoint and frees them on release', () => {
    const p = pool(2);
    assert.equal(p.tryReserve(L), true);
    assert.equal(p.tryReserve(L), true);
    assert.equal(p.tryReserve(L), false);
    assert.equal(p.tryReserve('other:1'), true, 'the limit is per endpoint');
    p.release(L);
    assert.equal(p.tryReserve(L), true);
    p.release(L);
    p.release(L);
    p.release('other:1');
    assert.deepEqual(p.stats(), {}, 'no state left for idle endpoints');
  });

  it('0 means unlimited', () => {
    const p = pool(0);
    for (let i = 0; i < 1000; i++) assert.equal(p.tryReserve(L), true);
    assert.equal(p.openCount(L), 1000);
  });

  it('hands reusable connections and freed slots to waiters in FIFO order, never synchronously', async () => {
    const p = pool(1);
    assert.equal(p.tryReserve(L), true);
    const a = wait(p);
    const b = wait(p);
    assert.notEqual(a.ticket, null);
    assert.equal(p.stats()[L]?.queued, 2);
    const conn = new Conn();
    p.put(L, conn); // reusable: straight to the first waiter, slot and all
    assert.equal(a.sync(), false, 'granted on a later tick');
    assert.deepEqual(conn.log, ['handover'], 'held for the waiter, not parked');
    assert.equal(await a.granted, conn);
    assert.deepEqual(p.stats()[L], { open: 1, idle: 0, queued: 1 });
    p.release(L); // that connection closed: its slot goes to the next waiter
    assert.equal(b.sync(), false);
    assert.equal(await b.granted, null);
    assert.deepEqual(p.stats()[L], { open: 1, idle: 0, queued: 0 });
    p.release(L);
    assert.deepEqual(p.stats(), {});
  });

  it('an urgent waiter goes ahead of the others, behind the urgent ones queued before it', async () => {
    const p = pool(1);
    p.tryReserve(L);
    const order: string[] = [];
    const track = (name: string, w: ReturnType<typeof wait>): void => {
      void w.granted.then(() => order.push(name));
    };
    track('a', wait(p));
    track('b', wait(p));
    track('u1', wait(p, L, true));
    track('c', wait(p));
    const u2 = wait(p, L, true);
    track('u2', u2);
    p.cancel(u2.ticket as WaitTicket);
    track('u3', wait(p, L, true));
    for (let i = 0; i < 5; i++) {
      p.release(L);
      await tick();
    }
    assert.deepEqual(order, ['u1', 'u3', 'a', 'b', 'c']);
    p.release(L);
    assert.deepEqual(p.stats(), {});
  });

  it('refuses at once past maxQueue', () => {
    const p = pool(1, { maxQueue: 1 });
    p.tryReserve(L);
    const a = wait(p);
    assert.notEqual(a.ticket, null);
    const b = wait(p);
    assert.equal(b.ticket, null);
    assert.equal(p.rejected, 1);
    p.cancel(a.ticket as WaitTicket);
    p.release(L);
    assert.deepEqual(p.stats(), {});
  });

  it('fails a waiter after queueTimeoutMs with a 503 naming the connection limit', async () => {
    const p = pool(1, { queueTimeoutMs: 10 });
    p.tryReserve(L);
    const a = wait(p);
    const err = await a.granted.then(
      () => assert.fail('granted'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ConnectionLimitError);
    assert.equal(statusOf(err), 503);
    assert.match(errorResponse(err, 'app.test').toString(), /connection limit/);
    assert.equal(p.stats()[L]?.queued, 0);
    p.release(L); // nobody waiting: the slot is just free
    assert.deepEqual(p.stats(), {});
  });

  it('queueTimeoutMs 0 waits without a limit', async () => {
    const p = pool(1, { queueTimeoutMs: 0 });
    p.tryReserve(L);
    const a = wait(p);
    await sleep(20);
    assert.equal(a.sync(), false);
    p.release(L);
    assert.equal(await a.granted, null);
    p.release(L);
  });

  it('a cancelled waiter is never called and leaves the queue', async () => {
    const p = pool(1);
    p.tryReserve(L);
    const a = wait(p);
    p.cancel(a.ticket as WaitTicket);
    assert.equal(p.stats()[L]?.queued, 0);
    p.release(L);
    await tick();
    assert.equal(a.sync(), false);
    assert.deepEqual(p.stats(), {});
  });

  it('idle connections keep their slot; take() reuses the newest first (LIFO)', () => {
    const p = pool(2);
    const older = new Conn();
    const newer = new Conn();
    p.tryReserve(L);
    p.tryReserve(L);
    p.put(L, older);
    p.put(L, newer);
    assert.deepEqual(p.stats()[L], { open: 2, idle: 2, queued: 0 });
    assert.equal(p.returned, 2);
    assert.equal(isIdle(newer), true);
    assert.equal(p.tryReserve(L), false, 'idle connections take slots');
    assert.equal(p.take(L), newer);
    assert.equal(isIdle(newer), false);
    assert.deepEqual(newer.log, ['taken']);
    assert.equal(p.take(L), older);
    assert.equal(p.take(L), null);
    assert.equal(p.reused, 2);
    assert.deepEqual(p.stats()[L], { open: 2, idle: 0, queued: 0 });
    p.release(L);
    p.release(L);
    assert.deepEqual(p.stats(), {});
  });

  it('take() skips (closes) an idle connection that went bad unnoticed, freeing its slot', () => {
    const p = pool(2);
    const bad = new Conn();
    const good = new Conn();
    p.tryReserve(L);
    p.tryReserve(L);
    p.put(L, good);
    p.put(L, bad);
    bad.alive = false;
    assert.equal(p.take(L), good);
    assert.equal(bad.closed, 1);
    assert.equal(p.openCount(L), 1);
    p.release(L);
    assert.deepEqual(p.stats(), {});
  });

  it('an idle connection evicted by its kind is closed and frees its slot for the first waiter', async () => {
    const p = pool(1);
    p.tryReserve(L);
    const conn = new Conn();
    p.put(L, conn);
    const a = wait(p); // (a request may wait while another idles only in a race; the accounting must still hold)
    evictIdle(conn);
    assert.equal(conn.closed, 1);
    assert.deepEqual(conn.log, ['closing']);
    assert.equal(await a.granted, null);
    assert.deepEqual(p.stats()[L], { open: 1, idle: 0, queued: 0 });
    evictIdle(conn);
    assert.equal(conn.closed, 1, 'evicting a connection that is not idle does nothing');
    p.release(L);
    assert.deepEqual(p.stats(), {});
  });

  it('evictIdle leaves a connection a request holds alone', () => {
    const p = pool(1);
    p.tryReserve(L);
    const conn = new Conn();
    p.put(L, conn);
    assert.equal(p.take(L), conn);
    evictIdle(conn);
    assert.equal(conn.closed, 0);
    assert.equal(p.openCount(L), 1);
    p.put(L, conn);
    evictIdle(conn);
    assert.equal(conn.closed, 1);
    assert.deepEqual(p.stats(), {});
  });

  it('a full idle list (or maxIdlePerEndpoint 0) closes the connection and frees the slot', () => {
    const p = pool(2, { maxIdlePerEndpoint: 0 });
    p.tryReserve(L);
    const conn = new Conn();
    p.put(L, conn);
    assert.equal(conn.closed, 1);
    assert.equal(conn.parked, 0);
    assert.deepEqual(p.stats(), {});
  });

  it('a dead connection given back frees its slot; the waiter gets the slot, not the connection', async () => {
    const p = pool(1);
    p.tryReserve(L);
    const a = wait(p);
    const conn = new Conn();
    conn.alive = false;
    p.put(L, conn);
    assert.equal(conn.closed, 1);
    assert.equal(await a.granted, null);
    p.release(L);
    assert.deepEqual(p.stats(), {});
  });

  it('adopt counts a failover connection on its real endpoint, past the limit', () => {
    const p = pool(1);
    p.tryReserve('b:1');
    p.adopt('b:1');
    assert.equal(p.openCount('b:1'), 2);
    p.release('b:1');
    p.release('b:1');
    assert.deepEqual(p.stats(), {});
  });

  it('a connection reused many times keeps one bookkeeping entry (no allocation per request)', () => {
    const p = pool(1);
    p.tryReserve(L);
    const conn = new Conn();
    p.put(L, conn);
    const symbols = Object.getOwnPropertySymbols(conn);
    assert.equal(symbols.length, 1);
    const entry = (conn as unknown as Record<symbol, unknown>)[symbols[0] as symbol];
    for (let i = 0; i < 10; i++) {
      assert.equal(p.take(L), conn);
      p.put(L, conn);
    }
    assert.equal((conn as unknown as Record<symbol, unknown>)[symbols[0] as symbol], entry);
    p.close();
  });

  it('close() closes idle connections, fails waiters and closes what is given back later', async () => {
    const p = pool(2);
    const idle = new Conn();
    const busy = new Conn();
    p.tryReserve(L);
    p.tryReserve(L);
    p.put(L, idle);
    assert.equal(p.take(L), idle);
    p.put(L, idle);
    // busy holds the second slot; a third request waits
    const a = wait(p);
    p.close();
    assert.equal(p.closed, true);
    assert.equal(idle.closed, 1);
    await assert.rejects(a.granted, (err) => err instanceof PoolClosedError);
    p.put(L, busy);
    assert.equal(busy.closed, 1);
    assert.deepEqual(p.stats(), {});
    assert.equal(wait(p).ticket, null, 'nobody may wait on a closed pool');
  });

  it('closes connections idle for idleTimeoutMs (one lazy sweep, oldest first) and frees their slots', async () => {
    const p = pool(4, { idleTimeoutMs: 150 });
    const old = new Conn();
    p.tryReserve(L);
    p.put(L, old);
    await sleep(100);
    const fresh = new Conn();
    p.tryReserve(L);
    p.put(L, fresh);
    await sleep(90);
    assert.equal(old.closed, 1, 'idle 190 ms: closed');
    assert.equal(fresh.closed, 0, 'idle 90 ms: kept');
    assert.deepEqual(p.stats()[L], { open: 1, idle: 1, queued: 0 }, 'the closed one gave its slot back');
    await sleep(120);
    assert.equal(fresh.closed, 1);
    assert.deepEqual(p.stats(), {});
  });
});
