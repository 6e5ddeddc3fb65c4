/**
 * The MQTT listener (3.1, 3.1.1 and 5.0 clients and brokers).
 *
 * identify: TLS from the first byte when the listener has `tls` (MQTT over
 * TLS has no STARTTLS), then the CONNECT; the tenant is its user name
 * (`routeBy: username`) or its client identifier up to the first separator
 * (`routeBy: clientIdPrefix`). A CONNECT that names no tenant is refused
 * with the version's CONNACK (not authorized; client identifier not valid).
 *
 * replay: the CONNECT goes to the broker as received (user name, password,
 * will and properties untouched: the broker authenticates the client), and
 * the broker's first packet (its CONNACK, or an AUTH of MQTT 5 enhanced
 * authentication) must come back within `firstResponseTimeoutMs`; it goes
 * to the client and the relay starts with whatever the client pipelined
 * after its CONNECT.
 *
 * relay: bytes; PUBLISH packets of any size pass untouched.
 */
import type { Socket } from 'node:net';
import { BackendReader } from '../../core/backend-reader.ts';
import type { ClientConnection } from '../../core/client-connection.ts';
import { within } from '../../core/deadline.ts';
import { PolyproxyError } from '../../core/errors.ts';
import type { Opening, ProtocolModule } from '../../core/protocol.ts';
import { MqttRefusal, encodeFailure } from './errors.ts';
import { MAX_CONNECT_BYTES, parseConnect, readVarint } from './parse.ts';
import type { ConnectPacket } from './parse.ts';

export interface MqttOptions {
  readonly routeBy: 'username' | 'clientIdPrefix';
  /** With clientIdPrefix: what ends the tenant in the client identifier. */
  readonly separator: string;
  /** The broker's first packet must arrive within this long after the CONNECT is replayed. */
  readonly firstResponseTimeoutMs: number;
}

/** What the proxy knows of a client's CONNECT, for its CONNACKs. */
interface Session {
  readonly level: number;
  readonly maxPacketSize: number | undefined;
  readonly connect: ConnectPacket;
}

export function createMqttProtocol(options: MqttOptions): ProtocolModule {
  const sessions = new WeakMap<ClientConnection, Session>();

  async function identify(conn: ClientConnection): Promise<Opening> {
    if (conn.tlsAvailable) await conn.upgradeToTls({ bufferedIsTls: true });
    const connect = await conn.read(parseConnect);
    sessions.set(conn, { level: connect.level, maxPacketSize: connect.maxPacketSize, connect });
    const tenant = tenantOf(connect, options);
    const certProblem = conn.clientCertProblem();
    if (certProblem !== null) throw new PolyproxyError('TLS_REQUIRED', certProblem, { source: 'client', resourceId: tenant });
    return { resourceId: tenant, replay: connect.raw };
  }

  async function replay(conn: ClientConnection, backend: Socket, opening: Opening): Promise<void> {
    const replayed = opening.replay;
    if (replayed === null) throw new PolyproxyError('INTERNAL', 'MQTT session state missing');
    const reader = new BackendReader(backend, 'the CONNECT');
    try {
      backend.write(replayed);
      const ms = options.firstResponseTimeoutMs;
      const answer = await within(reader.read(parseBrokerPacket), ms, () => new PolyproxyError('TIMEOUT', `the broker did not answer the CONNECT within ${ms} ms`, { source: 'backend', resourceId: opening.resourceId }));
      conn.write(answer);
      const extra = reader.leftover();
      if (extra !== null) conn.write(extra);
    } finally {
      reader.dispose();
    }
  }

  function encodeError(err: PolyproxyError, tenant: string | undefined, conn?: ClientConnection): Buffer | null {
    const session = conn === undefined ? undefined : sessions.get(conn);
    return encodeFailure(err, tenant, session?.level, session?.maxPacketSize);
  }

  return { name: 'mqtt', identify, replay, encodeError };
}

/** The tenant a CONNECT names, or the version's refusal. */
export function tenantOf(connect: ConnectPacket, options: Pick<MqttOptions, 'routeBy' | 'separator'>): string {
  if (options.routeBy === 'username') {
    if (connect.username === undefined || connect.username === '') {
      throw new MqttRefusal('FORBIDDEN', 'a user name is required: it names the tenant', { level: connect.level, v3: 0x05, v5: 0x87 });
    }
    return connect.username;
  }
  const end = connect.clientId.indexOf(options.separator);
  if (end <= 0) {
    throw new MqttRefusal('FORBIDDEN', `the client identifier must start with the tenant and "${options.separator}"`, { level: connect.level, v3: 0x02, v5: 0x85 });
  }
  return connect.clientId.slice(0, end);
}

/** The broker's first packet, whole (CONNACK, or AUTH for enhanced authentication). */
export function parseBrokerPacket(bytes: Buffer): { value: Buffer; consumed: number } | undefined {
  const type = (bytes[0] as number) >> 4;
  if (type !== 2 && type !== 15) throw new PolyproxyError('PROTOCOL', `the broker answered the CONNECT with packet type ${type}`, { source: 'backend' });
  let length: { value: number; length: number } | undefined;
  try {
    length = readVarint(bytes, 1, undefined);
  } catch (err) {
    throw new PolyproxyError('PROTOCOL', `the broker's answer is malformed: ${(err as Error).message}`, { source: 'backend' });
  }
  if (length === undefined) return undefined;
  if (length.value > MAX_CONNECT_BYTES) throw new PolyproxyError('PROTOCOL', `the broker's answer of ${length.value} bytes is too large`, { source: 'backend' });
  const end = 1 + length.length + length.value;
  return bytes.length < end ? undefined : { value: bytes.subarray(0, end), consumed: end };
}
