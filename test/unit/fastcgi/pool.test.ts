/**
 * src/fastcgi/pool.ts against a fake responder: the newest idle connection
 * reused, maxConnections making requests wait FIFO (and time out with
 * FCGI_ERR_QUEUE_TIMEOUT), maxIdle 0 closing after use, a failed open
 * giving its slot back, close() failing waiters.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parseEndpoint } from '../../../src/core/endpoint.ts';
import { ConnectionPool } from '../../../src/fastcgi/pool.ts';
import type { PoolOptions } from '../../../src/fastcgi/pool.ts';
import { fakeServer } from '../../helpers/fastcgi-server.ts';
import { FastCgiConnection } from '../../../src/fastcgi/connection.ts';
import { FastCgiError } from '../../../src/fastcgi/errors.ts';

const servers: Array<{ close: () => Promise<void> }> = [];
const pools: ConnectionPool[] = [];
after(async () => {
  for (const p of pools) p.close();
  await Promise.all(servers.map((s) => s.close()));
});

async function pool(options: Partial<PoolOptions> = {}): Promise<{ pool: ConnectionPool; connections: () => number }> {
  const server = await fakeServer(() => {});
  servers.push(server);
  const p = new ConnectionPool(parseEndpoint(server.address), { connectTimeoutMs: 1000, maxConnections: 0, maxIdle: 4, idleTimeoutMs: 60_000, queueTimeoutMs: 1000, ...options });
  pools.push(p);
  return { pool: p, connections: server.connections };
}

describe('fastcgi ConnectionPool', () => {
  it('opens a connection, takes it back idle, and hands the same one out again', async () => {
    const { pool: p, connections } = await pool();
    const conn = await p.acquire();
    assert.equal(p.activeCount, 1);
    p.release(conn);
    assert.equal(p.idleCount, 1);
    assert.equal(p.activeCount, 0);
    assert.equal(await p.acquire(), conn);
    assert.equal(connections(), 1);
  });

  it('past maxConnections a request waits for the next connection released, first come first served', async () => {
    const { pool: p } = await pool({ maxConnections: 1 });
    const held = await p.acquire();
    const order: string[] = [];
    const first = p.acquire().then((c) => (order.push('first'), c));
    const second = p.acquire().then((c) => (order.push('second'), c));
    p.release(held);
    const got = await first;
    assert.equal(got, held);
    p.release(got);
    assert.equal(await second, held);
    assert.deepEqual(order, ['first', 'second']);
  });

  it('a wait longer than queueTimeoutMs fails with FCGI_ERR_QUEUE_TIMEOUT, retryable', async () => {
    const { pool: p } = await pool({ maxConnections: 1, queueTimeoutMs: 100 });
    await p.acquire();
    await assert.rejects(p.acquire(), (err: FastCgiError) => err.code === 'FCGI_ERR_QUEUE_TIMEOUT' && err.retryable && /maxConnections 1/.test(err.message));
  });

  it('with maxIdle 0 a released connection is closed, the next request opens another', async () => {
    const { pool: p, connections } = await pool({ maxIdle: 0 });
    const conn = await p.acquire();
    p.release(conn);
    assert.equal(p.idleCount, 0);
    assert.equal(conn.socket.destroyed, true);
    await p.acquire();
    assert.equal(connections(), 2);
  });

  it('discard drops a connection and frees its slot', async () => {
    const { pool: p } = await pool({ maxConnections: 1 });
    const conn = await p.acquire();
    p.discard(conn);
    assert.equal(conn.socket.destroyed, true);
    assert.equal(p.activeCount, 0);
    assert.notEqual(await p.acquire(), conn);
  });

  it('a failed open gives its slot back', async () => {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const p = new ConnectionPool(parseEndpoint(`127.0.0.1:${port}`), { connectTimeoutMs: 1000, maxConnections: 1, maxIdle: 1, idleTimeoutMs: 1000, queueTimeoutMs: 100 });
    pools.push(p);
    for (let i = 0; i < 2; i++) await assert.rejects(p.acquire(), (err: FastCgiError) => err.code === 'FCGI_ERR_CONNECT_FAILED');
    assert.equal(p.activeCount, 0);
  });

  it('close() fails the waiters and every later acquire with FCGI_ERR_CONNECTION_CLOSED', async () => {
    const { pool: p } = await pool({ maxConnections: 1 });
    await p.acquire();
    const waiting = p.acquire();
    p.close();
    await assert.rejects(waiting, (err: FastCgiError) => err.code === 'FCGI_ERR_CONNECTION_CLOSED');
    await assert.rejects(p.acquire(), (err: FastCgiError) => err.code === 'FCGI_ERR_CONNECTION_CLOSED');
  });
});

const OPTIONS: PoolOptions = { connectTimeoutMs: 1000, maxConnections: 2, maxIdle: 2, idleTimeoutMs: 10_000, queueTimeoutMs: 2000 };

function isCode(code: string): (err: unknown) => boolean {
  return (err) => err instanceof FastCgiError && err.code === code;
}

describe('FastCGI connection pool', () => {
  let server: net.Server;
  let address = '';
  const sockets = new Set<net.Socket>();

  before(async () => {
    server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it('reserve, unreserve, takeIdle and adopt count slots against maxConnections', async () => {
    const pool = new ConnectionPool(parseEndpoint(address), OPTIONS);
    assert.equal(pool.reserve(), true);
    assert.equal(pool.reserve(), true);
    assert.equal(pool.reserve(), false, 'full');
    pool.unreserve();
    assert.equal(pool.activeCount, 1);
    // A connection opened under the remaining slot, given back: kept, and taken again.
    const conn = await FastCgiConnection.open(pool.endpoint);
    pool.release(conn);
    assert.equal(pool.idleCount, 1);
    assert.equal(pool.takeIdle(), conn);
    assert.equal(pool.takeIdle(), null);
    // Failover landed here under another pool's slot: counted even past the limit.
    pool.adopt();
    assert.equal(pool.activeCount, 2);
    assert.equal(pool.reserve(), false);
    pool.discard(conn);
    pool.unreserve();
    assert.equal(pool.activeCount, 0);
    pool.close();
  });

  it('wait() gets the next connection given back, or a slot (null), first come first served', async () => {
    const pool = new ConnectionPool(parseEndpoint(address), { ...OPTIONS, maxConnections: 1 });
    assert.equal(pool.reserve(), true);
    const conn = await FastCgiConnection.open(pool.endpoint);
    const first = pool.wait();
    const second = pool.wait();
    pool.release(conn);
    assert.equal(await first, conn);
    pool.discard(conn);
    assert.equal(await second, null);
    pool.unreserve();
    pool.close();
  });

  it('wait() fails with FCGI_ERR_QUEUE_TIMEOUT after queueTimeoutMs, and a closed pool refuses everything', async () => {
    const pool = new ConnectionPool(parseEndpoint(address), { ...OPTIONS, maxConnections: 1, queueTimeoutMs: 20 });
    assert.equal(pool.reserve(), true);
    await assert.rejects(pool.wait(), isCode('FCGI_ERR_QUEUE_TIMEOUT'));
    const waiting = pool.wait();
    pool.close();
    await assert.rejects(waiting, isCode('FCGI_ERR_CONNECTION_CLOSED'));
    assert.equal(pool.reserve(), false);
    assert.equal(pool.takeIdle(), null);
    await assert.rejects(pool.wait(), isCode('FCGI_ERR_CONNECTION_CLOSED'));
    await assert.rejects(pool.acquire(), isCode('FCGI_ERR_CONNECTION_CLOSED'));
  });

  it('acquire() dials through core and gives the slot back when the connect is refused', async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const pool = new ConnectionPool(parseEndpoint(`127.0.0.1:${port}`), { ...OPTIONS, maxConnections: 1 });
    await assert.rejects(pool.acquire(), (err: unknown) => {
      assert.ok(isCode('FCGI_ERR_CONNECT_FAILED')(err));
      assert.equal((err as FastCgiError).retryable, true);
      assert.match((err as Error).message, new RegExp(`^connect to 127\\.0\\.0\\.1:${port} failed: .*ECONNREFUSED`));
      return true;
    });
    assert.equal(pool.activeCount, 0);
    assert.equal(pool.reserve(), true, 'the slot was given back');
    pool.close();
  });
});
