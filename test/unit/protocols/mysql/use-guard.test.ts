/**
 * The relay's MySQL client filter: what reaches the backend and what the
 * client is told, for packet streams split at every offset.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import type { Endpoint } from '../../../../src/core/endpoint.ts';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import type { Relay } from '../../../../src/core/relay.ts';
import { COLLECT_LIMIT, UseGuard } from '../../../../src/protocols/mysql/use-guard.ts';
import { encodePacket } from '../../../../src/protocols/mysql/packets.ts';

const HERE: Endpoint = { type: 'tcp', host: '127.0.0.1', port: 3306, label: '127.0.0.1:3306' };
const THERE: Endpoint = { type: 'tcp', host: '127.0.0.1', port: 3307, label: '127.0.0.1:3307' };

function lookup(id: string): Promise<readonly Endpoint[]> {
  if (id === 'alpha' || id === 'gamma') return Promise.resolve([HERE]);
  if (id === 'beta') return Promise.resolve([THERE]);
  return Promise.reject(new PolyproxyError('NOT_FOUND', `no route for ${id}`));
}

class FakeSide {
  written: Buffer[] = [];
  destroyed = false;
  writableEnded = false;
  paused = false;
  write(b: Buffer): boolean {
    this.written.push(Buffer.from(b));
    return true;
  }
  end(b?: Buffer): void {
    if (b !== undefined) this.written.push(Buffer.from(b));
    this.writableEnded = true;
  }
  destroy(): void {
    this.destroyed = true;
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  get bytes(): Buffer {
    return Buffer.concat(this.written);
  }
}

function fakeRelay(): { relay: Relay; client: FakeSide; backend: FakeSide } {
  const client = new FakeSide();
  const backend = new FakeSide();
  const relay = { client, backend, done: false, reason: null, bytesOut: 0, writeToBackend: (chunk: Buffer) => backend.write(chunk) } as unknown as Relay;
  return { relay, client, backend };
}

const query = (sql: string): Buffer => encodePacket(0, Buffer.concat([Buffer.from([0x03]), Buffer.from(sql)]));
const initDb = (db: string): Buffer => encodePacket(0, Buffer.concat([Buffer.from([0x02]), Buffer.from(db)]));

/** Pushes chunks like the relay does (queued while the filter holds), then lets decisions finish. */
async function run(chunks: Buffer[]): Promise<{ client: FakeSide; backend: FakeSide }> {
  const { relay, client, backend } = fakeRelay();
  const guard = new UseGuard(0);
  guard.connected(HERE, lookup);
  for (const chunk of chunks) guard.push(relay, chunk);
  for (let i = 0; i < 5; i++) await tick();
  return { client, backend };
}

function splits(stream: Buffer): Buffer[][] {
  const out: Buffer[][] = [[stream], [...stream].map((b) => Buffer.from([b]))];
  for (let cut = 1; cut < stream.length; cut++) out.push([stream.subarray(0, cut), stream.subarray(cut)]);
  return out;
}

describe('UseGuard', () => {
  it('passes ordinary traffic unchanged, however it is split', async () => {
    const stream = Buffer.concat([query('select 1'), encodePacket(0, Buffer.from([0x0e])), encodePacket(2, Buffer.from('file data')), encodePacket(3, Buffer.alloc(0)), query('use alpha')]);
    for (const chunks of splits(stream)) {
      const { client, backend } = await run(chunks);
      assert.deepEqual(backend.bytes, stream);
      assert.equal(client.bytes.length, 0);
    }
  });

  it('refuses USE / COM_INIT_DB of a database routed elsewhere with ERR 1044, seq 1, and keeps the rest flowing', async () => {
    for (const refused of [query('use beta'), initDb('beta'), query('select 1; USE `beta`')]) {
      const stream = Buffer.concat([query('select 1'), refused, query('select 2')]);
      for (const chunks of splits(stream)) {
        const { client, backend } = await run(chunks);
        assert.deepEqual(backend.bytes, Buffer.concat([query('select 1'), query('select 2')]));
        const err = client.bytes;
        assert.equal(err[3], 1, 'the ERR follows the command: sequence id 1');
        assert.equal(err[4], 0xff);
        assert.equal(err.readUInt16LE(5), 1044);
        assert.equal(err.toString('latin1', 7, 13), '#42000');
        assert.match(err.toString('utf8', 13), /'beta'.*another backend/);
      }
    }
  });

  it('answers an unrouted database with ERR 1049', async () => {
    const { client, backend } = await run([initDb('nowhere')]);
    assert.equal(backend.bytes.length, 0);
    assert.equal(client.bytes.readUInt16LE(5), 1049);
  });

  it('lets a switch to a database on the same backend through, in order', async () => {
    const stream = Buffer.concat([initDb('gamma'), query('select 2')]);
    for (const chunks of splits(stream)) {
      const { client, backend } = await run(chunks);
      assert.deepEqual(backend.bytes, stream);
      assert.equal(client.bytes.length, 0);
    }
  });

  it('ends the session when a query too large to hold contains a USE, before its end reaches the backend', async () => {
    const big = query(`select '${'x'.repeat(COLLECT_LIMIT)}'; use alpha`);
    const { client, backend } = await run([big.subarray(0, 70000), big.subarray(70000)]);
    assert.ok(backend.destroyed);
    assert.ok(backend.bytes.length < big.length);
    assert.equal(client.bytes.readUInt16LE(5), 1044);
    // Without a USE the same size passes whole.
    const plain = query(`select '${'x'.repeat(COLLECT_LIMIT)}'`);
    const ok = await run([plain.subarray(0, 70000), plain.subarray(70000)]);
    assert.deepEqual(ok.backend.bytes, plain);
  });
});
