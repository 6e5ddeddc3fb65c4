/**
 * Pure AMQP 0-9-1 codecs for the handshake: the protocol header, frames,
 * and the connection-class methods the proxy reads or writes (Start,
 * Start-Ok, Tune, Tune-Ok, Open, Open-Ok, Close).
 *
 * AMQP 0-9-1 specification §4.2.2 (protocol header), §4.2.3 (frames:
 * type, channel, size, payload, frame-end 0xCE), §4.2.5 (field types),
 * §4.2.6 (method payloads: class id, method id, arguments), and the
 * connection class in amqp0-9-1.xml.
 */
import { AmqpRefusal, REPLY } from './errors.ts';

export const PROTOCOL_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]); // "AMQP" 0 0-9-1
export const FRAME_METHOD = 1;
export const FRAME_HEADER = 2;
export const FRAME_BODY = 3;
export const FRAME_HEARTBEAT = 8;
export const FRAME_END = 0xce;
/** frame-min-size: every peer accepts frames this large before Tune (§4.2.3). */
export const FRAME_MIN_SIZE = 4096;

export const CONNECTION = 10;
export const START = 10;
export const START_OK = 11;
export const TUNE = 30;
export const TUNE_OK = 31;
export const OPEN = 40;
export const OPEN_OK = 41;
export const CLOSE = 50;
export const CLOSE_OK = 51;

export interface Frame {
  readonly type: number;
  readonly channel: number;
  readonly payload: Buffer;
  /** The whole frame as received. */
  readonly raw: Buffer;
}

export interface Method {
  readonly classId: number;
  readonly methodId: number;
  /** The arguments, after the class and method ids. */
  readonly args: Buffer;
}

/**
 * The client's protocol header (OpeningParser shape). Anything but
 * "AMQP" 0 0 9 1 is refused as soon as it differs: the server answers with
 * its own header and closes (§4.2.2).
 */
export function parseProtocolHeader(bytes: Buffer): { value: true; consumed: number } | undefined {
  const n = Math.min(bytes.length, PROTOCOL_HEADER.length);
  for (let i = 0; i < n; i++) {
    if (bytes[i] !== PROTOCOL_HEADER[i]) {
      const seen = bytes.subarray(0, n);
      const what = i < 4 ? 'not an AMQP protocol header' : `AMQP protocol version ${[...seen.subarray(4)].join('-')}`;
      throw new AmqpRefusal('PROTOCOL', `${what}: this proxy speaks AMQP 0-9-1`, { reply: 'header' });
    }
  }
  return n < PROTOCOL_HEADER.length ? undefined : { value: true, consumed: PROTOCOL_HEADER.length };
}

/**
 * One frame (any type, any channel) of at most `maxSize` payload bytes;
 * `side` names who sent it in errors. A bad frame-end is a frame error
 * (501), a frame past the size limit too.
 */
export function frameParser(maxSize: number, side: 'client' | 'backend' = 'client'): (bytes: Buffer) => { value: Frame; consumed: number } | undefined {
  return (bytes) => {
    if (bytes.length < 7) return undefined;
    const size = bytes.readUInt32BE(3);
    if (size > maxSize) throw new AmqpRefusal('PROTOCOL', `a frame of ${size} bytes is larger than ${maxSize}`, { reply: REPLY.FRAME_ERROR, source: side });
    const end = 7 + size + 1;
    if (bytes.length < end) return undefined;
    if (bytes[end - 1] !== FRAME_END) throw new AmqpRefusal('PROTOCOL', `frame-end is 0x${(bytes[end - 1] as number).toString(16)}, not 0xce`, { reply: REPLY.FRAME_ERROR, source: side });
    const raw = bytes.subarray(0, end);
    return { value: { type: raw[0] as number, channel: raw.readUInt16BE(1), payload: raw.subarray(7, end - 1), raw }, consumed: end };
  };
}

/** A method frame's class, method and arguments. */
export function readMethod(payload: Buffer, side: 'client' | 'backend' = 'client'): Method {
  if (payload.length < 4) throw new AmqpRefusal('PROTOCOL', 'a method frame shorter than its class and method ids', { reply: REPLY.SYNTAX_ERROR, source: side });
  return { classId: payload.readUInt16BE(0), methodId: payload.readUInt16BE(2), args: payload.subarray(4) };
}

/** A cursor over method arguments; running out is a syntax error (502). */
export class ArgReader {
  readonly #bytes: Buffer;
  readonly #what: string;
  readonly #side: 'client' | 'backend';
  at = 0;

  constructor(bytes: Buffer, what: string, side: 'client' | 'backend' = 'client') {
    this.#bytes = bytes;
    this.#what = what;
    this.#side = side;
  }

  #need(n: number): void {
    if (this.at + n > this.#bytes.length) throw new AmqpRefusal('PROTOCOL', `${this.#what} is truncated`, { reply: REPLY.SYNTAX_ERROR, source: this.#side });
  }

  octet(): number {
    this.#need(1);
    return this.#bytes[this.at++] as number;
  }

  short(): number {
    this.#need(2);
    const value = this.#bytes.readUInt16BE(this.at);
    this.at += 2;
    return value;
  }

  long(): number {
    this.#need(4);
    const value = this.#bytes.readUInt32BE(this.at);
    this.at += 4;
    return value;
  }

  shortstr(): string {
    const length = this.octet();
    this.#need(length);
    const value = this.#bytes.toString('utf8', this.at, this.at + length);
    this.at += length;
    return value;
  }

  /** A longstr or a field table: 4-byte length and that many bytes. */
  longBytes(): Buffer {
    const length = this.long();
    this.#need(length);
    const value = this.#bytes.subarray(this.at, this.at + length);
    this.at += length;
    return value;
  }

  /** Bytes left unread: methods the proxy reads must have none. */
  end(): void {
    if (this.at !== this.#bytes.length) throw new AmqpRefusal('PROTOCOL', `${this.#what} has ${this.#bytes.length - this.at} bytes after its arguments`, { reply: REPLY.SYNTAX_ERROR, source: this.#side });
  }
}

export interface StartOk {
  readonly mechanism: string;
  readonly locale: string;
}

/** Connection.Start-Ok: client-properties (table), mechanism, response, locale. */
export function readStartOk(args: Buffer): StartOk {
  const r = new ArgReader(args, 'Connection.Start-Ok');
  r.longBytes();
  const mechanism = r.shortstr();
  r.longBytes();
  const locale = r.shortstr();
  r.end();
  return { mechanism, locale };
}

export interface Tune {
  /** 0: no limit. */
  readonly channelMax: number;
  /** 0: no limit. */
  readonly frameMax: number;
  /** Seconds; 0: no heartbeats. */
  readonly heartbeat: number;
}

/** Connection.Tune or Tune-Ok (same arguments). */
export function readTune(args: Buffer, what: string, side: 'client' | 'backend' = 'client'): Tune {
  const r = new ArgReader(args, what, side);
  const channelMax = r.short();
  const frameMax = r.long();
  const heartbeat = r.short();
  r.end();
  return { channelMax, frameMax, heartbeat };
}

/** Connection.Open: virtual-host, reserved shortstr, reserved bit. Returns the virtual host. */
export function readOpen(args: Buffer): string {
  const r = new ArgReader(args, 'Connection.Open');
  const vhost = r.shortstr();
  r.shortstr();
  r.octet();
  r.end();
  return vhost;
}

/** Connection.Start's mechanisms (space-separated longstr), for the backend's. */
export function readStartMechanisms(args: Buffer): readonly string[] {
  const r = new ArgReader(args, 'Connection.Start', 'backend');
  r.octet();
  r.octet();
  r.longBytes();
  const mechanisms = r.longBytes().toString('utf8');
  return mechanisms.split(' ').filter((m) => m !== '');
}

/** Connection.Close: reply code and text (class and method ids follow). */
export function readClose(args: Buffer): { code: number; text: string } {
  const r = new ArgReader(args, 'Connection.Close', 'backend');
  const code = r.short();
  const text = r.shortstr();
  return { code, text };
}

/** A method frame on `channel`. */
export function methodFrame(channel: number, classId: number, methodId: number, args: Buffer): Buffer {
  const out = Buffer.alloc(7 + 4 + args.length + 1);
  out[0] = FRAME_METHOD;
  out.writeUInt16BE(channel, 1);
  out.writeUInt32BE(4 + args.length, 3);
  out.writeUInt16BE(classId, 7);
  out.writeUInt16BE(methodId, 9);
  args.copy(out, 11);
  out[out.length - 1] = FRAME_END;
  return out;
}

export function shortstr(text: string): Buffer {
  let bytes = Buffer.from(text, 'utf8');
  // A shortstr holds at most 255 bytes: cut on a character boundary.
  if (bytes.length > 255) bytes = Buffer.from(bytes.toString('utf8', 0, 255).replace(/\uFFFD$/, ''), 'utf8');
  if (bytes.length > 255) bytes = bytes.subarray(0, 255);
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

export function longstr(bytes: Buffer): Buffer {
  const out = Buffer.alloc(4 + bytes.length);
  out.writeUInt32BE(bytes.length, 0);
  bytes.copy(out, 4);
  return out;
}

/** A field value the proxy writes: a string ('S'), a boolean ('t') or a nested table ('F'). */
export type FieldValue = string | boolean | { readonly [name: string]: FieldValue };

/** A field table (§4.2.5.5). */
export function fieldTable(fields: { readonly [name: string]: FieldValue }): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(fields)) {
    parts.push(shortstr(name));
    if (typeof value === 'string') parts.push(Buffer.from('S'), longstr(Buffer.from(value, 'utf8')));
    else if (typeof value === 'boolean') parts.push(Buffer.from([0x74, value ? 1 : 0]));
    else parts.push(Buffer.from('F'), fieldTable(value));
  }
  return longstr(Buffer.concat(parts));
}

/** Connection.Start: version 0-9, server properties, mechanisms, locales. */
export function startFrame(properties: { readonly [name: string]: FieldValue }, mechanisms: readonly string[], locales: readonly string[]): Buffer {
  const args = Buffer.concat([Buffer.from([0, 9]), fieldTable(properties), longstr(Buffer.from(mechanisms.join(' '))), longstr(Buffer.from(locales.join(' ')))]);
  return methodFrame(0, CONNECTION, START, args);
}

export function tuneFrame(method: typeof TUNE | typeof TUNE_OK, tune: Tune): Buffer {
  const args = Buffer.alloc(8);
  args.writeUInt16BE(tune.channelMax, 0);
  args.writeUInt32BE(tune.frameMax, 2);
  args.writeUInt16BE(tune.heartbeat, 6);
  return methodFrame(0, CONNECTION, method, args);
}

/** Connection.Close on channel 0: reply code, text, and the method that caused it (0, 0 for none). */
export function closeFrame(code: number, text: string, classId = 0, methodId = 0): Buffer {
  const ids = Buffer.alloc(4);
  ids.writeUInt16BE(classId, 0);
  ids.writeUInt16BE(methodId, 2);
  const code2 = Buffer.alloc(2);
  code2.writeUInt16BE(code, 0);
  return methodFrame(0, CONNECTION, CLOSE, Buffer.concat([code2, shortstr(text), ids]));
}
