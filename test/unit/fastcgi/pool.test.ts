/**
 * src/fastcgi/pool.ts against a fake responder: the newest idle connection
 * reused, maxConnections making requests wait FIFO (and time out with
 * FCGI_ERR_QUEUE_TIMEOUT), maxIdle 0 closing after use, a failed open
 * giving its slot back, close() failing waiters.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { parseEndpoint } from '../../../src/core/endpoint.ts';
import type { FastCgiError } from '../../../src/fastcgi/errors.ts';
import { ConnectionPool } from '../../../src/fastcgi/pool.ts';
import type { PoolOptions } from '../../../src/fastcgi/pool.ts';
import { fakeServer } from '../../helpers/fastcgi-server.ts';

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
