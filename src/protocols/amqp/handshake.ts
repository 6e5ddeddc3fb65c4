/**
 * The AMQP 0-9-1 listener (RabbitMQ and its clients).
 *
 * identify: TLS from the first byte when the listener has `tls` (amqps),
 * the protocol header, then the proxy runs the connection handshake itself
 * up to Open: it sends its own Connection.Start (SASL PLAIN and AMQPLAIN,
 * RabbitMQ's capabilities), reads Start-Ok, sends Tune with the listener's
 * channelMax / frameMax / heartbeat, reads Tune-Ok, reads Open: the
 * virtual host is the tenant. Nothing is checked about the credentials.
 *
 * replay: to the broker, the protocol header and the client's own Start-Ok
 * (so the broker authenticates the client), its Tune-Ok and its Open; the
 * broker's Start and Tune are consumed. The limits the client agreed with
 * the proxy must hold on the broker too: the proxy's Tune cannot wait for
 * the broker's (the tenant is only named by Open, after Tune), so it
 * offers the listener's values (RabbitMQ's defaults), and a broker whose
 * Tune allows less than the client agreed is refused with 530 NOT_ALLOWED
 * naming the field to lower — the client never sees limits the broker
 * would break. The heartbeat the client chose is the broker's too (the
 * Tune-Ok is replayed as sent). The broker's Open-Ok goes to the client and
 * the relay starts; its Connection.Close (bad credentials, a vhost it does
 * not have or lets this user open) goes to the client as it was sent.
 *
 * relay: bytes.
 */
import type { Socket } from 'node:net';
import { BackendReader } from '../../core/backend-reader.ts';
import type { ClientConnection } from '../../core/client-connection.ts';
import { Deadline } from '../../core/deadline.ts';
import { PolyproxyError } from '../../core/errors.ts';
import type { Opening, ProtocolModule } from '../../core/protocol.ts';
import { packageVersion } from '../../core/version.ts';
import { AmqpRefusal, REPLY, REPLY_CODES, replyText } from './errors.ts';
import {
  CLOSE,
  CLOSE_OK,
  CONNECTION,
  FRAME_HEARTBEAT,
  FRAME_METHOD,
  FRAME_MIN_SIZE,
  OPEN,
  OPEN_OK,
  PROTOCOL_HEADER,
  START,
  START_OK,
  TUNE,
  TUNE_OK,
  frameParser,
  methodFrame,
  parseProtocolHeader,
  readClose,
  readMethod,
  readOpen,
  readStartMechanisms,
  readStartOk,
  readTune,
  startFrame,
  tuneFrame,
  closeFrame,
} from './frames.ts';
import type { Frame, Method, Tune } from './frames.ts';

/** Largest handshake frame accepted from either side (Start-Ok with client properties, the broker's Start). */
export const MAX_HANDSHAKE_FRAME = 128 * 1024;
/** The SASL mechanisms the proxy offers: both send the credentials in Start-Ok, with no challenge to relay. */
export const MECHANISMS = ['PLAIN', 'AMQPLAIN'] as const;

/** RabbitMQ's capabilities (3.x): what clients may rely on once connected. */
const CAPABILITIES = {
  publisher_confirms: true,
  exchange_exchange_bindings: true,
  'basic.nack': true,
  consumer_cancel_notify: true,
  'connection.blocked': true,
  consumer_priorities: true,
  authentication_failure_close: true,
  per_consumer_qos: true,
  direct_reply_to: true,
};

export interface AmqpOptions {
  /** The proxy's Tune: what every client may use at most (0 = no limit). */
  readonly tune: Tune;
  /** Each broker step of the replay (Start, Tune, Open-Ok) must arrive within this long. */
  readonly firstResponseTimeoutMs: number;
}

/** How far the client's handshake got. */
interface HandshakeState {
  /** The proxy sent Connection.Start: failures are answered with Connection.Close. */
  started: boolean;
}

/** The client's frames the broker gets. */
interface Replay {
  readonly startOk: Buffer;
  readonly mechanism: string;
  readonly tuneOk: Buffer;
  readonly agreed: Tune;
  readonly open: Buffer;
}

const readClientFrame = frameParser(MAX_HANDSHAKE_FRAME, 'client');
const readBackendFrame = frameParser(MAX_HANDSHAKE_FRAME, 'backend');

/** The client sent Connection.Close during the handshake: the proxy answers Close-Ok. */
class ClientClosed extends Error {}

const METHOD_NAMES: ReadonlyMap<number, string> = new Map([
  [START, 'connection.start'],
  [START_OK, 'connection.start_ok'],
  [TUNE, 'connection.tune'],
  [TUNE_OK, 'connection.tune_ok'],
  [OPEN, 'connection.open'],
  [OPEN_OK, 'connection.open_ok'],
  [CLOSE, 'connection.close'],
]);

function methodName(method: Method): string {
  return method.classId === CONNECTION ? (METHOD_NAMES.get(method.methodId) ?? `connection.${method.methodId}`) : `method ${method.classId}.${method.methodId}`;
}

export function createAmqpProtocol(options: AmqpOptions): ProtocolModule {
  const states = new WeakMap<ClientConnection, HandshakeState>();
  const replays = new WeakMap<Opening, Replay>();
  const start = startFrame(
    {
      product: 'polyproxy',
      version: packageVersion(),
      platform: `Node.js ${process.version}`,
      information: 'polyproxy: routes AMQP 0-9-1 connections by virtual host',
      capabilities: CAPABILITIES,
    },
    MECHANISMS,
    ['en_US'],
  );
  const offer = options.tune;

  async function identify(conn: ClientConnection): Promise<Opening | null> {
    const state: HandshakeState = { started: false };
    states.set(conn, state);
    if (conn.tlsAvailable) await conn.upgradeToTls({ bufferedIsTls: true });
    await conn.read(parseProtocolHeader);
    conn.write(start);
    state.started = true;
    try {
      const startOkFrame = await expectFrom(conn, START_OK);
      const { mechanism } = readStartOk(startOkFrame.method.args);
      if (!(MECHANISMS as readonly string[]).includes(mechanism)) {
        throw new AmqpRefusal('PROTOCOL', `unknown authentication mechanism '${mechanism}'`, { reply: REPLY.COMMAND_INVALID, classId: CONNECTION, methodId: START_OK });
      }
      conn.write(tuneFrame(TUNE, offer));
      const tuneOkFrame = await expectFrom(conn, TUNE_OK);
      const agreed = readTune(tuneOkFrame.method.args, 'Connection.Tune-Ok');
      const problem = tuneProblem(agreed, offer, 'the proxy');
      if (problem !== null) throw new AmqpRefusal('PROTOCOL', problem, { reply: REPLY.NOT_ALLOWED, classId: CONNECTION, methodId: TUNE_OK });
      const openFrame = await expectFrom(conn, OPEN);
      const vhost = readOpen(openFrame.method.args);
      const certProblem = conn.clientCertProblem();
      if (certProblem !== null) throw new PolyproxyError('TLS_REQUIRED', certProblem, { source: 'client', resourceId: vhost });
      const opening: Opening = { resourceId: vhost, replay: null };
      replays.set(opening, { startOk: startOkFrame.frame.raw, mechanism, tuneOk: tuneOkFrame.frame.raw, agreed, open: openFrame.frame.raw });
      return opening;
    } catch (err) {
      if (!(err instanceof ClientClosed)) throw err;
      conn.write(methodFrame(0, CONNECTION, CLOSE_OK, Buffer.alloc(0)));
      return null;
    }
  }

  async function replay(conn: ClientConnection, backend: Socket, opening: Opening): Promise<void> {
    const client = replays.get(opening);
    if (client === undefined) throw new PolyproxyError('INTERNAL', 'AMQP session state missing');
    const reader = new BackendReader(backend, 'the AMQP handshake');
    const ms = options.firstResponseTimeoutMs;
    const deadline = new Deadline(ms);
    const late = (): PolyproxyError => new PolyproxyError('TIMEOUT', `the broker did not finish its handshake within ${ms} ms`, { source: 'backend', resourceId: opening.resourceId });
    const vhost = opening.resourceId;
    try {
      backend.write(PROTOCOL_HEADER);
      const brokerStart = await deadline.wait(expectFromBroker(reader, START, vhost), late);
      const mechanisms = readStartMechanisms(brokerStart.args);
      if (!mechanisms.includes(client.mechanism)) {
        throw new AmqpRefusal('INTERNAL', `the broker for vhost '${vhost}' does not offer the ${client.mechanism} mechanism (it offers ${mechanisms.join(', ')})`, {
          reply: REPLY.INTERNAL_ERROR,
          source: 'backend',
        });
      }
      backend.write(client.startOk);
      const brokerTune = await deadline.wait(expectFromBroker(reader, TUNE, vhost), late);
      const limits = readTune(brokerTune.args, 'Connection.Tune', 'backend');
      const problem = tuneProblem(effective(client.agreed, offer), limits, 'the broker');
      if (problem !== null) {
        throw new AmqpRefusal('INTERNAL', `${problem}: the listener offers more than the broker for vhost '${vhost}' allows (lower its channelMax / frameMax)`, {
          reply: REPLY.NOT_ALLOWED,
          classId: CONNECTION,
          methodId: TUNE_OK,
          source: 'backend',
        });
      }
      backend.write(client.tuneOk);
      backend.write(client.open);
      const openOk = await deadline.wait(expectFromBroker(reader, OPEN_OK, vhost), late);
      conn.write(methodFrame(0, CONNECTION, OPEN_OK, openOk.args));
      const extra = reader.leftover();
      if (extra !== null) conn.write(extra);
    } finally {
      deadline.clear();
      reader.dispose();
    }
  }

  function encodeError(err: PolyproxyError, vhost: string | undefined, conn?: ClientConnection): Buffer | null {
    const refusal = err instanceof AmqpRefusal ? err : null;
    if (refusal?.frame !== undefined) return refusal.frame;
    if (refusal?.reply === 'header') return PROTOCOL_HEADER;
    const code = refusal === null ? REPLY_CODES[err.kind] : (refusal.reply as number);
    // A failure once the vhost is known (routing, the broker) is about Connection.Open.
    const [classId, methodId] = refusal !== null ? [refusal.classId, refusal.methodId] : vhost !== undefined ? [CONNECTION, OPEN] : [0, 0];
    const close = closeFrame(code, replyText(err, code, vhost), classId, methodId);
    const state = conn === undefined ? undefined : states.get(conn);
    // Before Start a client does not expect a Close: it gets the Start it waits for first.
    return state?.started === true ? close : Buffer.concat([start, close]);
  }

  return { name: 'amqp', identify, replay, encodeError };
}

/** The limits a client agreed: its Tune-Ok's values, where 0 ("no limit") means the offer's. */
function effective(agreed: Tune, offer: Tune): Tune {
  return { channelMax: agreed.channelMax || offer.channelMax, frameMax: agreed.frameMax || offer.frameMax, heartbeat: agreed.heartbeat };
}

/**
 * Why `agreed` breaks the limits `by` set in its Tune (0 = no limit), as
 * RabbitMQ words it, or null.
 */
export function tuneProblem(agreed: Tune, limits: Tune, by: string): string | null {
  if (agreed.frameMax !== 0 && agreed.frameMax < FRAME_MIN_SIZE) return `frame_max=${agreed.frameMax} < ${FRAME_MIN_SIZE} min size`;
  if (limits.frameMax !== 0 && (agreed.frameMax === 0 || agreed.frameMax > limits.frameMax)) return `frame_max=${agreed.frameMax} > ${limits.frameMax} max size of ${by}`;
  if (limits.channelMax !== 0 && (agreed.channelMax === 0 || agreed.channelMax > limits.channelMax)) return `channel_max=${agreed.channelMax} > ${limits.channelMax} max channels of ${by}`;
  return null;
}

/** The client's next connection method, which must be `expected` (heartbeats are skipped). */
async function expectFrom(conn: ClientConnection, expected: number): Promise<{ frame: Frame; method: Method }> {
  while (true) {
    const frame = await conn.read(readClientFrame);
    if (frame.type === FRAME_HEARTBEAT) continue;
    if (frame.type !== FRAME_METHOD) throw new AmqpRefusal('PROTOCOL', `unexpected frame type ${frame.type} during the connection handshake`, { reply: REPLY.UNEXPECTED_FRAME });
    const method = readMethod(frame.payload);
    if (frame.channel !== 0) {
      throw new AmqpRefusal('PROTOCOL', `${methodName(method)} on channel ${frame.channel} before the connection is open`, { reply: REPLY.CHANNEL_ERROR, classId: method.classId, methodId: method.methodId });
    }
    if (method.classId === CONNECTION && method.methodId === CLOSE) throw new ClientClosed();
    if (method.classId !== CONNECTION || method.methodId !== expected) {
      throw new AmqpRefusal('PROTOCOL', `expected '${METHOD_NAMES.get(expected)}', got '${methodName(method)}'`, { reply: REPLY.COMMAND_INVALID, classId: method.classId, methodId: method.methodId });
    }
    return { frame, method };
  }
}

/** The broker's next connection method: `expected`, or its Close (passed to the client as sent). */
async function expectFromBroker(reader: BackendReader, expected: number, vhost: string): Promise<Method> {
  while (true) {
    let frame: Frame;
    try {
      frame = await reader.read(readBackendFrame);
    } catch (err) {
      // RabbitMQ closes without a Close when a login fails and the client did not announce authentication_failure_close.
      if (expected === TUNE && err instanceof PolyproxyError && err.kind === 'BACKEND_UNREACHABLE') {
        throw new AmqpRefusal('FORBIDDEN', `ACCESS_REFUSED - the broker for vhost '${vhost}' closed the connection after the login`, { reply: REPLY.ACCESS_REFUSED, classId: CONNECTION, methodId: START_OK });
      }
      throw err;
    }
    if (frame.type === FRAME_HEARTBEAT) continue;
    if (frame.type !== FRAME_METHOD || frame.channel !== 0) throw new PolyproxyError('PROTOCOL', `the broker sent frame type ${frame.type} on channel ${frame.channel} during the handshake`, { source: 'backend' });
    const method = readMethod(frame.payload, 'backend');
    if (method.classId === CONNECTION && method.methodId === CLOSE) {
      const close = readClose(method.args);
      // The broker's own words (403 ACCESS_REFUSED for bad credentials, 530 NOT_ALLOWED for a vhost it refuses): the client's failure.
      throw new AmqpRefusal(close.code === REPLY.ACCESS_REFUSED || close.code === REPLY.NOT_ALLOWED ? 'FORBIDDEN' : 'UNAVAILABLE', `the broker closed the connection: ${close.code} ${close.text}`, {
        reply: close.code,
        frame: frame.raw,
        source: close.code === REPLY.ACCESS_REFUSED || close.code === REPLY.NOT_ALLOWED ? 'client' : 'backend',
      });
    }
    if (method.classId !== CONNECTION || method.methodId !== expected) {
      throw new PolyproxyError('PROTOCOL', `the broker sent '${methodName(method)}' where '${METHOD_NAMES.get(expected)}' was due`, { source: 'backend' });
    }
    return method;
  }
}
