/**
 * The http listener's flavour of core's pool (slot accounting itself is
 * tested in test/unit/core/pool.test.ts) over real loopback sockets: an idle
 * socket the backend closes frees its slot for the first waiter; a socket
 * with the session's own handlers gets none from the pool and is discarded
 * by idleSocketEvent only while idle; the listener's option names map onto
 * the core pool's.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { BackendPool, idleSocketEvent, kOwnHandlers } from '../../../../src/protocols/http/pool.ts';

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

function pool(max: number): BackendPool {
  return new BackendPool({ maxPerBackend: 8, idleTimeoutMs: 30000, maxConnectionsPerBackend: max, queueTimeoutMs: 30000, maxQueue: 16 });
}

describe('http BackendPool (sockets)', () => {
  it('maps the listener options onto the core pool', () => {
    const p = new BackendPool({ maxPerBackend: 3, idleTimeoutMs: 100 });
    assert.equal(p.maxPerBackend, 3);
    assert.equal(p.maxIdlePerEndpoint, 3);
    assert.equal(p.maxConnectionsPerEndpoint, 256);
    assert.equal(p.queueTimeoutMs, 5000);
    assert.equal(p.maxQueue, 1024);
  });

  it('an idle socket closed by the backend frees its slot for the first waiter', async () => {
    const p = pool(1);
    p.tryReserve(L);
    const before = peers.length;
    const socket = await connect();
    while (peers.length === before) await new Promise((resolve) => setImmediate(resolve));
    const peer = peers[peers.length - 1] as net.Socket;
    const ends = socket.listenerCount('end');
    p.put(L, socket);
    assert.equal(socket.listenerCount('end'), ends + 1, 'the pool watches an idle socket without handlers of its own');
    const granted = new Promise<net.Socket | null>((resolve, reject) => p.enqueue(L, { poolGranted: resolve, poolFailed: reject }));
    peer.end();
    assert.equal(await granted, null);
    assert.equal(socket.destroyed, true);
    assert.deepEqual(p.stats()[L], { open: 1, idle: 0, queued: 0 });
    p.release(L);
    assert.deepEqual(p.stats(), {});
  });

  it('a taken socket loses the pool handlers and is paused', async () => {
    const p = pool(1);
    p.tryReserve(L);
    const socket = await connect();
    const listeners = socket.listenerCount('data');
    p.put(L, socket);
    assert.equal(p.take(L), socket);
    assert.equal(socket.listenerCount('data'), listeners);
    assert.equal(socket.isPaused(), true);
    socket.destroy();
    p.release(L);
  });

  it('a socket with its own handlers gets none from the pool; idleSocketEvent discards it while idle only', async () => {
    const p = pool(4);
    const socket = (await connect()) as net.Socket & { [kOwnHandlers]?: boolean };
    socket[kOwnHandlers] = true;
    const before = socket.listenerCount('data');
    p.tryReserve(L);
    p.put(L, socket);
    assert.equal(socket.listenerCount('data'), before, 'no idle handlers added');
    assert.equal(p.stats()[L]?.idle, 1);
    assert.equal(p.take(L), socket);
    assert.equal(socket.readableFlowing, true, 'taken for a request: keeps reading');
    idleSocketEvent(socket);
    assert.equal(socket.destroyed, false, 'not idle: left alone');
    p.put(L, socket);
    idleSocketEvent(socket);
    assert.equal(socket.destroyed, true, 'idle: discarded');
    assert.deepEqual(p.stats(), {});
  });

  it('close() closes idle sockets and frees their slots', async () => {
    const p = pool(4);
    const sockets = [await connect(), await connect()];
    for (const socket of sockets) {
      p.tryReserve(L);
      p.put(L, socket);
    }
    assert.equal(p.stats()[L]?.idle, 2);
    p.close();
    assert.ok(sockets.every((s) => s.destroyed));
    assert.deepEqual(p.stats(), {});
  });
});
