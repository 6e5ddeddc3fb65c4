/** src/protocols/postgres/cancel-registry.ts: the key → backend map a CancelRequest is routed by, and the broadcast to sibling workers. */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import { deliverBroadcast } from '../../../../src/core/cluster.ts';
import { parseEndpoint } from '../../../../src/core/endpoint.ts';
import { forwardCancelToSiblings, lookupCancelKey, registerCancelKey, unregisterCancelKey } from '../../../../src/protocols/postgres/cancel-registry.ts';

/** What the worker's IPC handler hands over when a sibling broadcasts a cancel. */
function deliver(payload: { key: string; packet: string }): void {
  deliverBroadcast({ type: 'polyproxy:broadcast', topic: 'postgres.cancel', payload } as Parameters<typeof deliverBroadcast>[0]);
}

describe('postgres cancel registry', () => {
  const servers: net.Server[] = [];
  after(() => {
    for (const s of servers) s.close();
  });

  it('looks a key up, and only the endpoint that registered it can remove it', () => {
    const a = parseEndpoint('127.0.0.1:5432');
    const b = parseEndpoint('127.0.0.1:5433');
    registerCancelKey('k1', a);
    assert.equal(lookupCancelKey('k1'), a);
    unregisterCancelKey('k1', b);
    assert.equal(lookupCancelKey('k1'), a, 'another endpoint does not remove it');
    registerCancelKey('k1', b);
    unregisterCancelKey('k1', a);
    assert.equal(lookupCancelKey('k1'), b, 'a stale unregister after reuse keeps the new owner');
    unregisterCancelKey('k1', b);
    assert.equal(lookupCancelKey('k1'), undefined);
  });

  it('outside a worker there are no siblings to ask', () => {
    assert.equal(process.env.POLYPROXY_WORKER, undefined);
    assert.equal(forwardCancelToSiblings('k', Buffer.from('x')), false);
  });

  it('a broadcast cancel for a key held here is sent to its backend, byte for byte', async () => {
    const got: Buffer[] = [];
    const server = net.createServer((socket) => {
      socket.on('data', (chunk: Buffer) => got.push(chunk));
      socket.on('end', () => server.emit('done'));
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const endpoint = parseEndpoint(`127.0.0.1:${(server.address() as AddressInfo).port}`);
    registerCancelKey('held', endpoint);
    const packet = Buffer.from('0000001004d2162e0000303900000001', 'hex');
    const done = once(server, 'done');
    deliver({ key: 'held', packet: packet.toString('base64') });
    await done;
    assert.deepEqual(Buffer.concat(got), packet);
    unregisterCancelKey('held', endpoint);
  });

  it('a broadcast cancel for an unknown key is ignored', async () => {
    let connections = 0;
    const server = net.createServer((socket) => {
      connections++;
      socket.resume();
      socket.on('end', () => server.emit('done'));
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const endpoint = parseEndpoint(`127.0.0.1:${(server.address() as AddressInfo).port}`);
    registerCancelKey('known', endpoint);
    const done = once(server, 'done');
    deliver({ key: 'unknown', packet: 'AA==' });
    // A known key afterwards: had the unknown one been sent anywhere, this server would count two.
    deliver({ key: 'known', packet: 'AA==' });
    await done;
    assert.equal(connections, 1);
    unregisterCancelKey('known', endpoint);
  });
});
