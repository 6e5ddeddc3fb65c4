/** AMQP 0-9-1 frames and connection methods as bytes. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AmqpRefusal } from '../../../../src/protocols/amqp/errors.ts';
import { closeFrame, fieldTable, frameParser, parseProtocolHeader, readOpen, readStartMechanisms, readTune, startFrame, tuneFrame } from '../../../../src/protocols/amqp/frames.ts';

const read = frameParser(4096);

function replyOf(fn: () => unknown): number | 'header' {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AmqpRefusal, String(err));
    return err.reply;
  }
  assert.fail('accepted');
}

describe('amqp frames', () => {
  it('the protocol header: waits on a prefix, refuses a difference at once', () => {
    assert.equal(parseProtocolHeader(Buffer.from('AMQ')), undefined);
    assert.deepEqual(parseProtocolHeader(Buffer.from('AMQP\x00\x00\x09\x01\x01', 'latin1')), { value: true, consumed: 8 });
    assert.equal(replyOf(() => parseProtocolHeader(Buffer.from('GE'))), 'header');
    assert.equal(replyOf(() => parseProtocolHeader(Buffer.from('AMQP\x01\x01\x00\x09', 'latin1'))), 'header');
  });

  it('frames: size, frame-end, and the limit', () => {
    const heartbeat = Buffer.from([8, 0, 0, 0, 0, 0, 0, 0xce]);
    assert.deepEqual(read(Buffer.concat([heartbeat, heartbeat]))?.consumed, 8);
    assert.equal(read(heartbeat.subarray(0, 7)), undefined);
    assert.equal(replyOf(() => read(Buffer.from([8, 0, 0, 0, 0, 0, 0, 0xcd]))), 501);
    assert.equal(replyOf(() => read(Buffer.from([1, 0, 0, 0, 0, 0x10, 1]))), 501, 'larger than the limit, refused from its header');
  });

  it('Tune and Tune-Ok round-trip; Open reads its vhost; truncated arguments are 502', () => {
    const frame = tuneFrame(30, { channelMax: 2047, frameMax: 131072, heartbeat: 60 });
    assert.equal(frame.toString('hex'), '0100000000000c000a001e07ff00020000003cce');
    assert.deepEqual(readTune(frame.subarray(11, -1), 'Tune'), { channelMax: 2047, frameMax: 131072, heartbeat: 60 });
    assert.equal(readOpen(Buffer.from([4, 0x73, 0x68, 0x6f, 0x70, 0, 0])), 'shop');
    assert.equal(replyOf(() => readOpen(Buffer.from([4, 0x73, 0x68]))), 502);
    assert.equal(replyOf(() => readOpen(Buffer.from([0, 0, 0, 1]))), 502, 'bytes after the arguments');
  });

  it("Start carries the proxy's properties and mechanisms; the broker's mechanisms are read", () => {
    const start = startFrame({ product: 'polyproxy', capabilities: { 'basic.nack': true } }, ['PLAIN', 'AMQPLAIN'], ['en_US']);
    assert.deepEqual(readStartMechanisms(start.subarray(11, -1)), ['PLAIN', 'AMQPLAIN']);
    assert.equal(fieldTable({ a: true }).toString('hex'), '0000000401617401');
  });

  it('Close: code, text cut to a shortstr, class and method', () => {
    const close = closeFrame(530, 'NOT_ALLOWED - no', 10, 40);
    assert.equal(close.toString('hex'), '0100000000001b' + '000a00320212' + '10' + '4e4f545f414c4c4f574544202d206e6f' + '000a0028ce');
    assert.equal(closeFrame(541, 'é'.repeat(200)).readUInt8(13), 254, 'cut on a character boundary');
  });
});
