/** The tcp protocol's identify: fixed backend, first-bytes wait, SNI requirement. */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ClientConnection } from '../../../../src/core/client-connection.ts';
import { createTcpProtocol } from '../../../../src/protocols/tcp/opening.ts';

/** A connected (server-side socket, client socket) pair on loopback. */
let server: net.Server;
let port = 0;
const accepted: net.Socket[] = [];
let onAccept: ((socket: net.Socket) => void) | null = null;

before(async () => {
  server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
    accepted.push(socket);
    onAccept?.(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  for (const s of accepted) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

async function pair(): Promise<{ conn: ClientConnection; client: net.Socket }> {
  const serverSide = new Promise<net.Socket>((resolve) => (onAccept = resolve));
  const client = net.connect({ host: '127.0.0.1', port });
  const socket = await serverSide;
  const conn = new ClientConnection(socket, { maxOpeningBytes: 64 * 1024, tls: null });
  socket.resume();
  return { conn, client };
}

describe('tcp identify', () => {
  it('with a fixed backend it reads nothing and shares one opening', async () => {
    const tcp = createTcpProtocol('kv', { backend: '127.0.0.1:6379' });
    const { conn, client } = await pair();
    const one = await tcp.identify(conn);
    const two = await tcp.identify(conn);
    assert.equal(one, two);
    assert.deepEqual(one, { resourceId: 'kv', replay: null });
    client.destroy();
  });

  it('routed: hands over the first bytes (at most firstBytesMax), the rest stays for the backend', async () => {
    const tcp = createTcpProtocol('kv', { firstBytesTimeoutMs: 1000, firstBytesMax: 4 });
    const { conn, client } = await pair();
    client.write('PING\r\nmore');
    const opening = await tcp.identify(conn);
    assert.equal(opening?.resourceId, 'kv');
    assert.equal(opening?.firstBytes?.toString(), 'PING');
    assert.equal(opening?.replay?.toString(), 'PING');
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(conn.detach().leftover?.toString(), '\r\nmore');
    client.destroy();
  });

  it('routed: a silent client gets empty first bytes after the wait, and later bytes are kept', async () => {
    const tcp = createTcpProtocol('kv', { firstBytesTimeoutMs: 50 });
    const { conn, client } = await pair();
    const started = Date.now();
    const opening = await tcp.identify(conn);
    assert.ok(Date.now() - started >= 45);
    assert.equal(opening?.firstBytes?.length, 0);
    assert.equal(opening?.replay, null);
    client.write('late');
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(conn.detach().leftover?.toString(), 'late');
    client.destroy();
  });

  it('routed with firstBytesTimeoutMs 0: no wait at all', async () => {
    const tcp = createTcpProtocol('kv', { firstBytesTimeoutMs: 0 });
    const { conn, client } = await pair();
    const opening = await tcp.identify(conn);
    assert.equal(opening?.firstBytes?.length, 0);
    client.destroy();
  });
});
