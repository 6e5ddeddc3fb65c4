/**
 * The amqp listener's health probe (core/health.ts ExchangeProbe): the AMQP
 * 0-9-1 protocol header; the broker is up when it answers with
 * Connection.Start on channel 0 (the probe then closes, before any login).
 */
import type { ExchangeProbe } from '../../core/health.ts';
import { CONNECTION, FRAME_METHOD, PROTOCOL_HEADER, START } from './frames.ts';

export const amqpHealthProbe: ExchangeProbe = {
  name: 'amqp-start',
  hello: PROTOCOL_HEADER,
  judge(reply) {
    if (reply[0] === 0x41) return 'the broker does not speak AMQP 0-9-1 (it answered with its protocol header)';
    if (reply[0] !== FRAME_METHOD) return `not an AMQP broker: first byte 0x${(reply[0] as number).toString(16)}`;
    if (reply.length < 11) return undefined;
    if (reply.readUInt16BE(1) !== 0 || reply.readUInt16BE(7) !== CONNECTION || reply.readUInt16BE(9) !== START) return 'the broker did not answer with Connection.Start';
    return null;
  },
};
