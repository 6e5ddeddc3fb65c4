/**
 * A tiny mongod stand-in for tests: speaks the wire protocol (OP_MSG, and
 * OP_QUERY for the legacy hello), keeps documents in memory per database
 * and collection, and answers the commands the `mongodb` driver sends in
 * the tests — hello/isMaster, ping, buildInfo, insert, find (equality
 * filters, one batch, cursor id 0), getMore, delete, count, aggregate
 * ($match + $group $sum, what countDocuments sends), endSessions,
 * killCursors. Uses the driver's own BSON, independent of the proxy's codec.
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { BSON } from 'mongodb';
import type { Document } from 'mongodb';

const OP_REPLY = 1;
const OP_QUERY = 2004;
const OP_MSG = 2013;
const CHECKSUM_PRESENT = 1;

export interface ReceivedCommand {
  readonly db: string;
  readonly name: string;
  readonly op: 'msg' | 'query';
  readonly body: Document;
  readonly connection: number;
}

export interface MongoWireServer {
  readonly port: number;
  readonly name: string;
  /** db → collection → documents */
  readonly stores: Map<string, Map<string, Document[]>>;
  readonly commands: ReceivedCommand[];
  docs(db: string, collection: string): Document[];
  close(): Promise<void>;
}

export interface MongoWireServerOptions {
  readonly name?: string;
  readonly maxWireVersion?: number;
  readonly version?: string;
}

export async function startMongoWireServer(options: MongoWireServerOptions = {}): Promise<MongoWireServer> {
  const name = options.name ?? 'mongo-wire';
  const maxWireVersion = options.maxWireVersion ?? 21;
  const version = options.version ?? '7.0.12';
  const stores = new Map<string, Map<string, Document[]>>();
  const commands: ReceivedCommand[] = [];
  const sockets = new Set<net.Socket>();
  let connections = 0;
  let requestIds = 1000;

  const collection = (db: string, coll: string): Document[] => {
    let dbStore = stores.get(db);
    if (dbStore === undefined) stores.set(db, (dbStore = new Map()));
    let docs = dbStore.get(coll);
    if (docs === undefined) dbStore.set(coll, (docs = []));
    return docs;
  };

  const matches = (doc: Document, filter: Document | undefined): boolean => {
    if (filter === undefined) return true;
    return Object.entries(filter).every(([key, value]) => BSON.EJSON.stringify(doc[key] ?? null) === BSON.EJSON.stringify(value ?? null));
  };

  const run = (db: string, cmd: Document, connectionId: number): Document => {
    const cmdName = Object.keys(cmd)[0] ?? '';
    switch (cmdName) {
      case 'hello':
      case 'isMaster':
      case 'ismaster':
        return {
          ...(cmd.helloOk === true ? { helloOk: true } : {}),
          ...(cmdName === 'hello' ? { isWritablePrimary: true } : { ismaster: true }),
          maxBsonObjectSize: 16777216,
          maxMessageSizeBytes: 48000000,
          maxWriteBatchSize: 100000,
          localTime: new Date(),
          logicalSessionTimeoutMinutes: 30,
          connectionId,
          minWireVersion: 0,
          maxWireVersion,
          readOnly: false,
          ok: 1,
        };
      case 'ping':
      case 'endSessions':
      case 'killCursors':
        return { ok: 1 };
      case 'buildInfo':
      case 'buildinfo':
        return { version, versionArray: version.split('.').map(Number).concat([0]), bits: 64, ok: 1 };
      case 'insert': {
        const docs = collection(db, String(cmd.insert));
        const incoming = (cmd.documents ?? []) as Document[];
        for (const doc of incoming) docs.push(doc._id === undefined ? { _id: new BSON.ObjectId(), ...doc } : doc);
        return { n: incoming.length, ok: 1 };
      }
      case 'find': {
        const coll = String(cmd.find);
        const found = collection(db, coll).filter((doc) => matches(doc, cmd.filter as Document | undefined));
        const limited = typeof cmd.limit === 'number' && cmd.limit > 0 ? found.slice(0, cmd.limit) : found;
        return { cursor: { firstBatch: limited, id: BSON.Long.fromNumber(0), ns: `${db}.${coll}` }, ok: 1 };
      }
      case 'getMore':
        return { cursor: { nextBatch: [], id: BSON.Long.fromNumber(0), ns: `${db}.${String(cmd.collection)}` }, ok: 1 };
      case 'delete': {
        const docs = collection(db, String(cmd.delete));
        let n = 0;
        for (const spec of (cmd.deletes ?? []) as Document[]) {
          for (let i = 0; i < docs.length; i++) {
            if (matches(docs[i] as Document, spec.q as Document)) {
              docs.splice(i--, 1);
              n++;
              if (spec.limit === 1) break;
            }
          }
        }
        return { n, ok: 1 };
      }
      case 'count':
        return { n: collection(db, String(cmd.count)).filter((doc) => matches(doc, cmd.query as Document | undefined)).length, ok: 1 };
      case 'aggregate': {
        const coll = String(cmd.aggregate);
        let docs = collection(db, coll);
        const out: Document[] = [];
        for (const stage of (cmd.pipeline ?? []) as Document[]) {
          if (stage.$match !== undefined) docs = docs.filter((doc) => matches(doc, stage.$match as Document));
          else if (stage.$skip !== undefined) docs = docs.slice(Number(stage.$skip));
          else if (stage.$limit !== undefined) docs = docs.slice(0, Number(stage.$limit));
          else if (stage.$group !== undefined) {
            if (docs.length > 0) out.push({ _id: (stage.$group as Document)._id, n: docs.length });
            docs = out;
          }
        }
        return { cursor: { firstBatch: docs, id: BSON.Long.fromNumber(0), ns: `${db}.${coll}` }, ok: 1 };
      }
      default:
        return { ok: 0, errmsg: `no such command: '${cmdName}'`, code: 59, codeName: 'CommandNotFound' };
    }
  };

  const handle = (socket: net.Socket, message: Buffer, connectionId: number): void => {
    const requestID = message.readInt32LE(4);
    const opCode = message.readInt32LE(12);
    if (opCode === OP_QUERY) {
      let at = 20;
      const end = message.indexOf(0, at);
      const fullName = message.toString('utf8', at, end);
      at = end + 1 + 8;
      const query = BSON.deserialize(message.subarray(at, at + message.readInt32LE(at)));
      const cmd = (query.$query as Document | undefined) ?? query;
      const db = fullName.slice(0, fullName.indexOf('.'));
      commands.push({ db, name: Object.keys(cmd)[0] ?? '', op: 'query', body: cmd, connection: connectionId });
      const reply = BSON.serialize(run(db, cmd, connectionId));
      const out = Buffer.alloc(36 + reply.length);
      out.writeInt32LE(out.length, 0);
      out.writeInt32LE(requestIds++, 4);
      out.writeInt32LE(requestID, 8);
      out.writeInt32LE(OP_REPLY, 12);
      out.writeInt32LE(1, 32);
      Buffer.from(reply).copy(out, 36);
      socket.write(out);
      return;
    }
    if (opCode !== OP_MSG) {
      socket.destroy();
      return;
    }
    const flags = message.readUInt32LE(16);
    const end = (flags & CHECKSUM_PRESENT) !== 0 ? message.length - 4 : message.length;
    let body: Document = {};
    let at = 20;
    const sequences: Array<[string, Document[]]> = [];
    while (at < end) {
      const kind = message[at++];
      if (kind === 0) {
        const size = message.readInt32LE(at);
        body = BSON.deserialize(message.subarray(at, at + size));
        at += size;
      } else {
        const size = message.readInt32LE(at);
        const idEnd = message.indexOf(0, at + 4);
        const docs: Document[] = [];
        for (let docAt = idEnd + 1; docAt < at + size; docAt += message.readInt32LE(docAt)) docs.push(BSON.deserialize(message.subarray(docAt, docAt + message.readInt32LE(docAt))));
        sequences.push([message.toString('utf8', at + 4, idEnd), docs]);
        at += size;
      }
    }
    for (const [id, docs] of sequences) body[id] = docs;
    const db = String(body.$db);
    commands.push({ db, name: Object.keys(body)[0] ?? '', op: 'msg', body, connection: connectionId });
    const reply = BSON.serialize(run(db, body, connectionId));
    const out = Buffer.alloc(21 + reply.length);
    out.writeInt32LE(out.length, 0);
    out.writeInt32LE(requestIds++, 4);
    out.writeInt32LE(requestID, 8);
    out.writeInt32LE(OP_MSG, 12);
    out.writeUInt32LE(0, 16);
    out[20] = 0;
    Buffer.from(reply).copy(out, 21);
    socket.write(out);
  };

  const server = net.createServer((socket) => {
    const connectionId = ++connections;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 4 && buffered.length >= buffered.readInt32LE(0)) {
        const length = buffered.readInt32LE(0);
        if (length < 16) {
          socket.destroy();
          return;
        }
        const message = buffered.subarray(0, length);
        buffered = buffered.subarray(length);
        try {
          handle(socket, message, connectionId);
        } catch {
          socket.destroy();
          return;
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    name,
    stores,
    commands,
    docs: (db, coll) => stores.get(db)?.get(coll) ?? [],
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
