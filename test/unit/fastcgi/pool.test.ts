/**
 * ConnectionPool's parts for a caller that dials itself (the gateway): a
 * kept connection, a reserved slot, a slot adopted after failover, the FIFO
 * wait and its timeout, a closed pool; and acquire() over core's Dial,
 * failing with the library's codes.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parseEndpoint } from '../../../src/core/endpoint.ts';
import { FastCgiConnection } from '../../../src/fastcgi/connection.ts';
import { FastCgiError } from '../../../src/fastcgi/errors.ts';
import { ConnectionPool } from '../../../src/fastcgi/pool.ts';
import type { PoolOptions } from '../../../src/fastcgi/pool.ts';

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
