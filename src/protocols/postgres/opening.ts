/**
 * The PostgreSQL listener. identify: SSLRequest / GSSENCRequest negotiation,
 * then the StartupMessage, whose `database` (default: `user`) is the
 * resource id; a CancelRequest goes straight to the backend that issued its
 * key. replay: the StartupMessage, so the backend runs the real
 * authentication with the client. relay: bytes, with a tap on the first
 * backend messages to learn the cancel key.
 */
import type { Socket } from 'node:net';
import type { ClientConnection } from '../../core/client-connection.ts';
import type { Endpoint } from '../../core/endpoint.ts';
import { PolyproxyError } from '../../core/errors.ts';
import type { Opening, ProtocolModule, ProtocolSession } from '../../core/protocol.ts';
import type { StreamTap } from '../../core/relay.ts';
import { forwardCancelToSiblings, lookupCancelKey, registerCancelKey, resolveProxyCancelKey, unregisterCancelKey } from './cancel-registry.ts';
import { authenticatedOpening, cancelKeyOf, loginAndGreet } from './auth/listener-auth.ts';
import type { ListenerAuth } from './auth/listener-auth.ts';
import type { AuthenticatedClient } from './auth/types.ts';
import { encodeError } from './errors.ts';
import { BackendKeyScanner, parseStartupPacket } from './parse.ts';
import { closeListenerPool, servePooled } from './pool/listener-pool.ts';
import type { ListenerPool } from './pool/listener-pool.ts';

const ANSWER_SSL_YES = Buffer.from('S');
const ANSWER_NO = Buffer.from('N');

/**
 * `auth`: the listener's proxy-side authentication (null: the backend
 * authenticates the client through the relay). `pool`: the listener's
 * server-connection pool (pool/listener-pool.ts; needs auth).
 */
export function createPostgresProtocol(auth: ListenerAuth | null = null, pool: ListenerPool | null = null): ProtocolModule {
  if (auth === null) return { name: 'postgres', identify: (conn) => identify(conn, undefined, null, null), encodeError };
  return {
    name: 'postgres',
    identify: (conn, session) => identify(conn, session, auth, pool),
    encodeError,
    replay: (conn, backend, opening) => replay(auth, conn, backend, opening),
    ...(pool === null ? {} : { drained: () => closeListenerPool(pool) }),
  };
}

/** The authenticated client of an opening, until replay() logs in for it. */
const authenticated = new WeakMap<Opening, { client: AuthenticatedClient; session: PostgresSession }>();

async function replay(auth: ListenerAuth, conn: ClientConnection, backend: Socket, opening: Opening): Promise<void> {
  if (opening.endpoint !== undefined) {
    // A CancelRequest: core replays nothing once a protocol has replay(), so pass it on here.
    if (opening.replay !== null) backend.write(opening.replay);
    return;
  }
  const pending = authenticated.get(opening);
  if (pending === undefined) throw new PolyproxyError('INTERNAL', 'no authenticated client for this opening');
  authenticated.delete(opening);
  const result = await loginAndGreet(auth, conn, backend, pending.client);
  pending.session.learnedKey(cancelKeyOf(result));
}

async function identify(conn: ClientConnection, protocolSession: ProtocolSession | undefined, auth: ListenerAuth | null, pool: ListenerPool | null): Promise<Opening | null> {
  // SSLRequest and GSSENCRequest may each come once before the StartupMessage (as in PostgreSQL).
  let sslAsked = false;
  let gssAsked = false;
  while (true) {
    const packet = await conn.read(parseStartupPacket);
    switch (packet.type) {
      case 'ssl':
        if (sslAsked) throw new PolyproxyError('PROTOCOL', 'duplicate SSL negotiation request', { source: 'client' });
        sslAsked = true;
        if (!conn.tlsAvailable) {
          conn.write(ANSWER_NO);
          continue;
        }
        // Bytes pipelined behind the SSLRequest would be read as plaintext: refuse them (CVE-2021-23214).
        if (conn.hasBuffered) throw new PolyproxyError('PROTOCOL', 'received unencrypted data after SSL request', { source: 'client' });
        conn.write(ANSWER_SSL_YES);
        await conn.upgradeToTls();
        continue;
      case 'gssenc':
        if (gssAsked) throw new PolyproxyError('PROTOCOL', 'duplicate GSSAPI negotiation request', { source: 'client' });
        gssAsked = true;
        conn.write(ANSWER_NO);
        continue;
      case 'cancel': {
        // A pooled client's key (the proxy's own): the server running its query now, with that server's key.
        const pooled = resolveProxyCancelKey(packet.key);
        if (pooled === null) return null;
        if (pooled !== undefined) return { resourceId: '(cancel)', replay: pooled.packet, endpoint: pooled.endpoint };
        const endpoint = lookupCancelKey(packet.key);
        if (endpoint !== undefined) return { resourceId: '(cancel)', replay: packet.raw, endpoint };
        // Not ours: maybe a sibling worker's. PostgreSQL never answers a cancel, so just close.
        forwardCancelToSiblings(packet.key, packet.raw);
        return null;
      }
      case 'startup': {
        const user = packet.params.get('user') as string;
        const database = packet.params.get('database') || user;
        const certProblem = conn.clientCertProblem();
        if (certProblem !== null) throw new PolyproxyError('TLS_REQUIRED', certProblem, { source: 'client', resourceId: database });
        if (pool !== null) return servePooled(pool, conn, protocolSession, packet);
        const session = new PostgresSession();
        if (auth !== null) {
          const hooks = { onConnected: (endpoint: Endpoint) => session.connected(endpoint), onClose: () => session.close() };
          const { opening, client } = await authenticatedOpening(auth, conn, protocolSession, packet, hooks);
          authenticated.set(opening, { client, session });
          return opening;
        }
        return {
          resourceId: database,
          replay: packet.raw,
          backendTap: session,
          onConnected: (endpoint) => session.connected(endpoint),
          onClose: () => session.close(),
        };
      }
    }
  }
}

/** Per-session state: learns the backend's cancel key and forgets it at close. */
class PostgresSession implements StreamTap {
  #scanner: BackendKeyScanner | null = new BackendKeyScanner();
  #endpoint: Endpoint | null = null;
  #key: string | null = null;

  connected(endpoint: Endpoint): void {
    this.#endpoint = endpoint;
  }

  inspect(chunk: Buffer): boolean {
    const scanner = this.#scanner;
    if (scanner === null) return true;
    const done = scanner.push(chunk);
    if (this.#key === null && scanner.key !== null && this.#endpoint !== null) {
      this.#key = scanner.key;
      registerCancelKey(this.#key, this.#endpoint);
    }
    if (done) this.#scanner = null; // idle sessions keep only the key
    return done;
  }

  /** The proxy logged in itself and knows the backend's key (no tap). */
  learnedKey(key: string): void {
    this.#scanner = null;
    if (this.#endpoint === null) return;
    this.#key = key;
    registerCancelKey(key, this.#endpoint);
  }

  close(): void {
    if (this.#key !== null && this.#endpoint !== null) unregisterCancelKey(this.#key, this.#endpoint);
  }
}
