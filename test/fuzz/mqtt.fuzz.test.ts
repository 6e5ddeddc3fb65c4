/**
 * Fuzzing the MQTT CONNECT parser and CONNACK encoder (issue 22) against
 * an independent implementation: mqtt-packet, the codec MQTT.js uses.
 * CONNECTs mqtt-packet generates (3.1, 3.1.1, 5.0, wills, properties) parse
 * to the same fields, whole, cut anywhere or with pipelined bytes behind;
 * mutated CONNECTs are waited for, refused with an MqttRefusal, or accepted
 * only when mqtt-packet reads the same client id and user name from them;
 * CONNACKs the proxy writes decode in mqtt-packet to the code and reason
 * string, within the client's Maximum Packet Size.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { IConnackPacket, IConnectPacket, Packet } from 'mqtt-packet';
import { connack3, connack5, MqttRefusal } from '../../src/protocols/mqtt/errors.ts';
import { encodeVarint, parseConnect, readVarint } from '../../src/protocols/mqtt/parse.ts';
import { fuzz, text } from '../helpers/fuzz.ts';

const mqttPacket = createRequire(import.meta.url)('mqtt-packet') as {
  generate(packet: Packet, opts?: { protocolVersion: number }): Buffer;
  parser(opts?: { protocolVersion: number }): { on(event: 'packet' | 'error', cb: (value: never) => void): void; parse(bytes: Buffer): number };
};

/** Every packet mqtt-packet reads from `bytes`, or its error. */
function reference(bytes: Buffer, version: number): { packets: Packet[]; error: Error | null } {
  const parser = mqttPacket.parser({ protocolVersion: version });
  const packets: Packet[] = [];
  let error: Error | null = null;
  parser.on('packet', (packet: Packet) => packets.push(packet));
  parser.on('error', (err: Error) => (error ??= err));
  parser.parse(bytes);
  return { packets, error };
}

/** UTF-8 strings MQTT allows: no U+0000, no lone surrogates (text() never makes those). */
const mqttString = (min: number, max: number): fc.Arbitrary<string> => text(min, max, '\0');

// mqtt-packet writes nothing for an empty user property map: at least one.
const userProperties = fc.dictionary(mqttString(1, 8), mqttString(0, 8), { minKeys: 1, maxKeys: 3 });

const connectArb: fc.Arbitrary<IConnectPacket> = fc
  .record({
    version: fc.constantFrom(3, 4, 5),
    clientId: mqttString(0, 30),
    clean: fc.boolean(),
    keepalive: fc.integer({ min: 0, max: 65535 }),
    username: fc.option(mqttString(0, 20), { nil: undefined }),
    password: fc.option(fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)), { nil: undefined }),
    will: fc.option(
      fc.record({
        topic: mqttString(1, 20).filter((t) => !/[#+]/.test(t)),
        payload: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
        qos: fc.constantFrom(0 as const, 1 as const, 2 as const),
        retain: fc.boolean(),
        properties: fc.record({ willDelayInterval: fc.nat(), contentType: mqttString(0, 10), userProperties }, { requiredKeys: [] }),
      }),
      { nil: undefined },
    ),
    properties: fc.record(
      {
        sessionExpiryInterval: fc.nat(),
        receiveMaximum: fc.integer({ min: 1, max: 65535 }),
        maximumPacketSize: fc.integer({ min: 1, max: 0xffffffff }),
        topicAliasMaximum: fc.integer({ min: 0, max: 65535 }),
        requestResponseInformation: fc.boolean(),
        requestProblemInformation: fc.boolean(),
        userProperties,
        authenticationMethod: mqttString(1, 10),
      },
      { requiredKeys: [] },
    ),
  })
  .map(({ version, clientId, clean, keepalive, username, password, will, properties }) => {
    // An empty client id needs a clean session (3.1.1), and a client id at all before 3.1.1 (mqtt-packet enforces both).
    const id = clientId === '' && version === 3 ? 'c' : clientId;
    const packet: IConnectPacket = { cmd: 'connect', protocolVersion: version as 3 | 4 | 5, protocolId: version === 3 ? 'MQIsdp' : 'MQTT', clientId: id, clean: clean || id === '', keepalive };
    // A password needs a user name (3.1.1; mqtt-packet asks it of 5.0 too: a 5.0 password alone is in the unit tests).
    if (username !== undefined) packet.username = username;
    if (password !== undefined && username !== undefined) packet.password = password;
    if (will !== undefined) packet.will = version === 5 ? will : { topic: will.topic, payload: will.payload, qos: will.qos, retain: will.retain };
    if (version === 5) packet.properties = properties;
    return packet;
  });

function generated(packet: IConnectPacket): Buffer {
  const bytes = mqttPacket.generate(packet, { protocolVersion: packet.protocolVersion ?? 4 });
  assert.ok(bytes.length > 0, `mqtt-packet could not write ${JSON.stringify(packet)}`);
  return bytes;
}

describe('MQTT CONNECT parser', () => {
  it("reads what mqtt-packet writes: version, client id, user name, will; whole, cut anywhere, or with bytes behind", (t) => {
    fuzz(
      t,
      fc.property(connectArb, fc.nat(), fc.uint8Array({ maxLength: 20 }), (packet, cut, trailing) => {
        const bytes = generated(packet);
        const parsed = parseConnect(bytes);
        assert.ok(parsed !== undefined);
        assert.equal(parsed.consumed, bytes.length);
        const value = parsed.value;
        assert.equal(value.level, packet.protocolVersion);
        assert.equal(value.clientId, packet.clientId);
        assert.equal(value.username, packet.username);
        assert.equal(value.hasPassword, packet.password !== undefined);
        assert.equal(value.cleanStart, packet.clean);
        assert.equal(value.keepAlive, packet.keepalive);
        assert.deepEqual(value.will === undefined ? undefined : { topic: value.will.topic, qos: value.will.qos, retain: value.will.retain, payloadLength: value.will.payloadLength }, packet.will === undefined ? undefined : { topic: packet.will.topic, qos: packet.will.qos, retain: packet.will.retain, payloadLength: (packet.will.payload as Buffer).length });
        assert.equal(value.maxPacketSize, packet.properties?.maximumPacketSize);
        assert.equal(value.authMethod, packet.properties?.authenticationMethod);
        assert.ok(value.raw.equals(bytes), 'the replay is the packet as received');
        const at = cut % bytes.length;
        assert.equal(parseConnect(bytes.subarray(0, at === 0 ? 1 : at)), undefined, `prefix of ${at}`);
        const more = parseConnect(Buffer.concat([bytes, trailing]));
        assert.equal(more?.consumed, bytes.length);
      }),
    );
  });

  it('mutated CONNECTs: wait, an MqttRefusal, or a packet mqtt-packet reads the same way', (t) => {
    const mutated = fc.tuple(connectArb, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'drop', 'add')), { minLength: 1, maxLength: 4 })).map(([packet, edits]) => {
      const bytes = [...generated(packet)];
      for (const [at, byte, how] of edits) {
        const i = at % (bytes.length + 1);
        if (how === 'set' && i < bytes.length) bytes[i] = byte;
        else if (how === 'drop') bytes.splice(i, 1);
        else if (how === 'add') bytes.splice(i, 0, byte);
      }
      return Buffer.from(bytes);
    });
    fuzz(
      t,
      fc.property(mutated, (bytes) => {
        let parsed: ReturnType<typeof parseConnect>;
        try {
          parsed = bytes.length === 0 ? undefined : parseConnect(bytes);
        } catch (err) {
          assert.ok(err instanceof MqttRefusal, String(err));
          assert.equal(err.kind, 'PROTOCOL');
          assert.ok(err.level === undefined || [3, 4, 5].includes(err.level));
          return;
        }
        if (parsed === undefined) return;
        assert.ok(parsed.consumed <= bytes.length);
        // Accepted: the independent codec agrees on what routes the connection.
        const { packets } = reference(bytes.subarray(0, parsed.consumed), parsed.value.level);
        const connect = packets[0] as IConnectPacket | undefined;
        assert.ok(connect !== undefined && connect.cmd === 'connect', `mqtt-packet did not read ${bytes.subarray(0, parsed.consumed).toString('hex')}`);
        assert.equal(connect.clientId, parsed.value.clientId);
        assert.equal(connect.username, parsed.value.username);
      }),
    );
  });

  it('variable byte integers round-trip; non-minimal and five-byte encodings are refused', (t) => {
    fuzz(
      t,
      fc.property(fc.integer({ min: 0, max: 268_435_455 }), fc.integer({ min: 1, max: 3 }), (value, pad) => {
        const bytes = encodeVarint(value);
        assert.deepEqual(readVarint(bytes, 0, 5), { value, length: bytes.length });
        assert.equal(readVarint(bytes.subarray(0, bytes.length - 1), 0, 5), undefined);
        // The same value with continuation bytes of 0 added: not minimal.
        if (bytes.length + pad <= 4) {
          const padded = Buffer.concat([bytes, Buffer.alloc(pad)]);
          for (let i = 0; i < padded.length - 1; i++) padded.writeUInt8((padded[i] as number) | 0x80, i);
          assert.throws(() => readVarint(padded, 0, 5), MqttRefusal);
        }
      }),
    );
    assert.throws(() => readVarint(Buffer.from([0x80, 0x80, 0x80, 0x80, 0x01]), 0, 4), MqttRefusal);
  });
});

describe('MQTT CONNACK encoder', () => {
  it('mqtt-packet reads the code and reason string; never larger than the client allows', (t) => {
    fuzz(
      t,
      fc.property(fc.integer({ min: 0x80, max: 0xa2 }), text(0, 300), fc.option(fc.integer({ min: 5, max: 400 }), { nil: undefined }), (code, reason, max) => {
        const bytes = connack5(code, reason, max);
        if (max !== undefined) assert.ok(bytes.length <= max, `${bytes.length} > ${max}`);
        const { packets, error } = reference(bytes, 5);
        assert.equal(error, null);
        const connack = packets[0] as IConnackPacket;
        assert.equal(connack.cmd, 'connack');
        assert.equal(connack.reasonCode, code);
        const said = connack.properties?.reasonString;
        if (said !== undefined) assert.ok(reason.startsWith(said.replace(/\uFFFD$/, '')), 'a prefix of the text, cut on a character');
        if (max === undefined && reason !== '' && Buffer.byteLength(reason) <= 1024) assert.equal(said, reason);
      }),
    );
    for (const code of [1, 2, 3, 4, 5]) assert.equal((reference(connack3(code), 4).packets[0] as IConnackPacket).returnCode, code);
  });
});
