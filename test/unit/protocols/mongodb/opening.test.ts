/**
 * MongoOpening over a real socket pair: handshakes answered in order,
 * awaitable hello held for maxAwaitTimeMS and streamed with moreToCome under
 * exhaustAllowed, the listener's handshake deadline survived once the client
 * has been answered, and the routed request handed over with what followed it.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { BSON } from 'mongodb';
import type { Document } from 'mongodb';
import { ClientConnection } from '../../../../src/core/client-connection.ts';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import { ObjectId } from '../../../../src/protocols/mongodb/bson.ts';
import { ServerFacts } from '../../../../src/protocols/mongodb/handshake.ts';
import { MongoOpening } from '../../../../src/protocols/mongodb/opening.ts';
import type { RoutedRequest } from '../../../../src/protocols/mongodb/opening.ts';
import { MAX_OPENING_BUFFER, MSG_EXHAUST_ALLOWED, MSG_MORE_TO_COME } from '../../../../src/protocols/mongodb/wire.ts';

const TOPOLOGY = { processId: new ObjectId(Buffer.alloc(12, 7)), counter: 0n };
const sockets = new Set<net.Socket>();
after(() => {
  for (const socket of sockets) socket.destroy();
});

interface Harness {
  readonly client: net.Socket;
  readonly conn: ClientConnection;
  readonly result: Promise<RoutedRequest>;
  next(): Promise<{ responseTo: number; flags: number; doc: Document }>;
}

async function harness(): Promise<Harness> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
  const socket = await accepted;
  server.close();
  sockets.add(client);
  sockets.add(socket);
  const conn = new ClientConnection(socket, { maxOpeningBytes: MAX_OPENING_BUFFER, tls: null });
  const result = new MongoOpening(conn, new ServerFacts(), TOPOLOGY).run();
  result.catch(() => {});
  let buffered = Buffer.alloc(0);
  const queue: Array<{ responseTo: number; flags: number; doc: Document }> = [];
  const waiters: Array<(reply: { responseTo: number; flags: number; doc: Document }) => void> = [];
  client.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 4 && buffered.length >= buffered.readInt32LE(0)) {
      const message = buffered.subarray(0, buffered.readInt32LE(0));
      buffered = buffered.subarray(message.length);
      const reply = { responseTo: message.readInt32LE(8), flags: message.readUInt32LE(16), doc: BSON.deserialize(message.subarray(21), { useBigInt64: true }) };
      const waiter = waiters.shift();
      if (waiter === undefined) queue.push(reply);
      else waiter(reply);
    }
  });
  return {
    client,
    conn,
    result,
    next: () => {
      const ready = queue.shift();
      return ready !== undefined ? Promise.resolve(ready) : new Promise((resolve) => waiters.push(resolve));
    },
  };
}

function opMsg(requestID: number, body: Document, flags = 0): Buffer {
  const doc = Buffer.from(BSON.serialize(body));
  const out = Buffer.alloc(21 + doc.length);
  out.writeInt32LE(out.length, 0);
  out.writeInt32LE(requestID, 4);
  out.writeInt32LE(2013, 12);
  out.writeUInt32LE(flags, 16);
  doc.copy(out, 21);
  return out;
}

const awaitable = (maxAwaitTimeMS: number): Document => ({
  hello: 1,
  topologyVersion: { processId: new BSON.ObjectId(TOPOLOGY.processId.bytes), counter: 0n },
  maxAwaitTimeMS,
  $db: 'admin',
});

describe('MongoOpening', () => {
  it('answers hello without compression, ping and buildInfo, in order, pipelined', async () => {
    const h = await harness();
    h.client.write(Buffer.concat([opMsg(1, { hello: 1, compression: ['zstd'], client: { driver: { name: 't', version: '1' } }, $db: 'admin' }), opMsg(2, { ping: 1, $db: 'admin' }), opMsg(3, { buildInfo: 1, $db: 'admin' })]));
    const hello = await h.next();
    assert.equal(hello.responseTo, 1);
    assert.equal(hello.doc.isWritablePrimary, true);
    assert.equal(hello.doc.maxWireVersion, 21);
    assert.equal(hello.doc.topologyVersion.counter, 0n);
    assert.equal('compression' in hello.doc, false);
    assert.deepStrictEqual(await h.next(), { responseTo: 2, flags: 0, doc: { ok: 1 } });
    assert.equal((await h.next()).doc.version, '7.0.0');
    h.client.destroy();
  });

  it('holds an awaitable hello for maxAwaitTimeMS and streams replies under exhaustAllowed', async () => {
    const h = await harness();
    h.client.write(opMsg(10, { hello: 1, $db: 'admin' }));
    await h.next();
    const sent = Date.now();
    h.client.write(opMsg(11, awaitable(150), MSG_EXHAUST_ALLOWED));
    const first = await h.next();
    assert.ok(Date.now() - sent >= 140, 'held for maxAwaitTimeMS');
    assert.equal(first.responseTo, 11);
    assert.equal(first.flags & MSG_MORE_TO_COME, MSG_MORE_TO_COME);
    const second = await h.next();
    assert.equal(second.flags & MSG_MORE_TO_COME, MSG_MORE_TO_COME);
    assert.notEqual(second.responseTo, 11, 'a streamed reply answers the previous reply');
    h.client.destroy();
    await assert.rejects(h.result, (err) => err instanceof PolyproxyError && err.kind === 'PROTOCOL');
  });

  it('answers a stale topologyVersion at once, and a held plain hello when the client speaks again', async () => {
    const h = await harness();
    const stale = { ...awaitable(60_000), topologyVersion: { processId: new BSON.ObjectId(), counter: 0n } };
    h.client.write(opMsg(20, stale));
    assert.equal((await h.next()).responseTo, 20);
    h.client.write(opMsg(21, awaitable(60_000)));
    h.client.write(opMsg(22, { ping: 1, $db: 'admin' }));
    assert.equal((await h.next()).responseTo, 21);
    assert.equal((await h.next()).responseTo, 22);
    h.client.destroy();
  });

  it('carries on past the handshake deadline once answered, and hands over the routed request with what followed', async () => {
    const h = await harness();
    h.client.write(opMsg(30, { hello: 1, client: { application: { name: 'app' } }, $db: 'admin' }));
    await h.next();
    h.conn.abort(new PolyproxyError('HANDSHAKE_TIMEOUT', 'deadline', { source: 'client' }));
    h.client.write(opMsg(31, { ping: 1, $db: 'admin' }));
    assert.equal((await h.next()).responseTo, 31);
    const routed = opMsg(32, { find: 'c', $db: 'tenant_a' });
    const after = opMsg(33, { find: 'd', $db: 'tenant_a' });
    h.client.write(Buffer.concat([routed, after]));
    const result = await h.result;
    assert.equal(result.database, 'tenant_a');
    assert.deepStrictEqual(result.message.raw, routed);
    assert.deepStrictEqual(result.pending, { requestID: 32, op: 'msg', moreToCome: false });
    assert.deepStrictEqual(result.clientMetadata, { application: { name: 'app' } });
    assert.deepStrictEqual(result.leftover, after);
    h.client.destroy();
  });

  it('fails on the handshake deadline when nothing was answered yet', async () => {
    const h = await harness();
    h.conn.abort(new PolyproxyError('HANDSHAKE_TIMEOUT', 'deadline', { source: 'client' }));
    await assert.rejects(h.result, (err) => err instanceof PolyproxyError && err.kind === 'HANDSHAKE_TIMEOUT');
    h.client.destroy();
  });

  it('answers bad databases and unsupported admin commands with error documents and keeps reading', async () => {
    const h = await harness();
    h.client.write(Buffer.concat([opMsg(40, { ping: 1 }), opMsg(41, { ping: 1, $db: 'a.b' }), opMsg(42, { saslStart: 1, $db: 'admin' })]));
    const missing = await h.next();
    assert.deepStrictEqual([missing.responseTo, missing.doc.ok, missing.doc.code], [40, 0, 73]);
    assert.equal((await h.next()).doc.code, 73);
    const sasl = await h.next();
    assert.equal(sasl.doc.code, 115);
    assert.match(sasl.doc.errmsg, /authSource/);
    h.client.write(opMsg(43, { ping: 1, $db: 'admin' }));
    assert.equal((await h.next()).doc.ok, 1);
    h.client.destroy();
  });
});
