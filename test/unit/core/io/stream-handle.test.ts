import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import tls from 'node:tls';
import { takeRead } from '../../../../src/core/io/shared-read-buffer.ts';
import { adoptSharedReadBuffer } from '../../../../src/core/io/socket-onread.ts';
import {
  directHandleOf,
  handleOwner,
  lastReadResult,
  newWriteReq,
  passReadToSocket,
  releaseWriteReq,
  startReading,
  stopReading,
  takeOverReads,
  WRITE_DONE,
  WRITE_QUEUED,
  writeReqOwner,
  writeOwned,
  writeToHandle,
} from '../../../../src/core/io/stream-handle.ts';
import type { StreamHandle, WriteReq } from '../../../../src/core/io/stream-handle.ts';
import { ioSupport } from '../../../../src/core/io/support.ts';

const servers: net.Server[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets.length = 0;
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  servers.length = 0;
});

/** A connected pair: `accepted` paused, as the listener hands it over. */
async function pair(): Promise<{ accepted: net.Socket; peer: net.Socket }> {
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const connection = once(server, 'connection') as Promise<[net.Socket]>;
  const peer = net.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, allowHalfOpen: true });
  const [accepted] = await connection;
  sockets.push(accepted, peer);
  return { accepted, peer };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

// Only with direct I/O on: with POLYPROXY_DIRECT_IO=0 nothing may call these (support.test.ts covers the switch).
describe('io/stream-handle', { timeout: 30_000, skip: !ioSupport.directIo }, () => {
  it('gives the handle of a plain TCP socket, not of a TLS socket or one with a stream timeout', async () => {
    const { accepted, peer } = await pair();
    assert.notEqual(directHandleOf(accepted), null);
    assert.equal(directHandleOf(new tls.TLSSocket(peer)), null);
    accepted.setTimeout(10_000);
    assert.equal(directHandleOf(accepted), null);
    accepted.destroy();
    assert.equal(directHandleOf(accepted), null);
  });

  it('writes to the handle at once, and queues what the kernel cannot take with oncomplete after', async () => {
    const { accepted, peer } = await pair();
    const handle = directHandleOf(accepted) as StreamHandle;
    peer.pause();
    const owner = { completed: [] as number[] };
    const req = newWriteReq(handle, owner, function (this: WriteReq, status: number) {
      (writeReqOwner(this) as typeof owner).completed.push(status);
      releaseWriteReq(this);
    });
    assert.equal(writeToHandle(req, Buffer.from('small')), WRITE_DONE);
    // More than loopback socket buffers hold while the peer does not read.
    const big = Buffer.alloc(32 * 1024 * 1024, 0x62);
    assert.equal(writeToHandle(req, big), WRITE_QUEUED);
    assert.equal(req.buffer, big, 'a queued write keeps its chunk alive');
    let received = 0;
    peer.on('data', (chunk: Buffer) => (received += chunk.length));
    peer.resume();
    while (owner.completed.length === 0) await tick();
    assert.deepEqual(owner.completed, [0]);
    assert.equal(req.buffer, null);
    while (received < 5 + big.length) await tick();
    assert.equal(received, 5 + big.length);
  });

  it('takes over reads: bytes arrive in the shared buffer, EOF goes on to the socket', async () => {
    const { accepted, peer } = await pair();
    const handle = directHandleOf(accepted) as StreamHandle;
    assert.equal(adoptSharedReadBuffer(accepted, () => true), true);
    const owner = { text: '' };
    takeOverReads(handle, owner, function (this: StreamHandle, arrayBuffer?: ArrayBuffer) {
      const nread = lastReadResult();
      if (nread <= 0) return passReadToSocket(this, arrayBuffer);
      (handleOwner(this) as typeof owner).text += takeRead(nread).toString();
      return undefined;
    });
    const ended = once(accepted, 'end');
    accepted.resume();
    peer.write('hello');
    while (owner.text.length < 5) await tick();
    // Stopped, nothing is read; started again, the waiting bytes arrive.
    stopReading(handle);
    peer.write(' world');
    for (let i = 0; i < 20; i++) await tick();
    assert.equal(owner.text, 'hello');
    startReading(handle);
    while (owner.text.length < 11) await tick();
    assert.equal(owner.text, 'hello world');
    peer.end();
    await ended;
  });
});

describe('io/stream-handle writeOwned', { timeout: 30_000 }, () => {
  it('owned buffers arrive whole and in order, mixed with socket.write() and past what the kernel takes at once', async () => {
    const { accepted, peer } = await pair();
    const received: Buffer[] = [];
    let length = 0;
    peer.pause();
    peer.on('data', (chunk: Buffer) => {
      received.push(chunk);
      length += chunk.length;
    });
    const sent: Buffer[] = [];
    // 64 × 64 KiB: past the socket buffers, so some writes queue in libuv and later ones must follow them.
    for (let i = 0; i < 64; i++) {
      const chunk = Buffer.alloc(65536, i);
      sent.push(chunk);
      if (i % 5 === 4) accepted.write(chunk);
      else writeOwned(accepted, chunk);
    }
    accepted.end();
    peer.resume();
    await once(peer, 'end');
    assert.equal(length, 64 * 65536);
    assert.ok(Buffer.concat(received).equals(Buffer.concat(sent)));
  });

  it('after end() it behaves as socket.write() (an error, not a write past the FIN)', async () => {
    const { accepted } = await pair();
    accepted.on('error', () => {});
    accepted.end();
    const errored = once(accepted, 'error');
    writeOwned(accepted, Buffer.from('late'));
    const [err] = (await errored) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ERR_STREAM_WRITE_AFTER_END');
  });
});
