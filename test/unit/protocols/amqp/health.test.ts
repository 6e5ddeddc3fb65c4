/** The amqp health probe's verdicts. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { amqpHealthProbe } from '../../../../src/protocols/amqp/health.ts';
import { PROTOCOL_HEADER, closeFrame, startFrame } from '../../../../src/protocols/amqp/frames.ts';

describe('amqpHealthProbe', () => {
  it('sends the 0-9-1 header; Connection.Start is healthy', () => {
    assert.deepEqual(amqpHealthProbe.hello, PROTOCOL_HEADER);
    const start = startFrame({ product: 'RabbitMQ' }, ['PLAIN'], ['en_US']);
    assert.equal(amqpHealthProbe.judge(start), null);
    assert.equal(amqpHealthProbe.judge(start.subarray(0, 10)), undefined);
  });

  it('another version, another method or another protocol is down', () => {
    assert.match(amqpHealthProbe.judge(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1')) ?? '', /does not speak AMQP 0-9-1/);
    assert.match(amqpHealthProbe.judge(closeFrame(320, 'x')) ?? '', /did not answer with Connection.Start/);
    assert.match(amqpHealthProbe.judge(Buffer.from('HTTP/1.1 400')) ?? '', /not an AMQP broker/);
  });
});
