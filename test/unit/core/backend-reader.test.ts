import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { BackendReader } from '../../../src/core/backend-reader.ts';
import type { OpeningParser } from '../../../src/core/client-connection.ts';

/** Length-prefixed test frames: 1 length byte, then that many bytes. */
const frame: OpeningParser<string> = (buf) => {
  const length = buf[0] as number;
  if (buf.length < 1 + length) return undefined;
  return { value: buf.toString('latin1', 1, 1 + length), consumed: 1 + length };
};

async function pair(): Promise<{ server: net.Socket; client: net.Socket; close: () => void }> {
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve));
  const client = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
  const server = await accepted;
  return { server, client, close: () => (client.destroy(), server.destroy(), listener.close()) };
}

test('reads messages split across chunks and keeps what follows', async () => {
  const { server, client, close } = await pair();
  const reader = new BackendReader(client, 'the test');
  server.write(Buffer.from([3, 0x61]));
  const first = reader.read(frame);
  await new Promise((resolve) => setImmediate(resolve));
  server.write(Buffer.from([0x62, 0x63, 2, 0x64, 0x65, 9]));
  assert.equal(await first, 'abc');
  assert.equal(await reader.read(frame), 'de');
  assert.deepEqual(reader.leftover(), Buffer.from([9]));
  assert.equal(reader.leftover(), null);
  reader.dispose();
  assert.equal(client.listenerCount('data'), 0);
  close();
});

test('a backend that closes mid-message fails the read with BACKEND_UNREACHABLE', async () => {
  const { server, client, close } = await pair();
  const reader = new BackendReader(client, 'the test');
  const pending = reader.read(frame);
  server.end(Buffer.from([5, 0x61]));
  await assert.rejects(pending, (err: { kind?: string; message: string }) => err.kind === 'BACKEND_UNREACHABLE' && /during the test/.test(err.message));
  reader.dispose();
  close();
});

test('a parser error rejects the read', async () => {
  const { server, client, close } = await pair();
  const reader = new BackendReader(client, 'the test');
  const bad: OpeningParser<never> = () => {
    throw new Error('garbled');
  };
  const pending = reader.read(bad);
  server.write('x');
  await assert.rejects(pending, /garbled/);
  reader.dispose();
  close();
});
