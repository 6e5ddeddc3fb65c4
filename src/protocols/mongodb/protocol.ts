/**
 * The MongoDB listener. identify: the proxy answers the `admin` handshakes
 * itself (see opening.ts) until the first request for another database,
 * whose name is the resource id. replay: the proxy sends the backend a hello
 * of its own (with the client's metadata) and, until it knows it, a
 * buildInfo, swallows the replies — learning the backend's wire versions and
 * limits for later handshakes on this listener — then forwards the client's
 * request and relays. errors: error documents answering the pending request.
 */
import { BackendReader } from '../../core/backend-reader.ts';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { ClientConnection } from '../../core/client-connection.ts';
import { Deadline } from '../../core/deadline.ts';
import { PolyproxyError } from '../../core/errors.ts';
import type { Opening, ProtocolModule } from '../../core/protocol.ts';
import { ObjectId } from './bson.ts';
import type { BsonDocument } from './bson.ts';
import { encodeErrorReply } from './errors.ts';
import type { PendingRequest } from './errors.ts';
import { ServerFacts } from './handshake.ts';
import type { TopologyVersion } from './handshake.ts';
import { nextRequestId } from './ids.ts';
import { MongoOpening } from './opening.ts';
import type { RoutedRequest } from './opening.ts';
import { DbGuard } from './db-guard.ts';
import { MAX_OPENING_MESSAGE, MSG_MORE_TO_COME, OP_MSG, encodeOpMsg, parseServerReply } from './wire.ts';
import type { ServerReply } from './wire.ts';

/** How long a backend has to answer the proxy's own hello before the client gets BACKEND_UNREACHABLE (74 NodeNotFound). */
export const BACKEND_HELLO_TIMEOUT_MS = 10_000;

/** Changes when the proxy process restarts, as mongod's processId does. */
const TOPOLOGY_VERSION: TopologyVersion = { processId: new ObjectId(randomBytes(12)), counter: 0n };

export function createMongoProtocol(): ProtocolModule {
  return new MongoProtocol();
}

export class MongoProtocol implements ProtocolModule {
  readonly name = 'mongodb';
  /** What this listener's backends said about themselves; defaults until the first routed session. */
  readonly facts = new ServerFacts();
  readonly #routed = new WeakMap<Opening, RoutedRequest>();
  /** The request a refusal answers: the routed one, per client connection. */
  readonly #pending = new WeakMap<ClientConnection, PendingRequest>();

  async identify(conn: ClientConnection): Promise<Opening> {
    // MongoDB TLS starts with the connection: no request to negotiate it.
    if (conn.tlsAvailable) await conn.upgradeToTls({ bufferedIsTls: true }); // every byte is TLS from the start
    const certProblem = conn.clientCertProblem();
    if (certProblem !== null) throw new PolyproxyError('TLS_REQUIRED', certProblem, { source: 'client' });
    const routed = await new MongoOpening(conn, this.facts, TOPOLOGY_VERSION).run();
    this.#pending.set(conn, routed.pending);
    // Later requests must stay on this database (db-guard.ts); drivers keep within the advertised maxMessageSizeBytes.
    const opening: Opening = { resourceId: routed.database, replay: routed.message.raw, clientFilter: new DbGuard(routed.database, MAX_OPENING_MESSAGE) };
    this.#routed.set(opening, routed);
    return opening;
  }

  encodeError(err: PolyproxyError, resourceId: string | undefined, conn?: ClientConnection): Buffer | null {
    return encodeErrorReply(err, resourceId, conn === undefined ? undefined : this.#pending.get(conn), nextRequestId());
  }

  async replay(_conn: ClientConnection, backend: Socket, opening: Opening): Promise<void> {
    const routed = this.#routed.get(opening);
    if (routed === undefined) throw new PolyproxyError('INTERNAL', 'replay of an opening this module did not make');
    try {
      await this.#greetBackend(backend, routed.clientMetadata);
    } catch (err) {
      if (err instanceof PolyproxyError && err.kind !== 'PROTOCOL') throw err;
      // Garbled bytes from the backend: the client hears "cannot reach the server", not a bare close.
      throw new PolyproxyError('BACKEND_UNREACHABLE', `backend answered the proxy's hello with unexpected bytes: ${(err as Error).message}`, { source: 'backend', cause: err });
    }
    backend.write(routed.message.raw);
    // Requests pipelined behind the routed one are checked like any later request.
    if (routed.leftover !== null) (opening.clientFilter as DbGuard).prime(backend, routed.leftover);
  }

  /** Sends hello (and buildInfo until learned) on the fresh backend connection and learns from the replies. */
  async #greetBackend(backend: Socket, clientMetadata: BsonDocument | undefined): Promise<void> {
    const helloId = nextRequestId();
    const hello: BsonDocument = { hello: 1 };
    if (clientMetadata !== undefined) hello.client = clientMetadata;
    hello.$db = 'admin';
    const requests = [encodeOpMsg(helloId, 0, hello)];
    let buildInfoId = 0;
    if (!this.facts.buildInfoLearned) {
      buildInfoId = nextRequestId();
      requests.push(encodeOpMsg(buildInfoId, 0, { buildInfo: 1, $db: 'admin' }));
    }
    backend.write(requests.length === 1 ? (requests[0] as Buffer) : Buffer.concat(requests));
    const replies = await readReplies(backend, requests.length, BACKEND_HELLO_TIMEOUT_MS);
    for (const reply of replies) {
      if (reply.responseTo === helloId) this.facts.learnFromHello(reply.document);
      else if (reply.responseTo === buildInfoId && buildInfoId !== 0) this.facts.learnFromBuildInfo(reply.document);
      else throw new PolyproxyError('PROTOCOL', `reply to request ${reply.responseTo}, which the proxy did not send`, { source: 'backend' });
    }
  }
}

/** Reads exactly `count` replies from a backend that has no relay yet, within `timeoutMs`. */
async function readReplies(backend: Socket, count: number, timeoutMs: number): Promise<ServerReply[]> {
  const reader = new BackendReader(backend, "the proxy's hello");
  const deadline = new Deadline(timeoutMs);
  const late = (): PolyproxyError => new PolyproxyError('BACKEND_UNREACHABLE', `backend did not answer the proxy's hello within ${timeoutMs} ms`, { source: 'backend' });
  try {
    const replies: ServerReply[] = [];
    while (replies.length < count) {
      const reply = await deadline.wait(reader.read(parseServerReply), late);
      if (reply.opCode === OP_MSG && (reply.flags & MSG_MORE_TO_COME) !== 0) throw new PolyproxyError('PROTOCOL', 'backend streamed a reply the proxy did not ask for', { source: 'backend' });
      replies.push(reply);
    }
    if (reader.leftover() !== null) throw new PolyproxyError('PROTOCOL', 'backend sent bytes nobody asked for', { source: 'backend' });
    return replies;
  } finally {
    deadline.clear();
    reader.dispose();
  }
}
