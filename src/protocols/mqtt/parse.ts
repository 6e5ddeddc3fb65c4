/**
 * Pure MQTT parsers for the listener's opening: the CONNECT packet of MQTT
 * 3.1 (protocol name "MQIsdp", level 3), 3.1.1 (level 4) and 5.0 (level 5).
 *
 * OASIS MQTT Version 3.1.1 §2.2 (fixed header), §1.5.3 (UTF-8 strings),
 * §3.1 (CONNECT); MQTT Version 5.0 §1.5.5 (Variable Byte Integer), §2.2.2
 * (properties), §3.1 (CONNECT).
 *
 * The parser waits for the whole packet, then reads it once. A packet that
 * breaks the spec throws an MqttRefusal carrying what the server must do:
 * close without a word (3.1.1 protocol violations), or answer a CONNACK
 * with a reason code first (unsupported level; 5.0's 0x81 Malformed Packet,
 * 0x82 Protocol Error, 0x95 Packet too large).
 */
import { MqttRefusal } from './errors.ts';

export const CONNECT = 1;
/** The largest CONNECT accepted: client id, will topic, will payload, user name and password (each at most 65,535 bytes) and room for properties. */
export const MAX_CONNECT_BYTES = 512 * 1024;
/** Variable Byte Integer's maximum (§1.5.5): four bytes of seven bits. */
export const MAX_VARINT = 268_435_455;

export interface WillMessage {
  readonly qos: number;
  readonly retain: boolean;
  readonly topic: string;
  readonly payloadLength: number;
}

export interface ConnectPacket {
  /** Protocol level: 3 (3.1), 4 (3.1.1) or 5 (5.0). */
  readonly level: number;
  readonly cleanStart: boolean;
  readonly keepAlive: number;
  readonly clientId: string;
  readonly username: string | undefined;
  readonly hasPassword: boolean;
  readonly will: WillMessage | undefined;
  /** 5.0: the client's Maximum Packet Size (0x27): the CONNACK must not exceed it. Undefined: no limit. */
  readonly maxPacketSize: number | undefined;
  /** 5.0: Authentication Method (0x15): enhanced authentication, answered by the backend. */
  readonly authMethod: string | undefined;
  /** The packet as received, for the replay. */
  readonly raw: Buffer;
}

/**
 * A Variable Byte Integer at `at`: its value and length, or undefined when
 * more bytes are needed. Throws on a fifth byte or a non-minimal encoding
 * (§1.5.5 [MQTT-1.5.5-1]).
 */
export function readVarint(bytes: Buffer, at: number, level: number | undefined): { value: number; length: number } | undefined {
  let value = 0;
  let multiplier = 1;
  for (let i = 0; i < 4; i++) {
    if (at + i >= bytes.length) return undefined;
    const byte = bytes[at + i] as number;
    value += (byte & 0x7f) * multiplier;
    if ((byte & 0x80) === 0) {
      if (byte === 0 && i > 0) throw malformed(level, 'a variable byte integer is not minimally encoded');
      return { value, length: i + 1 };
    }
    multiplier *= 128;
  }
  throw malformed(level, 'a variable byte integer is longer than four bytes');
}

/** The bytes of `value` as a Variable Byte Integer. */
export function encodeVarint(value: number): Buffer {
  if (!Number.isInteger(value) || value < 0 || value > MAX_VARINT) throw new RangeError(`${value} does not fit a variable byte integer`);
  const out: number[] = [];
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    out.push(byte);
  } while (value > 0);
  return Buffer.from(out);
}

/**
 * The client's CONNECT, once all of it arrived (OpeningParser shape). The
 * first packet of a connection must be a CONNECT ([MQTT-3.1.0-1]).
 */
export function parseConnect(bytes: Buffer): { value: ConnectPacket; consumed: number } | undefined {
  const first = bytes[0] as number;
  if (first >> 4 !== CONNECT) throw violation(undefined, `the first packet must be CONNECT, got packet type ${first >> 4}`);
  // §2.2.2: CONNECT's flags are reserved (0).
  if ((first & 0x0f) !== 0) throw violation(undefined, 'CONNECT with reserved fixed-header flags set');
  const length = readVarint(bytes, 1, undefined);
  if (length === undefined) return undefined;
  const start = 1 + length.length;
  if (length.value > MAX_CONNECT_BYTES) throw new MqttRefusal('PROTOCOL', `CONNECT of ${length.value} bytes is larger than ${MAX_CONNECT_BYTES}`, { level: peekLevel(bytes, start), v3: null, v5: 0x95 });
  const end = start + length.value;
  if (bytes.length < end) return undefined;
  return { value: readConnect(bytes.subarray(0, end), start), consumed: end };
}

/** The protocol level in a CONNECT not all received yet (for the CONNACK of a too-large one), if it is there. */
function peekLevel(bytes: Buffer, start: number): number | undefined {
  if (bytes.length < start + 2) return undefined;
  const at = start + 2 + bytes.readUInt16BE(start);
  return at < bytes.length ? (bytes[at] as number) : undefined;
}

/** Reads a whole CONNECT; `packet` is exactly the packet, its variable header at `start`. */
function readConnect(packet: Buffer, start: number): ConnectPacket {
  const r = new Reader(packet, start, undefined);
  const name = r.string('the protocol name');
  const level = r.byte('the protocol level');
  if (!((name === 'MQTT' && (level === 4 || level === 5)) || (name === 'MQIsdp' && level === 3))) {
    if (name !== 'MQTT' && name !== 'MQIsdp') throw violation(undefined, `unknown protocol name ${JSON.stringify(name)}`);
    // [MQTT-3.1.2-2] / 5.0 §3.1.2.2: CONNACK "unacceptable protocol version" (0x01; 5.0: 0x84), then close.
    throw new MqttRefusal('PROTOCOL', `unsupported MQTT protocol level ${level}`, { level: level === 5 ? 5 : 4, v3: 0x01, v5: 0x84 });
  }
  r.level = level;
  const flags = r.byte('the connect flags');
  if ((flags & 0x01) !== 0) throw malformed(level, 'the reserved connect flag is set'); // [MQTT-3.1.2-3]
  const hasWill = (flags & 0x04) !== 0;
  const willQos = (flags >> 3) & 0x03;
  const willRetain = (flags & 0x20) !== 0;
  const hasPassword = (flags & 0x40) !== 0;
  const hasUsername = (flags & 0x80) !== 0;
  if (willQos === 3) throw malformed(level, 'will QoS 3'); // [MQTT-3.1.2-14]
  if (!hasWill && (willQos !== 0 || willRetain)) throw malformed(level, 'will QoS or retain set without a will'); // [MQTT-3.1.2-13], [MQTT-3.1.2-15]
  if (level < 5 && hasPassword && !hasUsername) throw violation(level, 'a password without a user name'); // [MQTT-3.1.2-22]
  const keepAlive = r.u16('the keep alive');
  let maxPacketSize: number | undefined;
  let authMethod: string | undefined;
  if (level === 5) {
    const props = r.properties(CONNECT_PROPERTIES);
    maxPacketSize = props.maxPacketSize;
    authMethod = props.authMethod;
  }
  const clientId = r.string('the client identifier');
  let will: WillMessage | undefined;
  if (hasWill) {
    if (level === 5) r.properties(WILL_PROPERTIES);
    const topic = r.string('the will topic');
    if (topic === '') throw malformed(level, 'an empty will topic'); // §4.7.3: topic names have at least one character
    if (/[#+]/.test(topic)) throw malformed(level, 'a wildcard in the will topic'); // [MQTT-3.3.2-2]
    const payloadLength = r.binary('the will payload').length;
    will = { qos: willQos, retain: willRetain, topic, payloadLength };
  }
  const username = hasUsername ? r.string('the user name') : undefined;
  if (hasPassword) r.binary('the password');
  if (r.at !== packet.length) throw malformed(level, `${packet.length - r.at} bytes after the CONNECT payload`);
  return { level, cleanStart: (flags & 0x02) !== 0, keepAlive, clientId, username, hasPassword, will, maxPacketSize, authMethod, raw: packet };
}

type PropertyType = 'bool' | 'u16' | 'u16+' | 'u32' | 'u32+' | 'string' | 'binary' | 'pair';

/** The properties a CONNECT may carry (5.0 §3.1.2.11), by identifier. */
const CONNECT_PROPERTIES: ReadonlyMap<number, readonly [string, PropertyType]> = new Map([
  [0x11, ['Session Expiry Interval', 'u32']],
  [0x21, ['Receive Maximum', 'u16+']],
  [0x27, ['Maximum Packet Size', 'u32+']],
  [0x22, ['Topic Alias Maximum', 'u16']],
  [0x19, ['Request Response Information', 'bool']],
  [0x17, ['Request Problem Information', 'bool']],
  [0x26, ['User Property', 'pair']],
  [0x15, ['Authentication Method', 'string']],
  [0x16, ['Authentication Data', 'binary']],
]);

/** The will properties (5.0 §3.1.3.2). */
const WILL_PROPERTIES: ReadonlyMap<number, readonly [string, PropertyType]> = new Map([
  [0x18, ['Will Delay Interval', 'u32']],
  [0x01, ['Payload Format Indicator', 'bool']],
  [0x02, ['Message Expiry Interval', 'u32']],
  [0x03, ['Content Type', 'string']],
  [0x08, ['Response Topic', 'string']],
  [0x09, ['Correlation Data', 'binary']],
  [0x26, ['User Property', 'pair']],
]);

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A cursor over one whole packet; running past its end is a malformed packet. */
class Reader {
  readonly #bytes: Buffer;
  at: number;
  level: number | undefined;

  constructor(bytes: Buffer, at: number, level: number | undefined) {
    this.#bytes = bytes;
    this.at = at;
    this.level = level;
  }

  #need(n: number, what: string): void {
    if (this.at + n > this.#bytes.length) throw malformed(this.level, `the CONNECT ends inside ${what}`);
  }

  byte(what: string): number {
    this.#need(1, what);
    return this.#bytes[this.at++] as number;
  }

  u16(what: string): number {
    this.#need(2, what);
    const value = this.#bytes.readUInt16BE(this.at);
    this.at += 2;
    return value;
  }

  u32(what: string): number {
    this.#need(4, what);
    const value = this.#bytes.readUInt32BE(this.at);
    this.at += 4;
    return value;
  }

  binary(what: string): Buffer {
    const length = this.u16(what);
    this.#need(length, what);
    const value = this.#bytes.subarray(this.at, this.at + length);
    this.at += length;
    return value;
  }

  /** A UTF-8 string (§1.5.4): well-formed, no U+0000 ([MQTT-1.5.4-1], [MQTT-1.5.4-2]). */
  string(what: string): string {
    const bytes = this.binary(what);
    let value: string;
    try {
      value = utf8.decode(bytes);
    } catch {
      throw malformed(this.level, `${what} is not well-formed UTF-8`);
    }
    if (value.includes('\0')) throw malformed(this.level, `${what} contains U+0000`);
    return value;
  }

  /** A property list (5.0 §2.2.2): each identifier allowed here, once unless it is a User Property. */
  properties(allowed: ReadonlyMap<number, readonly [string, PropertyType]>): { maxPacketSize: number | undefined; authMethod: string | undefined } {
    const length = readVarint(this.#bytes, this.at, this.level);
    if (length === undefined) throw malformed(this.level, 'the CONNECT ends inside a property length');
    this.at += length.length;
    const end = this.at + length.value;
    if (end > this.#bytes.length) throw malformed(this.level, 'the properties run past the end of the CONNECT');
    const seen = new Set<number>();
    let maxPacketSize: number | undefined;
    let authMethod: string | undefined;
    let authData = false;
    while (this.at < end) {
      const id = readVarint(this.#bytes, this.at, this.level);
      if (id === undefined) throw malformed(this.level, 'the CONNECT ends inside a property identifier');
      this.at += id.length;
      const rule = allowed.get(id.value);
      if (rule === undefined) throw malformed(this.level, `property 0x${id.value.toString(16)} is not allowed here`);
      const [name, type] = rule;
      if (type !== 'pair' && seen.has(id.value)) throw violation(this.level, `${name} appears twice`);
      seen.add(id.value);
      switch (type) {
        case 'bool':
          if (this.byte(name) > 1) throw violation(this.level, `${name} must be 0 or 1`);
          break;
        case 'u16':
          this.u16(name);
          break;
        case 'u16+':
          if (this.u16(name) === 0) throw violation(this.level, `${name} must not be 0`);
          break;
        case 'u32':
          this.u32(name);
          break;
        case 'u32+': {
          const value = this.u32(name);
          if (value === 0) throw violation(this.level, `${name} must not be 0`);
          if (id.value === 0x27) maxPacketSize = value;
          break;
        }
        case 'string': {
          const value = this.string(name);
          if (id.value === 0x15) authMethod = value;
          break;
        }
        case 'binary':
          this.binary(name);
          if (id.value === 0x16) authData = true;
          break;
        case 'pair':
          this.string(`${name} name`);
          this.string(`${name} value`);
          break;
      }
      if (this.at > end) throw malformed(this.level, `${name} runs past the end of the properties`);
    }
    if (authData && authMethod === undefined) throw violation(this.level, 'Authentication Data without an Authentication Method'); // 5.0 §3.1.2.11.10
    return { maxPacketSize, authMethod };
  }
}

/** A malformed packet: 5.0 answers CONNACK 0x81; 3.1.1 closes ([MQTT-4.8.0-1]). */
function malformed(level: number | undefined, message: string): MqttRefusal {
  return new MqttRefusal('PROTOCOL', `malformed CONNECT: ${message}`, { level, v3: null, v5: 0x81 });
}

/** A protocol error: 5.0 answers CONNACK 0x82; 3.1.1 closes. */
function violation(level: number | undefined, message: string): MqttRefusal {
  return new MqttRefusal('PROTOCOL', `protocol error: ${message}`, { level, v3: null, v5: 0x82 });
}
