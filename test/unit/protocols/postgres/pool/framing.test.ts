/** MessageReader: headers both ways, PASS streamed, WHOLE collected, split at every offset; Outbox framing; bad lengths refused. */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import net from 'node:net';
import type { Socket } from 'node:net';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { FramingError, MessageReader, Outbox, PASS, WHOLE, cstringEnd } from '../../../../../src/protocols/postgres/pool/framing.ts';
import type { MessageOwner } from '../../../../../src/protocols/postgres/pool/framing.ts';

function message(type: string, body: Buffer | string): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const out = Buffer.alloc(5 + b.length);
  out[0] = type.charCodeAt(0);
  out.writeUInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}

/** Records what the reader reports: PASS bytes re-joined per message, WHOLE bodies copied. */
function recorder(whole: (type: number) => boolean): { owner: MessageOwner; seen: string[] } {
  const seen: string[] = [];
  let pass: Buffer[] = [];
  const owner: MessageOwner = {
    messageStart: (type) => (whole(type) ? WHOLE : PASS),
    messageBytes: (bytes, start, end) => pass.push(Buffer.from(bytes.subarray(start, end))),
    messageEnd: (type) => {
      seen.push(`pass ${String.fromCharCode(type)} ${Buffer.concat(pass).toString('hex')}`);
      pass = [];
    },
    messageWhole: (type, body, start, end) => seen.push(`whole ${String.fromCharCode(type)} ${body.toString('hex', start, end)}`),
  };
  return { owner, seen };
}

const STREAM = Buffer.concat([message('P', 'stmt\0select 1\0\0\0'), message('B', '\0stmt\0\0\0\0\0\0\0'), message('E', '\0\0\0\0\0'), message('S', ''), message('Q', 'select 2\0'), message('H', '')]);
const EXPECTED = [
  `whole P ${Buffer.from('stmt\0select 1\0\0\0').toString('hex')}`,
  `whole B ${Buffer.from('\0stmt\0\0\0\0\0\0\0').toString('hex')}`,
  `pass E ${message('E', '\0\0\0\0\0').toString('hex')}`,
  `pass S ${message('S', '').toString('hex')}`,
  `whole Q ${Buffer.from('select 2\0').toString('hex')}`,
  `pass H ${message('H', '').toString('hex')}`,
];
const isWhole = (type: number): boolean => type === 0x50 || type === 0x42 || type === 0x51;

describe('MessageReader', () => {
  it('frames a stream in one chunk', () => {
    const { owner, seen } = recorder(isWhole);
    const reader = new MessageReader(owner);
    reader.push(STREAM, 0, STREAM.length);
    assert.deepEqual(seen, EXPECTED);
    assert.equal(reader.atBoundary, true);
  });

  it('the same, split at every offset and byte by byte', () => {
    for (let cut = 0; cut <= STREAM.length; cut++) {
      const { owner, seen } = recorder(isWhole);
      const reader = new MessageReader(owner, undefined, 4); // a tiny store: it must grow
      reader.push(STREAM, 0, cut);
      reader.push(STREAM, cut, STREAM.length);
      assert.deepEqual(seen, EXPECTED, `cut at ${cut}`);
    }
    const { owner, seen } = recorder(isWhole);
    const reader = new MessageReader(owner);
    for (let i = 0; i < STREAM.length; i++) {
      reader.push(STREAM, i, i + 1);
      if (i === 2) assert.equal(reader.atBoundary, false, 'mid-header');
    }
    assert.equal(reader.atBoundary, true);
    assert.deepEqual(seen, EXPECTED);
  });

  it('stops after a message when asked, and resumes from there', () => {
    const { owner, seen } = recorder(isWhole);
    const reader = new MessageReader(owner);
    const at = reader.push(STREAM, 0, STREAM.length, () => seen.length === 2);
    assert.equal(seen.length, 2);
    reader.push(STREAM, at, STREAM.length);
    assert.deepEqual(seen, EXPECTED);
  });

  it('refuses a length below 4 or above the limit (FramingError)', () => {
    const { owner } = recorder(isWhole);
    assert.throws(() => new MessageReader(owner).push(Buffer.from([0x51, 0, 0, 0, 3]), 0, 5), FramingError);
    assert.throws(() => new MessageReader(owner, 100).push(Buffer.from([0x51, 0, 0, 0, 105]), 0, 5), /invalid message length 105/);
    // Split header: the same.
    const reader = new MessageReader(owner);
    reader.push(Buffer.from([0x51, 0]), 0, 2);
    assert.throws(() => reader.push(Buffer.from([0, 0, 2]), 0, 3), FramingError);
  });
});

describe('Outbox', () => {
  it('builds messages and writes them in one write', () => {
    const box = new Outbox(4);
    const at = box.startMessage(0x43);
    box.byte(0x53);
    box.cstring('pp_1');
    box.endMessage(at);
    box.bytes(Buffer.from('xyz'), 1, 3);
    box.int16(-1);
    box.int32(7);
    const written: Buffer[] = [];
    const sink = new PassThrough();
    sink.on('data', (d: Buffer) => written.push(d));
    assert.equal(box.flush(sink as unknown as Socket), true);
    assert.equal(box.length, 0);
    const out = Buffer.concat(written);
    assert.deepEqual(out.subarray(0, 11), message('C', 'Spp_1\0'));
    assert.deepEqual(out.subarray(11), Buffer.from([0x79, 0x7a, 0xff, 0xff, 0, 0, 0, 7]));
  });

  it('on a TCP socket: a write the kernel cannot take reports false, then drain; every byte arrives in order', async () => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const accepted = once(server, 'connection');
    const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    await once(socket, 'connect');
    const [peer] = (await accepted) as [Socket];
    peer.pause(); // the kernel buffers fill up
    const box = new Outbox(1024);
    const chunk = Buffer.alloc(64 * 1024);
    const sent: Buffer[] = [];
    let ok = true;
    for (let i = 0; ok && i < 1000; i++) {
      chunk.fill(i & 0xff);
      box.bytes(chunk, 0, chunk.length);
      sent.push(Buffer.from(chunk));
      ok = box.flush(socket);
    }
    assert.equal(ok, false, 'the socket never pushed back');
    const drained = once(socket, 'drain');
    const received: Buffer[] = [];
    const total = sent.length * chunk.length;
    let got = 0;
    const all = new Promise<void>((resolve) => {
      peer.on('data', (d: Buffer) => {
        received.push(d);
        got += d.length;
        if (got >= total) resolve();
      });
    });
    peer.resume();
    await drained;
    await all;
    assert.ok(Buffer.concat(received).equals(Buffer.concat(sent)));
    socket.destroy();
    peer.destroy();
    server.close();
  });
});

describe('cstringEnd', () => {
  it('finds the NUL inside the range only', () => {
    const buf = Buffer.from('ab\0cd\0');
    assert.equal(cstringEnd(buf, 0, buf.length), 2);
    assert.equal(cstringEnd(buf, 3, 5), -1);
    assert.equal(cstringEnd(buf, 3, 6), 5);
  });
});
