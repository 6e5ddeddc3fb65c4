/** The CONNECT parser: packets as hex, each rule's CONNACK code (or close) asserted. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MqttRefusal } from '../../../../src/protocols/mqtt/errors.ts';
import { MAX_CONNECT_BYTES, parseConnect } from '../../../../src/protocols/mqtt/parse.ts';

function str(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 0xff]), bytes]);
}

/** A CONNECT from its variable header and payload pieces. */
function packet(...parts: Buffer[]): Buffer {
  const rest = Buffer.concat(parts);
  assert.ok(rest.length < 128);
  return Buffer.concat([Buffer.from([0x10, rest.length]), rest]);
}

function refusal(bytes: Buffer): { level: number | undefined; v3: number | null; v5: number; message: string } {
  try {
    parseConnect(bytes);
  } catch (err) {
    assert.ok(err instanceof MqttRefusal, String(err));
    assert.equal(err.kind, 'PROTOCOL');
    return { level: err.level, v3: err.v3, v5: err.v5, message: err.message };
  }
  assert.fail('accepted');
}

describe('parseConnect', () => {
  it('reads a 3.1.1 CONNECT with user name, password and will, and leaves pipelined bytes', () => {
    const connect = packet(str('MQTT'), Buffer.from([4, 0b11101110, 0, 30]), str('dev-1'), str('w/t'), str('bye'), str('shop'), str('pw'));
    const parsed = parseConnect(Buffer.concat([connect, Buffer.from([0xc0, 0])]));
    assert.ok(parsed !== undefined);
    assert.equal(parsed.consumed, connect.length);
    assert.deepEqual(
      { ...parsed.value, raw: parsed.value.raw.toString('hex') },
      { level: 4, cleanStart: true, keepAlive: 30, clientId: 'dev-1', username: 'shop', hasPassword: true, will: { qos: 1, retain: true, topic: 'w/t', payloadLength: 3 }, maxPacketSize: undefined, authMethod: undefined, raw: connect.toString('hex') },
    );
  });

  it('reads MQTT 3.1 (MQIsdp, level 3) and 5.0 properties; 5.0 allows a password without a user name', () => {
    assert.equal(parseConnect(packet(str('MQIsdp'), Buffer.from([3, 0x82, 0, 0]), str('c'), str('u')))?.value.level, 3);
    const v5 = parseConnect(packet(str('MQTT'), Buffer.from([5, 0x42, 0, 0]), Buffer.from([10, 0x27, 0, 0, 1, 0, 0x15, 0, 2, 0x53, 0x53]), str('c'), str('secret')));
    assert.deepEqual([v5?.value.maxPacketSize, v5?.value.authMethod, v5?.value.username, v5?.value.hasPassword], [256, 'SS', undefined, true]);
  });

  it('waits for the rest of the packet', () => {
    const connect = packet(str('MQTT'), Buffer.from([4, 2, 0, 0]), str('c'));
    for (let n = 1; n < connect.length; n++) assert.equal(parseConnect(connect.subarray(0, n)), undefined, `${n} bytes`);
  });

  it('closes on anything but a CONNECT first, or reserved fixed-header flags', () => {
    assert.deepEqual(refusal(Buffer.from('GET / HTTP/1.1')).level, undefined);
    assert.equal(refusal(Buffer.from([0x11, 0])).v3, null);
  });

  it('unsupported levels get CONNACK 0x01 / 0x84; an unknown protocol name closes', () => {
    const level6 = refusal(packet(str('MQTT'), Buffer.from([6, 2, 0, 0]), str('c')));
    assert.deepEqual([level6.level, level6.v3], [4, 0x01]);
    const level5name = refusal(packet(str('MQIsdp'), Buffer.from([5, 2, 0, 0]), str('c')));
    assert.deepEqual([level5name.level, level5name.v5], [5, 0x84]);
    assert.equal(refusal(packet(str('MQTX'), Buffer.from([4, 2, 0, 0]), str('c'))).level, undefined);
  });

  it('malformed packets: 5.0 gets 0x81, protocol errors 0x82, 3.1.1 a close', () => {
    const reserved = refusal(packet(str('MQTT'), Buffer.from([5, 0x03, 0, 0, 0]), str('c')));
    assert.deepEqual([reserved.level, reserved.v3, reserved.v5], [5, null, 0x81]);
    assert.equal(refusal(packet(str('MQTT'), Buffer.from([4, 0x1e, 0, 0]), str('c'), str('t'), str('p'))).v5, 0x81, 'will QoS 3');
    assert.equal(refusal(packet(str('MQTT'), Buffer.from([4, 0x22, 0, 0]), str('c'))).v5, 0x81, 'will retain without a will');
    assert.equal(refusal(packet(str('MQTT'), Buffer.from([4, 0x42, 0, 0]), str('c'), str('p'))).v3, null, '3.1.1 password without a user name');
    assert.match(refusal(packet(str('MQTT'), Buffer.from([4, 2, 0, 0]), str('a\0b'))).message, /U\+0000/);
    assert.match(refusal(packet(str('MQTT'), Buffer.from([4, 2, 0, 0]), Buffer.from([0, 2, 0xc3, 0x28]))).message, /not well-formed UTF-8/);
    assert.match(refusal(packet(str('MQTT'), Buffer.from([4, 2, 0, 0]), str('c'), Buffer.from([1]))).message, /1 bytes after the CONNECT payload/);
    assert.match(refusal(packet(str('MQTT'), Buffer.from([4, 6, 0, 0]), str('c'), str('a/#'), str('p'))).message, /wildcard/);
    assert.equal(refusal(packet(str('MQTT'), Buffer.from([5, 2, 0, 0, 3, 0x16, 0, 0]), str('c'))).v5, 0x82, 'authentication data without a method');
    assert.equal(refusal(packet(str('MQTT'), Buffer.from([5, 2, 0, 0, 3, 0x21, 0, 0]), str('c'))).v5, 0x82, 'receive maximum 0');
    assert.equal(refusal(packet(str('MQTT'), Buffer.from([5, 2, 0, 0, 2, 0x01, 0]), str('c'))).v5, 0x81, 'a will property in the CONNECT properties');
    assert.equal(refusal(packet(str('MQTT'), Buffer.from([5, 2, 0, 0, 4, 0x17, 1, 0x17, 1]), str('c'))).v5, 0x82, 'a property twice');
  });

  it('a CONNECT larger than the limit is refused from its header: 0x95 packet too large', () => {
    const size = MAX_CONNECT_BYTES + 1;
    const header = Buffer.from([0x10, (size & 0x7f) | 0x80, ((size >> 7) & 0x7f) | 0x80, size >> 14]);
    const big = refusal(Buffer.concat([header, str('MQTT'), Buffer.from([5])]));
    assert.deepEqual([big.level, big.v3, big.v5], [5, null, 0x95]);
  });
});
