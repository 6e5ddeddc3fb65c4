/**
 * src/protocols/mongodb/protocol.ts over real sockets: identify answers the
 * admin hello itself and routes the first request for another database;
 * replay greets the backend (test/helpers/mongo-wire-server.ts) with a
 * hello — and a buildInfo until it has learnt the version — learns its
 * facts, then forwards the client's request; garbled answers become
 * BACKEND_UNREACHABLE; a refusal answers the pending request.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import { MongoProtocol } from '../../../../src/protocols/mongodb/protocol.ts';
import { OP_MSG, encodeOpMsg, parseServerReply } from '../../../../src/protocols/mongodb/wire.ts';
import type { ServerReply } from '../../../../src/protocols/mongodb/wire.ts';
import { clientPairs } from '../../../helpers/client-pair.ts';
import type { ClientPairs } from '../../../helpers/client-pair.ts';
import { startMongoWireServer } from '../../../helpers/mongo-wire-server.ts';
import type { MongoWireServer } from '../../../helpers/mongo-wire-server.ts';

let pairs: ClientPairs;
let mongod: MongoWireServer;
const sockets: net.Socket[] = [];
const servers: net.Server[] = [];

before(async () => {
  pairs = await clientPairs();
  mongod = await startMongoWireServer({ maxWireVersion: 17, version: '6.0.3' });
});
after(async () => {
  pairs.close();
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
  await mongod.close();
});

/** Reads one reply from the client side. */
async function replyOn(client: net.Socket): Promise<ServerReply> {
  let buffered = Buffer.alloc(0);
  for (;;) {
    const got = parseServerReply(buffered);
    if (got !== undefined) return got.value;
    buffered = Buffer.concat([buffered, await new Promise<Buffer>((resolve) => client.once('data', resolve))]);
  }
}

async function connect(port: number): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port });
  sockets.push(socket);
  await new Promise((resolve) => socket.once('connect', resolve));
  return socket;
}

describe('MongoProtocol', () => {
  it('answers the admin hello itself, then routes the first request for another database', async () => {
    const mongo = new MongoProtocol();
    const { client, conn } = await pairs.pair();
    const identified = mongo.identify(conn);
    const reply = replyOn(client);
    client.write(encodeOpMsg(1, 0, { hello: 1, $db: 'admin' }));
    const hello = await reply;
    assert.equal(hello.opCode, OP_MSG);
    assert.equal(hello.responseTo, 1);
    assert.equal(hello.document.isWritablePrimary, true);
    assert.equal(hello.document.maxWireVersion, 21, 'defaults until a backend was met');
    const find = encodeOpMsg(2, 0, { find: 'orders', $db: 'shop' });
    client.write(find);
    const opening = await identified;
    assert.equal(opening.resourceId, 'shop');
    assert.deepEqual(opening.replay, find);
  });

  it('replay greets the backend, learns its facts, forwards the request; buildInfo only until learnt', async () => {
    const mongo = new MongoProtocol();
    for (const round of [1, 2]) {
      const { client, conn } = await pairs.pair();
      const identified = mongo.identify(conn);
      client.write(encodeOpMsg(10, 0, { find: 'orders', filter: { round }, $db: 'shop' }));
      const opening = await identified;
      const before = mongod.commands.length;
      const backend = await connect(mongod.port);
      await mongo.replay(conn, backend, opening);
      const answer = replyOn(backend);
      assert.equal((await answer).responseTo, 10, 'the client\'s request went through, its reply comes back');
      const seen = mongod.commands.slice(before).map((c) => `${c.db}.${c.name}`);
      assert.deepEqual(seen, round === 1 ? ['admin.hello', 'admin.buildInfo', 'shop.find'] : ['admin.hello', 'shop.find']);
    }
    assert.equal(mongo.facts.maxWireVersion, 17);
    assert.equal(mongo.facts.version, '6.0.3');
  });

  it('a backend that answers the hello with garbage is BACKEND_UNREACHABLE', async () => {
    const garbage = net.createServer((socket) => {
      socket.on('error', () => {});
      socket.once('data', () => socket.write(Buffer.from('0c000000ffffffff00000000', 'hex')));
    });
    servers.push(garbage);
    await new Promise<void>((resolve) => garbage.listen(0, '127.0.0.1', resolve));
    const mongo = new MongoProtocol();
    const { client, conn } = await pairs.pair();
    const identified = mongo.identify(conn);
    client.write(encodeOpMsg(3, 0, { ping: 1, $db: 'shop' }));
    const opening = await identified;
    const backend = await connect((garbage.address() as AddressInfo).port);
    await assert.rejects(mongo.replay(conn, backend, opening), (err: PolyproxyError) => err.kind === 'BACKEND_UNREACHABLE' && err.source === 'backend');
  });

  it('a refusal is an error reply to the pending request', async () => {
    const mongo = new MongoProtocol();
    const { client, conn } = await pairs.pair();
    const identified = mongo.identify(conn);
    client.write(encodeOpMsg(77, 0, { find: 'x', $db: 'nowhere' }));
    await identified;
    const bytes = mongo.encodeError(new PolyproxyError('NOT_FOUND', 'not routed'), 'nowhere', conn);
    assert.ok(bytes !== null);
    const reply = parseServerReply(bytes)?.value;
    assert.equal(reply?.responseTo, 77);
    assert.equal(reply?.document.ok, 0);
    assert.equal(typeof reply?.document.code, 'number');
    assert.match(String(reply?.document.errmsg), /nowhere/);
  });
});
