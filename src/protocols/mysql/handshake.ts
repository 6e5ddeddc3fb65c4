/**
 * The MySQL listener (MySQL and MariaDB servers and clients).
 *
 * identify: the proxy sends its own greeting (the backend is not known
 * yet), terminates TLS when the client asks with an SSLRequest, and reads
 * the HandshakeResponse41; the resource id is its database, else the user.
 *
 * replay: reads the backend's greeting and sends the client an
 * AuthSwitchRequest carrying the backend's plugin and challenge, so the
 * client computes its answer for the real server; that answer goes to the
 * backend inside a HandshakeResponse built for it (the client's user,
 * database, character set, attributes; no SSL or compression on the
 * plaintext proxy→backend leg). The rest of the authentication exchange is
 * relayed packet by packet with sequence ids mapped between the two legs,
 * until the backend's OK (the relay starts) or ERR (passed to the client).
 *
 * relay: bytes, through a UseGuard that refuses switching to a database
 * routed to another backend.
 */
import { BackendReader } from '../../core/backend-reader.ts';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { ClientConnection } from '../../core/client-connection.ts';
import { Deadline } from '../../core/deadline.ts';
import { PolyproxyError } from '../../core/errors.ts';
import type { Opening, ProtocolModule, ProtocolSession } from '../../core/protocol.ts';
import type { RouteDecision } from '../../core/router.ts';
import type { Logger } from '../../core/logger.ts';
import { parseEndpoint } from '../../core/endpoint.ts';
import { ReplicaSet } from '../../core/rw-split/replica-set.ts';
import { replicaSetFor } from '../../core/rw-split/registry.ts';
import { MysqlReplyError, encodeFailure } from './errors.ts';
import {
  AUTH_MORE_DATA_HEADER,
  AUTH_SWITCH_HEADER,
  CLIENT_PLUGIN_AUTH,
  CLIENT_SSL,
  ERR_HEADER,
  NATIVE_PASSWORD,
  OK_HEADER,
  PROXY_CAPABILITIES,
  SCRAMBLE_LENGTH,
  buildAuthSwitchRequest,
  buildGreeting,
  buildHandshakeResponse,
  encodePacket,
  errPacket,
  packetParser,
  parseErr,
  parseGreeting,
  parseHandshakeResponse,
} from './packets.ts';
import type { HandshakeResponse, Packet } from './packets.ts';
import { UseGuard } from './use-guard.ts';
import { backendCapabilities } from './capabilities.ts';
import type { MysqlAuthConfig, MysqlReadWriteSplit } from './config.ts';
import { okStatus } from './split/backend-session.ts';
import { mysqlLagProbe } from './split/lag-probe.ts';
import { SplitSession } from './split/session.ts';
import { MysqlClientAuth } from './auth/client-auth.ts';
import { loginToBackend } from './auth/backend-login.ts';

export { backendCapabilities };

/** Largest handshake packet accepted from either side (attributes, RSA-encrypted passwords fit easily). */
export const MAX_HANDSHAKE_PAYLOAD = 64 * 1024;
/** What the listener lets a client buffer during its opening. */
export const MAX_OPENING_BYTES = MAX_HANDSHAKE_PAYLOAD + 8 * 1024;
export const DEFAULT_SERVER_VERSION = '8.0.0-polyproxy';

const UTF8MB4_GENERAL_CI = 45;
const SERVER_STATUS_AUTOCOMMIT = 0x0002;

export interface MysqlOptions {
  /** Time the client and backend get for the authentication exchange after routing. */
  readonly handshakeTimeoutMs: number;
  /** The version the proxy's greeting announces (drivers may adapt to it). */
  readonly serverVersion?: string;
  /** Proxy-side authentication: the proxy checks the client's password and logs in to the backend as `backendUser`. */
  readonly auth?: MysqlAuthConfig;
  /** The read/write split (needs `auth`): routes with replicas get a SplitSession. */
  readonly split?: { readonly listener: string; readonly settings: MysqlReadWriteSplit; readonly connectTimeoutMs: number; readonly idleTimeoutMs: number; readonly log: Logger };
}

/** How far a client's handshake got: the sequence id the proxy's next packet must carry. */
interface HandshakeState {
  nextSeq: number;
}

interface SessionStart {
  readonly response: HandshakeResponse;
}

const readClientPacket = packetParser(MAX_HANDSHAKE_PAYLOAD);
const readBackendPacket = packetParser(MAX_HANDSHAKE_PAYLOAD, 'backend');

export function createMysqlProtocol(options: MysqlOptions): ProtocolModule {
  const handshakes = new WeakMap<ClientConnection, HandshakeState>();
  const starts = new WeakMap<Opening, SessionStart>();
  const serverVersion = options.serverVersion ?? DEFAULT_SERVER_VERSION;
  const clientAuth = options.auth === undefined ? null : new MysqlClientAuth(options.auth);

  async function identify(conn: ClientConnection, session?: ProtocolSession): Promise<Opening | null> {
    const state: HandshakeState = { nextSeq: 1 };
    handshakes.set(conn, state);
    const capabilities = (PROXY_CAPABILITIES | (conn.tlsAvailable ? CLIENT_SSL : 0)) >>> 0;
    const scramble = makeScramble();
    conn.write(
      encodePacket(
        0,
        buildGreeting({
          serverVersion,
          // The backend's thread id is not known yet; 0 makes a client's `KILL <id>` fail instead of hitting another session.
          connectionId: 0,
          capabilities,
          charset: UTF8MB4_GENERAL_CI,
          status: SERVER_STATUS_AUTOCOMMIT,
          scramble,
          plugin: clientAuth === null ? NATIVE_PASSWORD : clientAuth.plugin,
        }),
      ),
    );
    let packet = await readFrom(conn, state, 1);
    let answer = parseHandshakeResponse(packet.payload);
    if (answer.type === 'ssl') {
      if (!conn.tlsAvailable) throw new PolyproxyError('PROTOCOL', 'SSL was not offered by this listener', { source: 'client' });
      // The client does not wait for an answer: bytes after the SSLRequest are its ClientHello.
      await conn.upgradeToTls({ bufferedIsTls: true });
      packet = await readFrom(conn, state, 2);
      answer = parseHandshakeResponse(packet.payload);
      if (answer.type === 'ssl') throw new PolyproxyError('PROTOCOL', 'duplicate SSL request', { source: 'client' });
    }
    const response = answer;
    const resourceId = response.database !== '' ? response.database : response.user;
    if (resourceId === '') throw new PolyproxyError('PROTOCOL', 'no database or user name to route by', { source: 'client' });
    const certProblem = conn.clientCertProblem();
    if (certProblem !== null) throw new PolyproxyError('TLS_REQUIRED', certProblem, { source: 'client', resourceId });
    if ((response.capabilities & CLIENT_PLUGIN_AUTH) === 0) {
      // The backend's challenge reaches the client through an AuthSwitchRequest, which needs pluggable auth.
      throw new PolyproxyError('PROTOCOL', 'the client must support pluggable authentication (CLIENT_PLUGIN_AUTH)', { source: 'client', resourceId });
    }
    if (clientAuth !== null) {
      await clientAuth.authenticate(
        conn,
        response,
        scramble,
        {
          send: (payload) => {
            conn.write(encodePacket(state.nextSeq, payload));
            state.nextSeq = (state.nextSeq + 1) & 0xff;
          },
          read: () => readFrom(conn, state, state.nextSeq),
        },
        () => state.nextSeq,
      );
    }
    let decision: RouteDecision | undefined;
    if (options.split !== undefined && options.auth !== undefined && session !== undefined) {
      decision = await session.router.route(resourceId, session.resolveContext());
      const replicas = decision.entry.route.replicas;
      if (replicas !== undefined && replicas.length > 0) {
        await serveSplit(conn, session, state, response, decision, replicas, options.split, options.auth);
        return null;
      }
    }
    const guard = new UseGuard(response.capabilities);
    const opening: Opening = {
      resourceId,
      replay: null,
      clientFilter: guard,
      onConnected: (endpoint, lookup) => guard.connected(endpoint, lookup),
      ...(decision === undefined ? {} : { decision }),
    };
    starts.set(opening, { response });
    return opening;
  }

  /**
   * A route with replicas under `readWriteSplit`: the proxy logs in to the
   * primary, answers the client with its OK, and serves the session itself
   * (split/session.ts) until the client leaves.
   */
  async function serveSplit(
    conn: ClientConnection,
    session: ProtocolSession,
    state: HandshakeState,
    response: HandshakeResponse,
    decision: RouteDecision,
    replicas: readonly string[],
    split: NonNullable<MysqlOptions['split']>,
    auth: MysqlAuthConfig,
  ): Promise<void> {
    const resourceId = decision.entry.resourceId;
    const set = replicaSetFor(
      { listener: split.listener, route: resourceId, replicas },
      () => new ReplicaSet({ listener: split.listener, route: resourceId, replicas, settings: { ...split.settings, readOnlyFunctions: [] }, probe: mysqlLagProbe(auth.backendUser, Math.max(options.handshakeTimeoutMs, 1000)), log: split.log }),
    );
    for (const r of replicas) parseEndpoint(r); // a bad endpoint fails this client, not the session later
    // The tenant's limits (core/limits), as for a relayed session.
    await session.admit(resourceId, decision.entry);
    const connected = await session.router.connect(decision, decision.entry.route.timeoutMs ?? split.connectTimeoutMs);
    const backend = connected.socket;
    const reader = new BackendReader(backend, 'the handshake');
    const deadline = new Deadline(options.handshakeTimeoutMs);
    const late = (): PolyproxyError => new PolyproxyError('BACKEND_UNREACHABLE', `the backend did not finish its handshake within ${options.handshakeTimeoutMs} ms`);
    let ok: Buffer;
    try {
      ok = await loginToBackend(backend, reader, deadline, late, response, auth.backendUser, state.nextSeq);
    } catch (err) {
      backend.destroy();
      throw err;
    } finally {
      deadline.clear();
      reader.dispose();
    }
    session.router.health?.answered(connected.endpoint, null);
    if (conn.closed) {
      backend.destroy();
      return;
    }
    session.takeOver();
    conn.write(encodePacket(state.nextSeq, ok));
    const { socket, leftover } = conn.detach();
    const ctx = session.resolveContext();
    const split_ = new SplitSession({
      listener: split.listener,
      client: socket,
      leftover,
      handshake: response,
      primary: { socket: backend, endpoint: connected.endpoint, status: okStatus(ok) === -1 ? SERVER_STATUS_AUTOCOMMIT : okStatus(ok) },
      replicas: set,
      credentials: auth.backendUser,
      readAfterWriteMs: split.settings.readAfterWriteMs,
      connectTimeoutMs: split.connectTimeoutMs,
      loginTimeoutMs: options.handshakeTimeoutMs,
      idleTimeoutMs: split.idleTimeoutMs,
      lookup: (id) => session.router.route(id, ctx).then((d) => d.entry.endpoints),
      log: split.log,
    });
    session.served(resourceId);
    session.onDrain(split_);
    await split_.done;
  }

  async function replay(conn: ClientConnection, backend: Socket, opening: Opening): Promise<void> {
    const state = handshakes.get(conn);
    const start = starts.get(opening);
    if (state === undefined || start === undefined) throw new PolyproxyError('INTERNAL', 'MySQL session state missing');
    const client = start.response;
    const reader = new BackendReader(backend, 'the handshake');
    const deadline = new Deadline(options.handshakeTimeoutMs);
    const backendLate = (): PolyproxyError => new PolyproxyError('BACKEND_UNREACHABLE', `the backend did not finish its handshake within ${options.handshakeTimeoutMs} ms`);
    const clientLate = (): PolyproxyError => new PolyproxyError('HANDSHAKE_TIMEOUT', `client did not finish authenticating within ${options.handshakeTimeoutMs} ms`, { source: 'client' });
    try {
      if (options.auth !== undefined) {
        // The client is authenticated already: the proxy logs in as backendUser and the client gets the server's OK.
        const ok = await loginToBackend(backend, reader, deadline, backendLate, client, options.auth.backendUser, state.nextSeq);
        conn.write(encodePacket(state.nextSeq, ok));
        state.nextSeq = (state.nextSeq + 1) & 0xff;
        const extra = reader.leftover();
        if (extra !== null) conn.write(extra);
        return;
      }
      const first = await deadline.wait(reader.read(readBackendPacket), backendLate);
      if (first.payload[0] === ERR_HEADER) {
        // e.g. "Host is blocked" or "Too many connections", sent instead of a greeting.
        const info = parseErr(first.payload);
        const packet = errPacket(state.nextSeq, info.code, info.sqlState ?? (info.code === 1040 ? '08004' : 'HY000'), info.message);
        throw new MysqlReplyError('UNAVAILABLE', `backend refused the connection: ${info.code} ${info.message}`, packet, { source: 'backend' });
      }
      const greeting = parseGreeting(first.payload);
      const capabilities = backendCapabilities(client, greeting);
      const plugin = greeting.plugin !== '' ? greeting.plugin : NATIVE_PASSWORD;

      // The client answers the backend's real challenge.
      const switchSeq = state.nextSeq;
      conn.write(encodePacket(switchSeq, buildAuthSwitchRequest(plugin, greeting.scramble)));
      state.nextSeq = switchSeq + 1;
      const authAnswer = await deadline.wait(readFrom(conn, state, (switchSeq + 1) & 0xff), clientLate);
      backend.write(
        encodePacket(
          1,
          buildHandshakeResponse({
            capabilities,
            maxPacket: client.maxPacket,
            charset: client.charset,
            user: client.user,
            authResponse: authAnswer.payload,
            database: client.database,
            plugin,
            rawAttributes: client.rawAttributes,
          }),
        ),
      );
      // Backend packet n is client packet n + offset, both ways, until the login ends.
      const offset = authAnswer.seq - 1;
      while (true) {
        const packet = await deadline.wait(reader.read(readBackendPacket), backendLate);
        const seq = (packet.seq + offset) & 0xff;
        const header = packet.payload[0];
        if (header === ERR_HEADER) {
          // The server's own refusal (wrong password, unknown database...), as it said it.
          const info = parseErr(packet.payload);
          throw new MysqlReplyError('FORBIDDEN', `backend refused the login: ${info.code} ${info.message}`, encodePacket(seq, packet.payload), { source: 'client' });
        }
        if (header !== OK_HEADER && header !== AUTH_SWITCH_HEADER && header !== AUTH_MORE_DATA_HEADER) {
          // Not a login answer (OK, ERR, AuthSwitchRequest, AuthMoreData): the backend is broken, not the client;
          // the client gets "cannot connect" and the endpoint's breaker counts it (issue 16, #5).
          throw new PolyproxyError('BACKEND_UNREACHABLE', `the backend answered the login with a packet that is no login answer (header 0x${(header ?? 0).toString(16)})`, { source: 'backend' });
        }
        conn.write(encodePacket(seq, packet.payload));
        state.nextSeq = (seq + 1) & 0xff;
        if (header === OK_HEADER) break;
        // caching_sha2_password's "fast auth success": the OK follows without a client answer.
        if (header === AUTH_MORE_DATA_HEADER && packet.payload.length === 2 && packet.payload[1] === 0x03) continue;
        // AuthSwitchRequest or AuthMoreData: the client answers.
        const reply = await deadline.wait(readFrom(conn, state, state.nextSeq), clientLate);
        backend.write(encodePacket((reply.seq - offset) & 0xff, reply.payload));
      }
      const extra = reader.leftover();
      if (extra !== null) conn.write(extra);
    } finally {
      deadline.clear();
      reader.dispose();
    }
  }

  function encodeError(err: PolyproxyError, resourceId: string | undefined, conn?: ClientConnection): Buffer | null {
    if (err instanceof MysqlReplyError) return err.packet;
    const state = conn === undefined ? undefined : handshakes.get(conn);
    // Without a greeting sent (e.g. too many connections) the ERR takes the greeting's place: sequence 0, no SQLSTATE.
    if (state === undefined) return encodeFailure(err, resourceId, 0, false);
    return encodeFailure(err, resourceId, state.nextSeq, true);
  }

  // The client still has to answer the backend's challenge: a FIN before that ends the session.
  return { name: 'mysql', identify, encodeError, replay, finEndsOpening: true };
}

/** Reads one client packet and checks its sequence id. */
async function readFrom(conn: ClientConnection, state: HandshakeState, expected: number): Promise<Packet> {
  const packet = await conn.read(readClientPacket);
  state.nextSeq = (packet.seq + 1) & 0xff;
  if (packet.seq !== expected) throw new PolyproxyError('PROTOCOL', `packets out of order: expected sequence id ${expected}, got ${packet.seq}`, { source: 'client' });
  return packet;
}

/** A scramble for the proxy's own greeting: the client's answer to it is discarded. */
function makeScramble(): Buffer {
  const bytes = randomBytes(SCRAMBLE_LENGTH);
  for (let i = 0; i < bytes.length; i++) bytes[i] = ((bytes[i] as number) % 94) + 33; // printable, never NUL
  return bytes;
}
