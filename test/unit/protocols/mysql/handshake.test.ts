/**
 * The proxy relays whatever plugin the backend's greeting names (here
 * caching_sha2_password with its fast-auth-success step, which MariaDB does
 * not implement) and keeps sequence ids consistent on both legs.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { ClientConnection } from '../../../../src/core/client-connection.ts';
import { createMysqlProtocol } from '../../../../src/protocols/mysql/handshake.ts';
import {
  CLIENT_CONNECT_WITH_DB,
  CLIENT_DEPRECATE_EOF,
  CLIENT_PLUGIN_AUTH,
  CLIENT_PROTOCOL_41,
  CLIENT_SECURE_CONNECTION,
  PROXY_CAPABILITIES,
  buildGreeting,
  buildHandshakeResponse,
  encodePacket,
  packetParser,
  parseGreeting,
  parseHandshakeResponse,
} from '../../../../src/protocols/mysql/packets.ts';
import type { Packet } from '../../../../src/protocols/mysql/packets.ts';

const servers: net.Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

async function listen(handler: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer(handler);
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

/** Reads packets from a socket one at a time. */
function packetReader(socket: net.Socket): () => Promise<Packet> {
  let buffered = Buffer.alloc(0);
  const parse = packetParser(1 << 20);
  const waiting: Array<() => void> = [];
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    waiting.splice(0).forEach((w) => w());
  });
  return async () => {
    while (true) {
      const done = parse(buffered);
      if (done !== undefined) {
        buffered = buffered.subarray(done.consumed);
        return done.value;
      }
      await new Promise<void>((resolve) => waiting.push(resolve));
    }
  };
}

describe('auth switch to the backend plugin', () => {
  it('relays caching_sha2_password and its fast path with sequence ids right on both legs', async () => {
    const scramble = Buffer.from('SCRAMBLE-of-backend!');
    const backendSeen: Packet[] = [];
    const backendPort = await listen((socket) => {
      const next = packetReader(socket);
      const caps = (PROXY_CAPABILITIES | CLIENT_DEPRECATE_EOF) >>> 0;
      socket.write(encodePacket(0, buildGreeting({ serverVersion: '8.4.0', connectionId: 9, capabilities: caps, charset: 255, status: 2, scramble, plugin: 'caching_sha2_password' })));
      void (async () => {
        backendSeen.push(await next());
        socket.write(encodePacket(2, Buffer.from([0x01, 0x03]))); // fast auth success
        socket.write(encodePacket(3, Buffer.from([0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]))); // OK
      })();
    });
    const protocol = createMysqlProtocol({ handshakeTimeoutMs: 5000 });
    let proxied: Promise<void> = Promise.resolve();
    const proxyPort = await listen((socket) => {
      const conn = new ClientConnection(socket, { maxOpeningBytes: 65536, tls: null });
      proxied = (async () => {
        const opening = await protocol.identify(conn);
        assert.ok(opening !== null);
        assert.equal(opening.resourceId, 'shop');
        const backend = net.connect({ host: '127.0.0.1', port: backendPort });
        await once(backend, 'connect');
        await protocol.replay?.(conn, backend, opening);
        backend.destroy();
      })();
    });

    const client = net.connect({ host: '127.0.0.1', port: proxyPort });
    const next = packetReader(client);
    const greeting = await next();
    assert.equal(greeting.seq, 0);
    assert.equal(parseGreeting(greeting.payload).plugin, 'mysql_native_password');
    const caps = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH | CLIENT_CONNECT_WITH_DB | CLIENT_DEPRECATE_EOF;
    client.write(encodePacket(1, buildHandshakeResponse({ capabilities: caps, maxPacket: 1 << 24, charset: 45, user: 'alice', authResponse: Buffer.alloc(20, 7), database: 'shop', plugin: 'mysql_native_password', rawAttributes: null })));
    const authSwitch = await next();
    assert.equal(authSwitch.seq, 2);
    assert.equal(authSwitch.payload[0], 0xfe);
    assert.deepEqual(authSwitch.payload.subarray(1), Buffer.concat([Buffer.from('caching_sha2_password\0'), scramble, Buffer.from([0])]));
    const answer = Buffer.alloc(32, 0xab); // what a client computes for the backend's scramble
    client.write(encodePacket(3, answer));
    const fast = await next();
    assert.equal(fast.seq, 4);
    assert.deepEqual(fast.payload, Buffer.from([0x01, 0x03]));
    const ok = await next();
    assert.equal(ok.seq, 5);
    assert.equal(ok.payload[0], 0x00);
    await proxied;
    client.destroy();

    const response = backendSeen[0];
    assert.ok(response !== undefined);
    assert.equal(response.seq, 1);
    const parsed = parseHandshakeResponse(response.payload);
    assert.equal(parsed.type, 'response');
    if (parsed.type !== 'response') return;
    assert.equal(parsed.user, 'alice');
    assert.equal(parsed.database, 'shop');
    assert.equal(parsed.plugin, 'caching_sha2_password');
    assert.deepEqual(parsed.authResponse, answer);
    assert.equal(parsed.charset, 45);
  });
});
