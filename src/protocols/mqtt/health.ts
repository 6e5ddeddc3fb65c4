/**
 * The mqtt listener's health probe (core/health.ts ExchangeProbe): an MQTT
 * 3.1.1 CONNECT without credentials (empty client id, clean session); any
 * CONNACK but 0x03 "server unavailable" means the broker is up — a 0x05
 * "not authorized" is a broker at work that wants a user name.
 */
import type { ExchangeProbe } from '../../core/health.ts';

// CONNECT, remaining length 12: "MQTT", level 4, flags clean session, keep alive 0, client id "".
const HELLO = Buffer.from([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 0, 0, 0]);

export const mqttHealthProbe: ExchangeProbe = {
  name: 'mqtt-connect',
  hello: HELLO,
  judge(reply) {
    if (reply[0] !== 0x20) return `not an MQTT broker: first byte 0x${(reply[0] as number).toString(16)}`;
    if (reply.length < 4) return undefined;
    if (reply[3] === 0x03) return 'the broker answered CONNACK 0x03 (server unavailable)';
    return null;
  },
};
