import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';
import { takeRead } from '../../../../src/core/io/shared-read-buffer.ts';
import { adoptSharedReadBuffer, usesSharedReadBuffer } from '../../../../src/core/io/socket-onread.ts';
import { ioSupport } from '../../../../src/core/io/support.ts';

const servers: net.Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

function acceptOne(): Promise<{ accepted: net.Socket; client: net.Socket }> {
  return new Promise((resolve) => {
    const server = net.createServer({ pauseOnConnect: true }, (accepted) => resolve({ accepted, client }));
    servers.push(server);
    let client: net.Socket;
    server.listen(0, '127.0.0.1', () => {
      client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    });
  });
}

// The fast path relies on net.Socket internals (symbol-keyed onread fields and
// handle.useUserBuffer). This test fails if a Node upgrade removes them, so the
// relay's silent fallback to 'data' events cannot go unnoticed.
test('accepted sockets switch to the shared read buffer on this Node', async () => {
  assert.equal(ioSupport.socketOnread, true, "net.Socket's onread fields changed: accepted sockets fell back to 'data' events");
  const { accepted, client } = await acceptOne();
  const chunks: Buffer[] = [];
  let done!: () => void;
  const got = new Promise<void>((resolve) => (done = resolve));
  const ok = adoptSharedReadBuffer(accepted, function (nread) {
    chunks.push(takeRead(nread));
    if (Buffer.concat(chunks).length >= 11) done();
    return true;
  });
  assert.equal(ok, true);
  assert.equal(usesSharedReadBuffer(accepted), true);
  accepted.resume();
  client.write('hello ');
  client.write('world');
  await got;
  assert.equal(Buffer.concat(chunks).toString(), 'hello world');
  // Each chunk is a copy: later reads must not change earlier chunks.
  client.write('XXXXXXXXXXX');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(Buffer.concat(chunks).subarray(0, 11).toString(), 'hello world');
  client.destroy();
  accepted.destroy();
});

test('a socket with buffered bytes is left alone', async () => {
  const { accepted, client } = await acceptOne();
  client.write('early');
  accepted.resume();
  accepted.pause();
  await new Promise<void>((resolve) => accepted.once('readable', () => resolve()));
  assert.ok(accepted.readableLength > 0);
  assert.equal(adoptSharedReadBuffer(accepted, () => true), false);
  assert.equal(usesSharedReadBuffer(accepted), false);
  client.destroy();
  accepted.destroy();
});
