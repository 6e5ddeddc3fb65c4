/**
 * BackendPool slot accounting over real loopback sockets: the per-endpoint
 * limit counts active + idle + connecting; a FIFO queue hands a released
 * reusable socket (or a freed slot) to the first waiter; queue bound, queue
 * timeout (ConnectionLimitError, a 503), cancel; idle sockets closed by the
 * backend free their slot; empty endpoints leave no state behind.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { statusOf, errorResponse } from '../../../../src/protocols/http/errors.ts';
import { BackendPool, ConnectionLimitError, idleSocketEvent } from '../../../../src/protocols/http/pool.ts';
import type { Grant } from '../../../../src/protocols/http/pool.ts';

const L = '127.0.0.1:1';

let server: net.Server;
const peers: net.Socket[] = [];

before(async () => {
  server = net.createServer((socket) => {
    socket.on('error', () => {});
    peers.push(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});

after(async () => {
  for (const peer of peers) peer.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

async function connect(): Promise<net.Socket> {
  const socket = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  return socket;
}

function pool(max: number, extra: { maxQueue?: number; queueTimeoutMs?: number; maxPerBackend?: number } = {}): BackendPool {
  return new BackendPool({ maxPerBackend: extra.maxPerBackend ?? 8, idleTimeoutMs: 30000, maxConnectionsPerBackend: max, queueTimeoutMs: extra.queueTimeoutMs ?? 30000, maxQueue: extra.maxQueue ?? 16 });
}

/** A waiter as a promise, plus its handle. */
function wait(p: BackendPool, label = L): { granted: Promise<Grant>; waiter: ReturnType<BackendPool['enqueue']> } {
  let waiter: ReturnType<BackendPool['enqueue']> = null;
  const granted = new Promise<Grant>((resolve, reject) => {
    waiter = p.enqueue(label, resolve, reject);
  });
  return { granted, waiter };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('BackendPool slots', () => {
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
    assert.equal(p.stats()[L]?.open, 1000);
  });

  it('hands freed slots and reusable sockets to waiters in FIFO order', async () => {
    const p = pool(1);
    assert.equal(p.tryReserve(L), true);
    const a = wait(p);
    const b = wait(p);
    assert.notEqual(a.waiter, null);
    assert.equal(p.stats()[L]?.queued, 2);
    const socket = await connect();
    p.put(L, socket); // reusable: straight to the first waiter, slot and all
    assert.equal(await a.granted, socket);
    assert.deepEqual(p.stats()[L], { open: 1, idle: 0, queued: 1 });
    p.release(L); // that connection closed: its slot goes to the next waiter
    assert.equal(await b.granted, null);
    assert.deepEqual(p.stats()[L], { open: 1, idle: 0, queued: 0 });
    p.release(L);
    assert.deepEqual(p.stats(), {});
    socket.destroy();
  });

  it('refuses at once past maxQueue', () => {
    const p = pool(1, { maxQueue: 1 });
    p.tryReserve(L);
    const a = wait(p);
    assert.notEqual(a.waiter, null);
    const b = wait(p);
    assert.equal(b.waiter, null);
    assert.equal(p.rejected, 1);
    p.cancel(a.waiter as NonNullable<typeof a.waiter>);
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

  it('a cancelled waiter is never called and leaves the queue', async () => {
    const p = pool(1);
    p.tryReserve(L);
    let called = false;
    const waiter = p.enqueue(
      L,
      () => (called = true),
      () => (called = true),
    );
    assert.notEqual(waiter, null);
    p.cancel(waiter as NonNullable<typeof waiter>);
    assert.equal(p.stats()[L]?.queued, 0);
    p.release(L);
    await tick();
    assert.equal(called, false);
    assert.deepEqual(p.stats(), {});
  });

  it('idle sockets keep their slot; take() reuses them without a new slot', async () => {
    const p = pool(1);
    p.tryReserve(L);
    const socket = await connect();
    p.put(L, socket);
    assert.deepEqual(p.stats()[L], { open: 1, idle: 1, queued: 0 });
    assert.equal(p.tryReserve(L), false, 'an idle connection takes a slot');
    assert.equal(p.take(L), socket);
    assert.deepEqual(p.stats()[L], { open: 1, idle: 0, queued: 0 });
    socket.destroy();
    p.release(L);
    assert.deepEqual(p.stats(), {});
  });

  it('an idle socket closed by the backend frees its slot for the first waiter', async () => {
    const p = pool(1);
    p.tryReserve(L);
    const before = peers.length;
    const socket = await connect();
    while (peers.length === before) await tick();
    const peer = peers[peers.length - 1] as net.Socket;
    p.put(L, socket);
    const a = wait(p); // (a request may wait while another idles only in a race; the accounting must still hold)
    peer.end();
    assert.equal(await a.granted, null);
    assert.deepEqual(p.stats()[L], { open: 1, idle: 0, queued: 0 });
    p.release(L);
    assert.deepEqual(p.stats(), {});
  });

  it('a full idle list (or maxPerBackend 0) closes the socket and frees the slot', async () => {
    const p = pool(2, { maxPerBackend: 0 });
    p.tryReserve(L);
    const socket = await connect();
    p.put(L, socket);
    assert.equal(socket.destroyed, true);
    assert.deepEqual(p.stats(), {});
  });

  it('a dead socket given back frees its slot', async () => {
    const p = pool(1);
    p.tryReserve(L);
    const a = wait(p);
    const socket = await connect();
    socket.destroy();
    p.put(L, socket);
    assert.equal(await a.granted, null, 'the waiter gets the slot, not the dead socket');
    p.release(L);
    assert.deepEqual(p.stats(), {});
  });

  it('adopt counts a failover connection on its real endpoint, past the limit', () => {
    const p = pool(1);
    p.tryReserve('b:1');
    p.adopt('b:1');
    assert.equal(p.stats()['b:1']?.open, 2);
    p.release('b:1');
    p.release('b:1');
    assert.deepEqual(p.stats(), {});
  });

  it('a socket put with its own handlers (listening) gets none from the pool; idleSocketEvent discards it while idle only', async () => {
    const p = pool(4);
    const socket = await connect();
    const before = socket.listenerCount('data');
    p.tryReserve(L);
    p.put(L, socket, true);
    assert.equal(socket.listenerCount('data'), before, 'no idle handlers added');
    assert.equal(p.stats()[L]?.idle, 1);
    const taken = p.take(L);
    assert.equal(taken, socket);
    idleSocketEvent(socket);
    assert.equal(socket.destroyed, false, 'not idle: left alone');
    p.put(L, socket, true);
    idleSocketEvent(socket);
    assert.equal(socket.destroyed, true, 'idle: discarded');
    assert.deepEqual(p.stats(), {});
  });

  it('clear() closes idle sockets and frees their slots', async () => {
    const p = pool(4);
    const sockets = [await connect(), await connect()];
    for (const socket of sockets) {
      p.tryReserve(L);
      p.put(L, socket);
    }
    assert.equal(p.stats()[L]?.idle, 2);
    p.clear();
    assert.ok(sockets.every((s) => s.destroyed));
    assert.deepEqual(p.stats(), {});
  });

  it('closes sockets idle for idleTimeoutMs (one sweep timer, oldest first) and frees their slots', async () => {
    const p = new BackendPool({ maxPerBackend: 8, idleTimeoutMs: 150, maxConnectionsPerBackend: 4 });
    const old = await connect();
    p.tryReserve(L);
    p.put(L, old, false);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const fresh = await connect();
    p.tryReserve(L);
    p.put(L, fresh, true);
    await new Promise((resolve) => setTimeout(resolve, 90));
    assert.ok(old.destroyed, 'idle 190 ms: closed');
    assert.ok(!fresh.destroyed, 'idle 90 ms: kept');
    assert.equal(p.stats()[L]?.idle, 1);
    assert.equal(p.stats()[L]?.open, 1, 'the closed socket gave its slot back');
    await new Promise((resolve) => setTimeout(resolve, 120));
    assert.ok(fresh.destroyed);
    assert.deepEqual(p.stats(), {});
  });
});
