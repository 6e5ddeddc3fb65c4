/**
 * Tenant isolation, MongoDB (issue 15, defence 3). Databases `iso_allowed`
 * (routed), `iso_refused` (absent: NOT_FOUND) and `iso_forbidden` (the
 * resolver module throws FORBIDDEN) live on one backend, the hand-written
 * wire server that records every command's `$db`. After a connection is
 * routed to `iso_allowed`, no request may reach the backend for another
 * database: the driver's pooled connection, raw requests one by one and
 * pipelined, a repeated `$db`, a body after a document sequence, OP_QUERY
 * and OP_COMPRESSED.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { BSON, MongoClient } from 'mongodb';
import type { Document } from 'mongodb';
import { parseConfig } from '../../../src/config/load.ts';
import { startProxy } from '../../../src/supervisor/proxy.ts';
import type { RunningProxy } from '../../../src/supervisor/proxy.ts';
import { ROOT } from '../../helpers/cli.ts';
import { startMongoWireServer } from '../../helpers/mongo-wire-server.ts';
import type { MongoWireServer } from '../../helpers/mongo-wire-server.ts';

const ALLOWED = 'iso_allowed';
const REFUSED = ['iso_refused', 'iso_forbidden'] as const;

let backend: MongoWireServer;
let proxy: RunningProxy | undefined;
let port = 0;
const clients: MongoClient[] = [];
const sockets = new Set<net.Socket>();

before(async () => {
  backend = await startMongoWireServer({ name: 'iso' });
  const config = parseConfig(
    {
      workers: 1,
      logLevel: 'silent',
      security: { allowBackends: ['127.0.0.0/8'] },
      resolver: { module: 'test/fixtures/tenant-isolation-resolver.ts' },
      routes: { [ALLOWED]: `127.0.0.1:${backend.port}` },
      listeners: [{ name: 'mongo', protocol: 'mongodb', host: '127.0.0.1', port: 0 }],
    },
    ROOT,
  );
  proxy = await startProxy(config);
  port = proxy.bound[0]?.port ?? 0;
});

after(async () => {
  for (const c of clients) await c.close(true);
  for (const s of sockets) s.destroy();
  await proxy?.drain(1000);
  await backend.close();
});

function assertBackendNeverSaw(label: string): void {
  const leaked = backend.commands.filter((c) => c.db !== ALLOWED && c.db !== 'admin');
  assert.deepEqual(leaked.map((c) => `${c.name} on ${c.db}`), [], label);
}

function bsonWith(fields: Array<[string, Buffer]>): Buffer {
  // A document built element by element, so a key may repeat (BSON.serialize cannot do that).
  const body = Buffer.concat(fields.map(([name, element]) => Buffer.concat([element.subarray(0, 1), Buffer.from(`${name}\0`), element.subarray(1)])));
  const out = Buffer.alloc(4 + body.length + 1);
  out.writeInt32LE(out.length, 0);
  body.copy(out, 4);
  return out;
}

function stringElement(value: string): Buffer {
  const bytes = Buffer.from(`${value}\0`);
  const out = Buffer.alloc(1 + 4 + bytes.length);
  out[0] = 0x02;
  out.writeInt32LE(bytes.length, 1);
  bytes.copy(out, 5);
  return out;
}

function message(requestID: number, opCode: number, payload: Buffer): Buffer {
  const out = Buffer.alloc(16 + payload.length);
  out.writeInt32LE(out.length, 0);
  out.writeInt32LE(requestID, 4);
  out.writeInt32LE(opCode, 12);
  payload.copy(out, 16);
  return out;
}

function opMsg(requestID: number, body: Document | Buffer, sequence?: { id: string; docs: Document[] }): Buffer {
  const doc = Buffer.isBuffer(body) ? body : Buffer.from(BSON.serialize(body));
  const sections: Buffer[] = [];
  if (sequence !== undefined) {
    const docs = Buffer.concat(sequence.docs.map((d) => Buffer.from(BSON.serialize(d))));
    const id = Buffer.from(`${sequence.id}\0`);
    const size = Buffer.alloc(4);
    size.writeInt32LE(4 + id.length + docs.length);
    sections.push(Buffer.from([1]), size, id, docs);
  }
  sections.push(Buffer.from([0]), doc);
  return message(requestID, 2013, Buffer.concat([Buffer.alloc(4), ...sections]));
}

interface Raw {
  write(bytes: Buffer): void;
  /** The next reply's document, or null once the proxy closed the connection. */
  next(): Promise<{ responseTo: number; doc: Document } | null>;
}

function raw(): Raw {
  const socket = net.connect(port, '127.0.0.1');
  sockets.add(socket);
  let buffered = Buffer.alloc(0);
  let closed = false;
  let wake: (() => void) | null = null;
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    wake?.();
  });
  socket.on('close', () => {
    closed = true;
    wake?.();
  });
  socket.on('error', () => {});
  return {
    write: (bytes) => socket.write(bytes),
    async next() {
      while (true) {
        if (buffered.length >= 4 && buffered.length >= buffered.readInt32LE(0)) {
          const m = buffered.subarray(0, buffered.readInt32LE(0));
          buffered = buffered.subarray(m.length);
          const docAt = m.readInt32LE(12) === 1 ? 36 : 21;
          return { responseTo: m.readInt32LE(8), doc: BSON.deserialize(m.subarray(docAt)) };
        }
        if (closed) return null;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = null;
      }
    },
  };
}

/** Opens a raw connection routed to `allowed` by a first find, answered. */
async function routed(): Promise<Raw> {
  const c = raw();
  c.write(opMsg(1, { find: 'items', filter: {}, $db: ALLOWED }));
  const first = await c.next();
  assert.equal(first?.doc.ok, 1);
  return c;
}

test('driver: a refused database is refused, and on a connection routed to allowed a later $db for it is refused', async () => {
  for (const refused of REFUSED) {
    const fresh = new MongoClient(`mongodb://127.0.0.1:${port}/?directConnection=true&maxPoolSize=1`, { serverSelectionTimeoutMS: 3000 });
    clients.push(fresh);
    await assert.rejects(fresh.db(refused).collection('x').findOne({}));
    const c = new MongoClient(`mongodb://127.0.0.1:${port}/?directConnection=true&maxPoolSize=1`, { serverSelectionTimeoutMS: 3000 });
    clients.push(c);
    await c.db(ALLOWED).collection('items').insertOne({ a: 1 });
    // The driver reports the refusal (13) or, as the proxy closes the connection, a network error.
    const refusal = (err: { code?: number; name?: string }): boolean => err.code === 13 || err.name === 'MongoNetworkError';
    await assert.rejects(c.db(refused).collection('items').insertOne({ b: 1 }), refusal);
    await assert.rejects(c.db(refused).command({ ping: 1 }), refusal);
    // The pool opens a new connection, routed again, and allowed still works.
    assert.equal((await c.db(ALLOWED).collection('items').findOne({ a: 1 }))?.a, 1);
    await c.db('admin').command({ ping: 1 });
  }
  assertBackendNeverSaw('driver');
});

test('raw: later requests naming a refused database are refused with 13 and the connection closes', async () => {
  for (const refused of REFUSED) {
    const cases: Array<[string, Buffer]> = [
      ['OP_MSG $db', opMsg(2, { find: 'items', filter: {}, $db: refused })],
      ['OP_MSG repeated $db, allowed first', opMsg(2, bsonWith([['find', stringElement('items')], ['$db', stringElement(ALLOWED)], ['$db', stringElement(refused)]]))],
      ['OP_MSG repeated $db, refused first', opMsg(2, bsonWith([['find', stringElement('items')], ['$db', stringElement(refused)], ['$db', stringElement(ALLOWED)]]))],
      ['OP_MSG without $db', opMsg(2, { find: 'items', filter: {} })],
      ['OP_MSG body after a document sequence', opMsg(2, { insert: 'items', $db: refused }, { id: 'documents', docs: [{ x: 1 }] })],
      ['OP_QUERY', message(2, 2004, Buffer.concat([Buffer.alloc(4), Buffer.from(`${refused}.$cmd\0`), Buffer.alloc(8), Buffer.from(BSON.serialize({ find: 'items' }))]))],
      ['OP_COMPRESSED', message(2, 2012, Buffer.concat([Buffer.from([0xdd, 0x07, 0, 0]), Buffer.alloc(4), Buffer.from([0]), opMsg(2, { find: 'items', $db: refused }).subarray(16)]))],
    ];
    for (const [name, bytes] of cases) {
      const c = await routed();
      c.write(bytes);
      const reply = await c.next();
      assert.equal(reply?.responseTo, 2, name);
      assert.equal(reply?.doc.code, 13, `${name}: ${JSON.stringify(reply?.doc)}`);
      assert.equal(await c.next(), null, `${name}: the connection closes`);
      assertBackendNeverSaw(`${refused}: ${name}`);
    }
  }
});

test('raw: a refused request pipelined behind the routing one, or split across writes, never reaches the backend', async () => {
  for (const refused of REFUSED) {
    const pipelined = raw();
    pipelined.write(Buffer.concat([opMsg(1, { find: 'items', filter: {}, $db: ALLOWED }), opMsg(2, { find: 'items', filter: {}, $db: refused })]));
    while ((await pipelined.next()) !== null);
    const c = await routed();
    const bytes = Buffer.concat([opMsg(3, { ping: 1, $db: 'admin' }), opMsg(4, { find: 'items', filter: {}, $db: refused })]);
    for (let i = 0; i < bytes.length; i += 7) c.write(bytes.subarray(i, i + 7));
    // The ping's reply may be lost: the refusal closes the connection, whatever is in flight.
    let reply = await c.next();
    if (reply?.responseTo === 3) reply = await c.next();
    assert.equal(reply?.doc.code, 13, JSON.stringify(reply));
    assertBackendNeverSaw(`${refused}: pipelined`);
  }
});
