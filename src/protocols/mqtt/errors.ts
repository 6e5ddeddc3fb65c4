/**
 * Failures as CONNACK packets with the client's version's code, so MQTT.js,
 * mosquitto_pub and the rest report "not authorized" or "server
 * unavailable" instead of "connection closed".
 *
 * MQTT 3.1.1 §3.2.2.3 return codes: 0x01 unacceptable protocol version,
 * 0x02 identifier rejected, 0x03 server unavailable, 0x04 bad user name or
 * password, 0x05 not authorized. MQTT 5.0 §3.2.2.2 reason codes: 0x80
 * unspecified, 0x81 malformed packet, 0x82 protocol error, 0x84
 * unsupported protocol version, 0x85 client identifier not valid, 0x87 not
 * authorized, 0x88 server unavailable, 0x89 server busy, 0x95 packet too
 * large. A 5.0 CONNACK also carries a Reason String (0x1F) with the text,
 * unless that would pass the client's Maximum Packet Size.
 *
 * 0x8B "Server shutting down" is a DISCONNECT reason code (5.0 §3.14.2.1),
 * not a CONNACK one: a client whose CONNECT was not yet answered must get
 * a CONNACK first ([MQTT-3.2.0-1]), so the drain answers 0x88 (3.1.1:
 * 0x03) with the text "the proxy is shutting down".
 */
import { PolyproxyError } from '../../core/errors.ts';
import type { FailureKind, FailureSource } from '../../core/errors.ts';

const CONNACK = 0x20;

/** 3.1.1 return code (null: close without a CONNACK) and 5.0 reason code per failure kind. */
export const CONNACK_CODES: Readonly<Record<FailureKind, { readonly v3: number | null; readonly v5: number }>> = {
  NOT_FOUND: { v3: 0x05, v5: 0x87 }, //           not authorized: no tenant of that name here
  FORBIDDEN: { v3: 0x05, v5: 0x87 },
  UNAVAILABLE: { v3: 0x03, v5: 0x88 }, //          server unavailable
  TIMEOUT: { v3: 0x03, v5: 0x88 },
  BACKEND_UNREACHABLE: { v3: 0x03, v5: 0x88 },
  TOO_MANY: { v3: 0x03, v5: 0x89 }, //             server busy
  LIMITED: { v3: 0x03, v5: 0x97 }, //              quota exceeded: a tenant limit
  SHUTTING_DOWN: { v3: 0x03, v5: 0x88 }, //        see above: 0x8B is not a CONNACK code
  TLS_REQUIRED: { v3: 0x05, v5: 0x87 },
  INTERNAL: { v3: 0x03, v5: 0x80 }, //             unspecified error
  PROTOCOL: { v3: null, v5: 0x82 }, //             protocol error; 3.1.1 closes ([MQTT-4.8.0-1])
  HANDSHAKE_TIMEOUT: { v3: null, v5: 0x82 }, //    no CONNECT in time: nothing to answer (see encodeFailure)
};

/**
 * A refusal whose CONNACK code is not the kind's default (client identifier
 * not valid, malformed packet, unsupported version...), with the protocol
 * level when the proxy knows it.
 */
export class MqttRefusal extends PolyproxyError {
  /** 3, 4 or 5 when known from the CONNECT. */
  readonly level: number | undefined;
  readonly v3: number | null;
  readonly v5: number;

  constructor(kind: FailureKind, message: string, codes: { level: number | undefined; v3: number | null; v5: number }, options: { source?: FailureSource; resourceId?: string } = {}) {
    super(kind, message, { source: options.source ?? 'client', ...(options.resourceId === undefined ? {} : { resourceId: options.resourceId }) });
    this.name = 'MqttRefusal';
    this.level = codes.level;
    this.v3 = codes.v3;
    this.v5 = codes.v5;
  }
}

/** A 3.1/3.1.1 CONNACK: session present 0, the return code. */
export function connack3(code: number): Buffer {
  return Buffer.from([CONNACK, 2, 0, code]);
}

/**
 * A 5.0 CONNACK: session present 0, the reason code, and a Reason String
 * property when it fits in `maxPacketSize` (the client's limit, if any).
 */
export function connack5(code: number, reason: string | undefined, maxPacketSize: number | undefined): Buffer {
  const limit = maxPacketSize ?? Infinity;
  if (reason !== undefined && reason !== '') {
    let text = Buffer.from(reason, 'utf8');
    // A Reason String is a UTF-8 string: at most 65,535 bytes, cut on a character boundary.
    if (text.length > 1024) text = Buffer.from(text.toString('utf8', 0, 1024).replace(/\uFFFD$/, ''), 'utf8');
    const props = 3 + text.length;
    const remaining = 2 + varintLength(props) + props;
    const total = 1 + varintLength(remaining) + remaining;
    if (total <= limit) {
      const out = Buffer.alloc(total);
      let at = 0;
      out[at++] = CONNACK;
      at = writeVarint(out, at, remaining);
      out[at++] = 0;
      out[at++] = code;
      at = writeVarint(out, at, props);
      out[at++] = 0x1f;
      out.writeUInt16BE(text.length, at);
      text.copy(out, at + 2);
      return out;
    }
  }
  return Buffer.from([CONNACK, 3, 0, code, 0]);
}

/** What the client hears about a failure: a CONNACK in its version, or nothing (null: close). */
export function encodeFailure(err: PolyproxyError, tenant: string | undefined, level: number | undefined, maxPacketSize: number | undefined): Buffer | null {
  const refusal = err instanceof MqttRefusal ? err : null;
  const codes = refusal ?? CONNACK_CODES[err.kind];
  const known = refusal?.level ?? level;
  if (known === 5) return connack5(codes.v5, reasonText(err, tenant), maxPacketSize);
  if (known === undefined && (err.kind === 'PROTOCOL' || err.kind === 'HANDSHAKE_TIMEOUT')) return null; // no CONNECT read: nothing to answer
  // A 3.1/3.1.1 client, or one refused before its CONNECT was read (too many connections, drain):
  // the 4-byte form, which MQTT.js and mosquitto read in either version.
  return codes.v3 === null ? null : connack3(codes.v3);
}

function reasonText(err: PolyproxyError, tenant: string | undefined): string {
  const who = tenant === undefined ? 'the tenant' : `tenant "${tenant}"`;
  switch (err.kind) {
    case 'NOT_FOUND':
      return `${who} is not routed by this proxy`;
    case 'FORBIDDEN':
      return `access to ${who} is forbidden`;
    case 'UNAVAILABLE':
    case 'TIMEOUT':
      return `${who} is unavailable right now, try again later`;
    case 'BACKEND_UNREACHABLE':
      return `cannot reach the broker for ${who}`;
    case 'TOO_MANY':
      return 'too many connections';
    case 'LIMITED':
      return `${who} is over its limit: ${err.message}`;
    case 'SHUTTING_DOWN':
      return 'the proxy is shutting down';
    case 'TLS_REQUIRED':
      return `connection to ${who} refused: ${err.message}`;
    case 'INTERNAL':
      return `internal proxy error while connecting to ${who}`;
    case 'PROTOCOL':
    case 'HANDSHAKE_TIMEOUT':
      return err.message;
  }
}

function varintLength(value: number): number {
  return value < 128 ? 1 : value < 16384 ? 2 : value < 2097152 ? 3 : 4;
}

function writeVarint(out: Buffer, at: number, value: number): number {
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    out[at++] = byte;
  } while (value > 0);
  return at;
}
