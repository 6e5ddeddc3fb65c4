/**
 * MongoDB routing end to end: the real `polyproxy` command (built dist/) in
 * front of two wire-level test servers standing in for two tenants' mongod,
 * driven by the official `mongodb` driver and by raw sockets.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { BSON, MongoClient, MongoServerError } from 'mongodb';
import type { Document, ServerHeartbeatSucceededEvent } from 'mongodb';
import { makeTestPki } from '../helpers/certs.ts';
import type { TestPki } from '../helpers/certs.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { startMongoWireServer } from '../helpers/mongo-wire-server.ts';
import type { MongoWireServer } from '../helpers/mongo-wire-server.ts';

/** Short, so the monitoring test outlives it: idle driver connections must survive the handshake deadline. */
const HANDSHAKE_TIMEOUT_MS = 1000;

let proxy: RunningCli;
let port = 0;
let serverA: MongoWireServer;
let serverB: MongoWireServer;
let pki: TestPki;
const clients: MongoClient[] = [];
const sockets = new Set<net.Socket>();

before(async () => {
  serverA = await startMongoWireServer({ name: 'a', maxWireVersion: 17, version: '6.0.5' });
  serverB = await startMongoWireServer({ name: 'b', maxWireVersion: 17, version: '6.0.5' });
  pki = await makeTestPki({ serverNames: ['127.0.0.1', 'localhost'] });
  const file = await writeConfig({
    workers: 1,
    security: { allowBackends: ['127.0.0.0/8'] },
    routes: {
      tenant_a: `127.0.0.1:${serverA.port}`,
      tenant_b: `127.0.0.1:${serverB.port}`,
      tenant_down: '127.0.0.1:1',
    },
    listeners: [
      { name: 'mongo', protocol: 'mongodb', host: '127.0.0.1', port: 0, connectTimeoutMs: 2000, handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS },
      { name: 'mongo-tls', protocol: 'mongodb', host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey } },
    ],
  });
  proxy = await startCli(['--config', file]);
  port = proxy.port('mongo');
});

after(async () => {
  for (const client of clients) await client.close(true).catch(() => {});
  for (const socket of sockets) socket.destroy();
  await proxy?.stop();
  await serverA?.close();
  await serverB?.close();
  await pki?.cleanup();
});

function client(options: Record<string, unknown> = {}): MongoClient {
  const c = new MongoClient(`mongodb://127.0.0.1:${port}/?directConnection=true`, { serverSelectionTimeoutMS: 5000, ...options });
  clients.push(c);
  return c;
}

// --- raw sockets -------------------------------------------------------------------

interface RawReply {
  readonly opCode: number;
  readonly responseTo: number;
  readonly flags: number;
  readonly doc: Document;
}

/** A raw connection that collects complete replies. */
function raw(): { socket: net.Socket; next: () => Promise<RawReply>; closed: Promise<void> } {
  const socket = net.connect(port, '127.0.0.1');
  sockets.add(socket);
  let buffered = Buffer.alloc(0);
  const replies: RawReply[] = [];
  const waiters: Array<(reply: RawReply) => void> = [];
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 4 && buffered.length >= buffered.readInt32LE(0)) {
      const message = buffered.subarray(0, buffered.readInt32LE(0));
      buffered = buffered.subarray(message.length);
      const opCode = message.readInt32LE(12);
      const docAt = opCode === 1 ? 36 : 21;
      const reply = { opCode, responseTo: message.readInt32LE(8), flags: message.readInt32LE(16), doc: BSON.deserialize(message.subarray(docAt)) };
      const waiter = waiters.shift();
      if (waiter === undefined) replies.push(reply);
      else waiter(reply);
    }
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const next = (): Promise<RawReply> => {
    const ready = replies.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return Promise.race([
      new Promise<RawReply>((resolve) => waiters.push(resolve)),
      closed.then(() => Promise.reject(new Error('proxy closed the connection'))),
    ]);
  };
  return { socket, next, closed };
}

function opMsg(requestID: number, body: Document): Buffer {
  const doc = Buffer.from(BSON.serialize(body));
  const out = Buffer.alloc(21 + doc.length);
  out.writeInt32LE(out.length, 0);
  out.writeInt32LE(requestID, 4);
  out.writeInt32LE(2013, 12);
  doc.copy(out, 21);
  return out;
}

function opQuery(requestID: number, collection: string, query: Document): Buffer {
  const doc = Buffer.from(BSON.serialize(query));
  const name = Buffer.from(`${collection}\0`);
  const out = Buffer.alloc(16 + 4 + name.length + 8 + doc.length);
  out.writeInt32LE(out.length, 0);
  out.writeInt32LE(requestID, 4);
  out.writeInt32LE(2004, 12);
  name.copy(out, 20);
  out.writeInt32LE(-1, 20 + name.length + 4);
  doc.copy(out, 20 + name.length + 8);
  return out;
}

// --- tests -------------------------------------------------------------------------

test('the driver writes each tenant to its own backend and reads it back', async () => {
  const a = client();
  const b = client();
  await a.db('tenant_a').collection('items').insertOne({ name: 'apple', tenant: 'a' });
  await b.db('tenant_b').collection('items').insertMany([{ name: 'banana', tenant: 'b' }, { name: 'blueberry', tenant: 'b' }]);

  assert.deepStrictEqual(serverA.docs('tenant_a', 'items').map((doc) => doc.name), ['apple']);
  assert.deepStrictEqual(serverB.docs('tenant_b', 'items').map((doc) => doc.name), ['banana', 'blueberry']);
  assert.equal(serverA.stores.has('tenant_b'), false);
  assert.equal(serverB.stores.has('tenant_a'), false);

  const found = await a.db('tenant_a').collection('items').find({ tenant: 'a' }).toArray();
  assert.deepStrictEqual(found.map((doc) => doc.name), ['apple']);
  assert.equal(await b.db('tenant_b').collection('items').countDocuments({ tenant: 'b' }), 2);
  const deleted = await b.db('tenant_b').collection('items').deleteOne({ name: 'banana' });
  assert.equal(deleted.deletedCount, 1);
  assert.deepStrictEqual(serverB.docs('tenant_b', 'items').map((doc) => doc.name), ['blueberry']);

  // Each backend connection began with the proxy's own hello, carrying the driver's metadata.
  const hello = serverA.commands.find((command) => command.name === 'hello' && command.db === 'admin');
  assert.ok(hello !== undefined, 'the backend saw the proxy hello');
  assert.equal((hello.body.client as Document | undefined)?.driver?.name?.startsWith('nodejs'), true);
  assert.equal(hello.body.compression, undefined);
});

test('an unrouted database gets NamespaceNotFound (26) naming it; a dead backend NodeNotFound (74)', async () => {
  // One client each: after a refusal the proxy closes that connection (core closes every refused
  // opening), and a driver that reuses it before seeing the close gets a network error.
  await assert.rejects(client().db('tenant_nope').collection('x').insertOne({ a: 1 }), (err: unknown) => {
    assert.ok(err instanceof MongoServerError, String(err));
    assert.equal(err.code, 26);
    assert.equal(err.codeName, 'NamespaceNotFound');
    assert.match(err.message, /database "tenant_nope" is not routed by this proxy/);
    return true;
  });
  await assert.rejects(client().db('tenant_down').collection('x').findOne({}), (err: unknown) => {
    assert.ok(err instanceof MongoServerError, String(err));
    assert.equal(err.code, 74);
    assert.equal(err.codeName, 'NodeNotFound');
    assert.match(err.message, /cannot reach the server for database "tenant_down"/);
    return true;
  });
});

test('a legacy OP_QUERY hello is answered with an OP_REPLY carrying what the backends said', async () => {
  const conn = raw();
  conn.socket.write(opQuery(41, 'admin.$cmd', { isMaster: 1, helloOk: true, compression: ['zstd', 'snappy', 'zlib'], client: { driver: { name: 'raw', version: '0' } } }));
  const reply = await conn.next();
  assert.equal(reply.opCode, 1);
  assert.equal(reply.responseTo, 41);
  assert.equal(reply.doc.ismaster, true);
  assert.equal(reply.doc.helloOk, true);
  assert.equal(reply.doc.ok, 1);
  assert.equal(reply.doc.maxBsonObjectSize, 16777216);
  assert.equal('compression' in reply.doc, false, 'compression is never advertised');
  // Learned from the backends in the first test (the wire servers say 17, the default is 21).
  assert.equal(reply.doc.maxWireVersion, 17);

  conn.socket.write(opMsg(42, { buildInfo: 1, $db: 'admin' }));
  const buildInfo = await conn.next();
  assert.equal(buildInfo.responseTo, 42);
  assert.equal(buildInfo.doc.version, '6.0.5');

  conn.socket.write(opMsg(43, { listDatabases: 1, $db: 'admin' }));
  const refused = await conn.next();
  assert.equal(refused.responseTo, 43);
  assert.equal(refused.doc.ok, 0);
  assert.equal(refused.doc.code, 115);

  // The connection survives the refusal, and a tenant command then routes it.
  conn.socket.write(opMsg(44, { find: 'items', filter: {}, $db: 'tenant_a' }));
  const found = await conn.next();
  assert.equal(found.responseTo, 44);
  assert.deepStrictEqual((found.doc.cursor as Document).firstBatch.map((doc: Document) => doc.name), ['apple']);
  conn.socket.destroy();
});

test('the driver\'s monitoring stays healthy: streaming heartbeats keep succeeding past the handshake deadline', async () => {
  const c = client({ heartbeatFrequencyMS: 500 });
  const succeeded: ServerHeartbeatSucceededEvent[] = [];
  const failed: unknown[] = [];
  const enough = new Promise<void>((resolve) => {
    c.on('serverHeartbeatSucceeded', (event) => {
      succeeded.push(event);
      if (succeeded.filter((e) => e.awaited).length >= 6) resolve();
    });
  });
  c.on('serverHeartbeatFailed', (event) => failed.push(event.failure));
  await c.connect();
  const started = Date.now();
  await enough;
  const elapsed = Date.now() - started;
  assert.deepStrictEqual(failed, []);
  assert.ok(elapsed > HANDSHAKE_TIMEOUT_MS, `ran ${elapsed} ms, past the ${HANDSHAKE_TIMEOUT_MS} ms handshake deadline`);
  for (const event of succeeded) {
    assert.equal(event.reply.ok, 1);
    assert.equal(event.reply.isWritablePrimary, true);
  }
  // Pooled connections idle past the deadline still serve.
  assert.deepStrictEqual(await c.db('admin').command({ ping: 1 }), { ok: 1 });
  assert.equal((await c.db('tenant_a').collection('items').findOne({ name: 'apple' }))?.tenant, 'a');
  assert.deepStrictEqual(failed, []);
});

test('malformed bytes close that connection and nothing else', async () => {
  const garbage = raw();
  garbage.socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  await garbage.closed;

  const compressed = raw();
  const bytes = opMsg(1, { ping: 1, $db: 'admin' });
  bytes.writeInt32LE(2012, 12); // OP_COMPRESSED, never negotiated
  compressed.socket.write(bytes);
  await compressed.closed;

  const truncated = raw();
  const body = opMsg(2, { ping: 1, $db: 'admin' });
  body.writeInt32LE(body.readInt32LE(21) + 50, 21); // body document longer than the message
  truncated.socket.write(body);
  await truncated.closed;

  const c = client();
  assert.deepStrictEqual(await c.db('admin').command({ ping: 1 }), { ok: 1 });
  assert.equal(await c.db('tenant_b').collection('items').countDocuments({}), 1);
});

test('with tls, the listener terminates TLS from the first byte (MongoDB has no negotiation request)', async () => {
  const c = new MongoClient(`mongodb://127.0.0.1:${proxy.port('mongo-tls')}/?directConnection=true&tls=true`, { tlsCAFile: pki.caCert, serverSelectionTimeoutMS: 5000 });
  clients.push(c);
  await c.db('tenant_b').collection('items').insertOne({ name: 'over-tls' });
  assert.ok(serverB.docs('tenant_b', 'items').some((doc) => doc.name === 'over-tls'));
  assert.equal((await c.db('tenant_b').collection('items').findOne({ name: 'over-tls' }))?.name, 'over-tls');
});
