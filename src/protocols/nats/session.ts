/**
 * The NATS listener.
 *
 * identify: the proxy sends its own INFO at once (info.ts: the values it
 * announces and why); with `tls` the INFO says tls_required and the client
 * upgrades right after it (NATS's in-band TLS; clients in "TLS handshake
 * first" mode are not supported). Then it reads the client's first line,
 * which must be `CONNECT {json}`, and takes the tenant from it (`routeBy`:
 * user, token prefix, or JWT name).
 *
 * replay: connects, reads and swallows the backend's INFO after checking
 * it can honour what the proxy announced, then sends the client's CONNECT
 * line as received. Whatever the client pipelined after CONNECT (nats.js
 * sends PING at once; SUB and PUB may follow) goes after it, in order
 * (core writes it once replay returns). From then on the session is a byte
 * relay: the backend authenticates the CONNECT, and its answer (+OK in
 * verbose mode, PONG, or -ERR 'Authorization Violation') reaches the client
 * unchanged.
 */
import type { Socket } from 'node:net';
import { BackendReader } from '../../core/backend-reader.ts';
import type { ClientConnection } from '../../core/client-connection.ts';
import { within } from '../../core/deadline.ts';
import { PolyproxyError } from '../../core/errors.ts';
import type { Opening, ProtocolModule } from '../../core/protocol.ts';
import { errorLine, NatsError } from './errors.ts';
import { incompatibility, infoLine } from './info.ts';
import type { AnnouncedInfo } from './info.ts';
import { backendInfoParser, controlLineParser, parseConnect, tenantOf } from './parse.ts';
import type { RouteBy } from './parse.ts';

export interface NatsOptions {
  readonly routeBy: RouteBy;
  readonly tokenSeparator: string;
  readonly announced: AnnouncedInfo;
  /** Time the backend gets to send its INFO. */
  readonly replayTimeoutMs: number;
}

let clientIds = 0;

export function createNatsProtocol(options: NatsOptions): ProtocolModule {
  /** Connections that got the proxy's INFO: their errors need no INFO first. */
  const greeted = new WeakSet<ClientConnection>();
  /** The CONNECT line per opening. */
  const connects = new WeakMap<Opening, Buffer>();

  const info = (conn: ClientConnection): Buffer => infoLine(options.announced, ++clientIds, conn.remoteAddress);

  async function identify(conn: ClientConnection): Promise<Opening> {
    conn.write(info(conn));
    greeted.add(conn);
    if (conn.tlsAvailable) await conn.upgradeToTls();
    const line = await conn.read(controlLineParser);
    const connect = parseConnect(line);
    const resourceId = tenantOf(connect, options.routeBy, options.tokenSeparator);
    if (resourceId === null) throw new NatsError('FORBIDDEN', `CONNECT names no tenant (routeBy: ${options.routeBy})`, 'Authorization Violation');
    const certProblem = conn.clientCertProblem();
    if (certProblem !== null) throw new PolyproxyError('TLS_REQUIRED', certProblem, { source: 'client', resourceId });
    const opening: Opening = { resourceId, replay: null };
    connects.set(opening, line.raw);
    return opening;
  }

  async function replay(conn: ClientConnection, backend: Socket, opening: Opening): Promise<void> {
    const connect = connects.get(opening);
    if (connect === undefined) throw new PolyproxyError('INTERNAL', 'NATS session state missing');
    const reader = new BackendReader(backend, "the backend's INFO");
    try {
      const backendInfo = await within(
        reader.read(backendInfoParser),
        options.replayTimeoutMs,
        () => new PolyproxyError('BACKEND_UNREACHABLE', `the backend sent no INFO within ${options.replayTimeoutMs} ms`, { source: 'backend', resourceId: opening.resourceId }),
      );
      const problem = incompatibility(options.announced, backendInfo);
      if (problem !== null) throw new PolyproxyError('UNAVAILABLE', problem, { source: 'backend', resourceId: opening.resourceId });
      // A NATS server says nothing more until CONNECT; anything it did send goes to the client after INFO.
      const extra = reader.leftover();
      if (extra !== null) conn.write(extra);
      backend.write(connect);
    } finally {
      reader.dispose();
    }
  }

  function encodeError(err: PolyproxyError, _resourceId: string | undefined, conn?: ClientConnection): Buffer {
    const line = Buffer.from(errorLine(err));
    // A client refused before the proxy's INFO (maxConnections) gets one first, as nats-server sends.
    return conn !== undefined && !greeted.has(conn) ? Buffer.concat([info(conn), line]) : line;
  }

  return { name: 'nats', identify, replay, encodeError };
}
