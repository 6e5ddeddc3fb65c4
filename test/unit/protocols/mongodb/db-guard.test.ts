/**
 * db-guard.ts: which `$db` an OP_MSG names (top-level keys walked without
 * decoding), and the filter between a client and a backend: what passes,
 * what is refused, fed whole, byte by byte and split at every offset.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BSON } from 'mongodb';
import type { Relay } from '../../../../src/core/relay.ts';
import { DbGuard, opMsgDatabase } from '../../../../src/protocols/mongodb/db-guard.ts';

function opMsg(requestID: number, body: Buffer): Buffer {
  const out = Buffer.alloc(21 + body.length);
  out.writeInt32LE(out.length, 0);
  out.writeInt32LE(requestID, 4);
  out.writeInt32LE(2013, 12);
  body.copy(out, 21);
  return out;
}

const doc = (d: Record<string, unknown>): Buffer => Buffer.from(BSON.serialize(d));

/** A document whose `$db` is given twice (BSON.serialize cannot repeat a key). */
function twice(first: string, second: string): Buffer {
  const a = doc({ $db: first });
  const b = doc({ $db: second });
  const body = Buffer.concat([a.subarray(4, a.length - 1), b.subarray(4, b.length - 1)]);
  const out = Buffer.alloc(body.length + 5);
  out.writeInt32LE(out.length, 0);
  body.copy(out, 4);
  return out;
}

describe('opMsgDatabase', () => {
  const sections = (m: Buffer): string | null => opMsgDatabase(m, 20, m.length);
  it('finds $db after values of every common type', () => {
    const body = doc({ find: 'x', filter: { a: [1, 2n, 1.5, true, null, new Date(0), /re/i, new BSON.ObjectId(), new BSON.Binary(Buffer.from('hi')), new BSON.Decimal128('1.5'), new BSON.Timestamp({ t: 1, i: 2 }), new BSON.Int32(3)] }, $db: 'shop' });
    assert.equal(sections(opMsg(1, body)), 'shop');
  });
  it('null for a missing, repeated or non-string $db, and for malformed bodies', () => {
    assert.equal(sections(opMsg(1, doc({ find: 'x' }))), null);
    assert.equal(sections(opMsg(1, twice('a', 'b'))), null);
    assert.equal(sections(opMsg(1, twice('a', 'a'))), null);
    assert.equal(sections(opMsg(1, doc({ find: 'x', $db: 1 }))), null);
    const cut = opMsg(1, doc({ find: 'x', $db: 'shop' }));
    cut.writeInt32LE(cut.readInt32LE(21) + 1, 21);
    assert.equal(sections(cut), null);
  });
});

class FakeRelay {
  readonly sent: Buffer[] = [];
  readonly toClient: Buffer[] = [];
  reason: string | null = null;
  bytesOut = 0;
  backendDestroyed = false;
  clientEnded = false;
  readonly backend = { destroy: () => (this.backendDestroyed = true) };
  readonly client = {
    end: (b?: Buffer) => {
      this.clientEnded = true;
      if (b !== undefined) this.toClient.push(b);
    },
  };
  writeToBackend(b: Buffer): boolean {
    this.sent.push(Buffer.from(b));
    return true;
  }
}

function feed(chunks: Buffer[]): FakeRelay {
  const relay = new FakeRelay();
  const guard = new DbGuard('shop', 1 << 20);
  for (const c of chunks) guard.push(relay as unknown as Relay, c);
  return relay;
}

function splits(stream: Buffer): Buffer[][] {
  const out: Buffer[][] = [[stream], [...stream].map((b) => Buffer.from([b]))];
  for (let cut = 1; cut < stream.length; cut++) out.push([stream.subarray(0, cut), stream.subarray(cut)]);
  return out;
}

describe('DbGuard', () => {
  const own = opMsg(1, doc({ find: 'x', $db: 'shop' }));
  const admin = opMsg(2, doc({ endSessions: [], $db: 'admin' }));
  const other = opMsg(3, doc({ find: 'x', $db: 'other' }));
  it('passes the routed database and admin, byte for byte, however the stream is cut', () => {
    const stream = Buffer.concat([own, admin, own]);
    for (const chunks of splits(stream)) {
      const relay = feed(chunks);
      assert.deepEqual(Buffer.concat(relay.sent), stream);
      assert.equal(relay.clientEnded, false);
    }
  });
  it('refuses another database with 13 before any of its bytes pass, however the stream is cut', () => {
    const stream = Buffer.concat([own, other, own]);
    for (const chunks of splits(stream)) {
      const relay = feed(chunks);
      assert.ok(Buffer.concat(relay.sent).equals(own), 'only the first request reached the backend');
      assert.ok(relay.backendDestroyed && relay.clientEnded);
      const reply = relay.toClient[0] as Buffer;
      assert.equal(reply.readInt32LE(8), 3, 'answers the refused request');
      assert.equal(BSON.deserialize(reply.subarray(21)).code, 13);
    }
  });
  it('refuses OP_COMPRESSED, lengths out of bounds, and a repeated $db', () => {
    const compressed = Buffer.from(own);
    compressed.writeInt32LE(2012, 12);
    const huge = Buffer.from(own);
    huge.writeInt32LE(2 << 20, 0);
    for (const bad of [compressed, huge, opMsg(4, twice('shop', 'other'))]) {
      const relay = feed([bad]);
      assert.equal(relay.sent.length, 0);
      assert.ok(relay.clientEnded);
    }
  });
});
