/**
 * The Redis listener (RESP2 and RESP3).
 *
 * identify: with `tls` the proxy terminates TLS first (Redis TLS starts with
 * the ClientHello, no STARTTLS). Then:
 * - routeBy: user — the proxy reads commands until it learns the ACL user:
 *   `AUTH <user> <pass>` or `HELLO <ver> AUTH <user> <pass> [SETNAME <name>]`.
 *   Until then it answers itself, as a Redis 7 server would:
 *     PING [msg]  → +PONG (or the message as a bulk string);
 *     HELLO [2|3] [SETNAME n] without AUTH → the HELLO map (RESP2 array or
 *                 RESP3 map) of the requested protocol, see helloReply;
 *     QUIT        → +OK, and the connection closes;
 *     AUTH <pass> (no user) → -ERR: a password alone names no tenant;
 *     anything else → -NOAUTH Authentication required.
 *   The proxy routes the user itself before committing to it: a user
 *   nothing routes (or the resolver forbids) gets -WRONGPASS and the client
 *   may AUTH again, as with Redis; other routing failures close with -ERR.
 * - routeBy: sni — the resource id is the TLS server name; nothing is read,
 *   every command (AUTH included) goes to the backend as sent.
 *
 * replay: the backend authenticates the client. The routing command goes to
 * the backend re-encoded as a RESP array, and the backend's reply goes to
 * the client — the real +OK, -WRONGPASS, or HELLO map. When the proxy had
 * answered a HELLO itself (protocol 3, or a SETNAME), the backend must get
 * that protocol too: the AUTH is replayed as `HELLO <ver> AUTH <user>
 * <pass> [SETNAME <name>]`, and the client, which sent AUTH, gets `+OK` for
 * the backend's map (or the backend's error as sent). Commands the client
 * pipelined after the AUTH follow in order (core writes them after replay),
 * so their replies come after the AUTH's. After that the session is a byte
 * relay: SELECT, MULTI/EXEC, pub/sub, blocking commands and later AUTHs go
 * to the backend untouched (a later AUTH as another user authenticates on
 * the same backend, whose ACL decides).
 */
import type { Socket } from 'node:net';
import { BackendReader } from '../../core/backend-reader.ts';
import type { ClientConnection } from '../../core/client-connection.ts';
import { within } from '../../core/deadline.ts';
import { PolyproxyError, toPolyproxyError } from '../../core/errors.ts';
import type { Opening, ProtocolModule, ProtocolSession } from '../../core/protocol.ts';
import type { RouteDecision } from '../../core/router.ts';
import { NOAUTH, WRONGPASS, encodeError } from './errors.ts';
import { commandParser, encodeCommand, parseInteger, replyParser } from './resp.ts';

export interface RedisOptions {
  readonly routeBy: 'user' | 'sni';
  /** Time the backend gets to answer the replayed AUTH / HELLO. */
  readonly replayTimeoutMs: number;
}

/**
 * The `version` the proxy's own HELLO answer announces (before the backend
 * is known): the Redis 7.0 command set the proxy's answers follow. The
 * backend's real version is in its own HELLO reply, which a client gets by
 * sending HELLO again once authenticated.
 */
export const HELLO_VERSION = '7.0.0';

/** What identify learnt, for replay. */
interface SessionStart {
  /** The command the backend gets first. */
  readonly command: Buffer;
  /** The client sent AUTH but the backend gets HELLO: its map reply becomes +OK. */
  readonly answerOk: boolean;
}

const OK = Buffer.from('+OK\r\n');

/** A HELLO the proxy answered itself: the protocol and name the backend must be given later. */
interface LocalHello {
  proto: 2 | 3;
  setname: Buffer | null;
}

/** The parsed arguments of HELLO; `error` is the reply line Redis 7 gives for bad ones. */
type HelloArgs = { proto: 2 | 3 | null; auth: [Buffer, Buffer] | null; setname: Buffer | null } | { error: string };

/** HELLO [protover [AUTH username password] [SETNAME clientname]], checked as Redis 7's helloCommand does. */
export function parseHello(args: readonly Buffer[]): HelloArgs {
  let proto: 2 | 3 | null = null;
  let auth: [Buffer, Buffer] | null = null;
  let setname: Buffer | null = null;
  if (args.length >= 2) {
    const version = args[1] as Buffer;
    const ver = parseInteger(version, 0, version.length);
    if (ver === null) return { error: '-ERR Protocol version is not an integer or out of range' };
    if (ver < 2 || ver > 3) return { error: '-NOPROTO unsupported protocol version' };
    proto = ver === 2 ? 2 : 3;
  }
  for (let i = 2; i < args.length; i++) {
    const option = (args[i] as Buffer).toString('latin1');
    const more = args.length - i - 1;
    if (option.toLowerCase() === 'auth' && more >= 2) {
      auth = [args[i + 1] as Buffer, args[i + 2] as Buffer];
      i += 2;
    } else if (option.toLowerCase() === 'setname' && more >= 1) {
      setname = args[i + 1] as Buffer;
      i += 1;
    } else {
      return { error: `-ERR Syntax error in HELLO option '${option.replace(/[^\x20-\x7e]/g, '?')}'` };
    }
  }
  return { proto, auth, setname };
}

function bulk(text: string): string {
  return `$${Buffer.byteLength(text)}\r\n${text}\r\n`;
}

/**
 * The HELLO reply Redis 7 sends (server, version, proto, id, mode, role,
 * modules): a flat array of 14 in RESP2, a map of 7 in RESP3. `id` is the
 * proxy's connection number (the backend's client id is unknown until it
 * is connected).
 */
export function helloReply(proto: 2 | 3, id: number): Buffer {
  const pairs =
    bulk('server') + bulk('redis') + bulk('version') + bulk(HELLO_VERSION) + bulk('proto') + `:${proto}\r\n` + bulk('id') + `:${id}\r\n` + bulk('mode') + bulk('standalone') + bulk('role') + bulk('master') + bulk('modules') + '*0\r\n';
  return Buffer.from((proto === 3 ? '%7\r\n' : '*14\r\n') + pairs);
}

/** The reply to PING before authentication. */
function pingReply(args: readonly Buffer[]): Buffer {
  if (args.length === 1) return Buffer.from('+PONG\r\n');
  const message = args[1] as Buffer;
  return Buffer.concat([Buffer.from(`$${message.length}\r\n`), message, Buffer.from('\r\n')]);
}

/** The routing refusals a Redis client survives (WRONGPASS: it may AUTH again). */
function refusesInSession(err: PolyproxyError): boolean {
  return err.kind === 'NOT_FOUND' || err.kind === 'FORBIDDEN';
}

let connectionIds = 0;

export function createRedisProtocol(options: RedisOptions): ProtocolModule {
  const starts = new WeakMap<Opening, SessionStart>();

  async function identify(conn: ClientConnection, session?: ProtocolSession): Promise<Opening | null> {
    if (conn.tlsAvailable) await conn.upgradeToTls({ bufferedIsTls: true }); // Redis TLS: every byte is TLS from the start
    if (options.routeBy === 'sni') {
      const name = conn.tls?.servername;
      if (name === undefined || name === '') throw new PolyproxyError('NOT_FOUND', 'this listener routes by SNI and the client sent no server name', { source: 'client' });
      const resourceId = name.toLowerCase();
      const certProblem = conn.clientCertProblem();
      if (certProblem !== null) throw new PolyproxyError('TLS_REQUIRED', certProblem, { source: 'client', resourceId });
      return { resourceId, replay: null };
    }
    const id = ++connectionIds;
    /** Set once the proxy answered a HELLO itself. */
    const agreed: { hello: LocalHello | null } = { hello: null };
    while (true) {
      const args = await conn.read(commandParser);
      if (args === null) continue;
      const name = (args[0] as Buffer).toString('latin1').toLowerCase();
      let user: Buffer;
      let start: SessionStart;
      switch (name) {
        case 'ping':
          conn.write(args.length > 2 ? "-ERR wrong number of arguments for 'ping' command\r\n" : pingReply(args));
          continue;
        case 'quit':
          conn.write(OK);
          return null;
        case 'auth':
          if (args.length === 2) {
            conn.write('-ERR AUTH <password> names no user, and this proxy routes by user: use AUTH <user> <password>\r\n');
            continue;
          }
          if (args.length !== 3) {
            conn.write('-ERR syntax error\r\n');
            continue;
          }
          user = args[1] as Buffer;
          start =
            agreed.hello === null
              ? { command: encodeCommand(args), answerOk: false }
              : { command: encodeCommand(['HELLO', String(agreed.hello.proto), 'AUTH', args[1] as Buffer, args[2] as Buffer, ...(agreed.hello.setname === null ? [] : ['SETNAME', agreed.hello.setname])]), answerOk: true };
          break;
        case 'hello': {
          const parsed = parseHello(args);
          if ('error' in parsed) {
            conn.write(`${parsed.error}\r\n`);
            continue;
          }
          if (parsed.auth === null) {
            // HELLO without a version answers in the protocol already agreed to (2 at first), as Redis does.
            const proto: 2 | 3 = parsed.proto ?? agreed.hello?.proto ?? 2;
            agreed.hello = { proto, setname: parsed.setname ?? agreed.hello?.setname ?? null };
            conn.write(helloReply(proto, id));
            continue;
          }
          user = parsed.auth[0];
          // AUTH comes after a version (parseHello), so `proto` is the client's; a SETNAME given to an earlier local HELLO still applies.
          const proto: 2 | 3 = parsed.proto ?? agreed.hello?.proto ?? 2;
          const setname = parsed.setname ?? agreed.hello?.setname ?? null;
          start = { command: encodeCommand(['HELLO', String(proto), 'AUTH', parsed.auth[0], parsed.auth[1], ...(setname === null ? [] : ['SETNAME', setname])]), answerOk: false };
          break;
        }
        default:
          conn.write(NOAUTH);
          continue;
      }
      const resourceId = user.toString('utf8');
      const certProblem = conn.clientCertProblem();
      if (certProblem !== null) throw new PolyproxyError('TLS_REQUIRED', certProblem, { source: 'client', resourceId });
      const decision = await routeInSession(session, resourceId);
      if (decision === null) {
        conn.write(WRONGPASS);
        continue;
      }
      const opening: Opening = { resourceId, replay: null, decision };
      starts.set(opening, start);
      return opening;
    }
  }

  /**
   * Routes `resourceId` before the session commits to it. Null for a refusal
   * the client survives (WRONGPASS); other failures are thrown and core
   * answers -ERR and closes. Without a ProtocolSession core routes, and a
   * refusal closes.
   */
  async function routeInSession(session: ProtocolSession | undefined, resourceId: string): Promise<RouteDecision | undefined | null> {
    if (session === undefined) return undefined;
    try {
      const ctx = session.resolveContext();
      return session.router.cached(resourceId, ctx) ?? (await session.router.route(resourceId, ctx));
    } catch (err) {
      const error = toPolyproxyError(err);
      if (refusesInSession(error)) {
        // Counted like a refused connection (polyproxy_errors_total by kind), though the client may AUTH again.
        session.failed(error);
        return null;
      }
      throw error.resourceId === undefined ? new PolyproxyError(error.kind, error.message, { source: error.source, resourceId, cause: error }) : error;
    }
  }

  async function replay(conn: ClientConnection, backend: Socket, opening: Opening): Promise<void> {
    const start = starts.get(opening);
    if (start === undefined) return; // routeBy: sni: nothing was read, nothing to replay
    const reader = new BackendReader(backend, 'the replayed AUTH');
    try {
      backend.write(start.command);
      const reply = await within(
        reader.read(replyParser),
        options.replayTimeoutMs,
        () => new PolyproxyError('BACKEND_UNREACHABLE', `the backend did not answer AUTH within ${options.replayTimeoutMs} ms`, { source: 'backend', resourceId: opening.resourceId }),
      );
      conn.write(start.answerOk && !reply.error ? OK : reply.raw);
      const extra = reader.leftover();
      if (extra !== null) conn.write(extra);
    } finally {
      reader.dispose();
    }
  }

  return { name: 'redis', identify, replay, encodeError: (err, resourceId) => encodeError(err, resourceId) };
}
