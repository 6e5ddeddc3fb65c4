/**
 * One MongoDB client's opening: the proxy plays a standalone mongod on
 * `admin` (hello / isMaster, ping, buildInfo, endSessions) until the first
 * request whose database is not `admin`, which names the tenant.
 *
 * Two things make a MongoDB opening unlike a PostgreSQL startup packet:
 *
 * - Awaitable hello. A driver's monitor that saw a `topologyVersion` sends
 *   hello with that version and `maxAwaitTimeMS`, and with `exhaustAllowed`
 *   expects mongod's streaming protocol: one reply after maxAwaitTimeMS
 *   flagged `moreToCome`, then another every maxAwaitTimeMS without further
 *   requests. The proxy's topology never changes, so it does exactly that,
 *   with one timer per waiting connection, cleared on close.
 *
 * - Openings that never end. Monitoring connections (and idle pooled ones)
 *   only ever talk to `admin`, for as long as the client lives. The
 *   listener's handshake deadline is meant for clients that never finish a
 *   handshake; once this connection has been answered at least once, the
 *   deadline firing only means "a driver, idle": the opening carries on
 *   without it, reading through a fresh ClientConnection over the same socket.
 */
import { ClientConnection } from '../../core/client-connection.ts';
import { PolyproxyError } from '../../core/errors.ts';
import type { BsonDocument } from './bson.ts';
import { COMMAND_NOT_SUPPORTED, INVALID_NAMESPACE, UNSUPPORTED_OP_QUERY_COMMAND, errorDocument, replyTo } from './errors.ts';
import type { PendingRequest } from './errors.ts';
import { awaitTimeMs, buildInfoReply, handshakeCommand, helloReply } from './handshake.ts';
import type { HandshakeCommand, ServerFacts, TopologyVersion } from './handshake.ts';
import { nextConnectionId, nextRequestId } from './ids.ts';
import { MAX_OPENING_BUFFER, MSG_EXHAUST_ALLOWED, MSG_MORE_TO_COME, encodeOpMsg, parseClientMessage, requestDatabase } from './wire.ts';
import type { ClientMessage, OpMsgRequest } from './wire.ts';

export interface RoutedRequest {
  /** The first request for a database other than `admin`. */
  readonly message: ClientMessage;
  readonly database: string;
  readonly pending: PendingRequest;
  /** The `client` metadata of the client's first hello, forwarded in the proxy's hello to the backend. */
  readonly clientMetadata: BsonDocument | undefined;
  /** Bytes read past `message` that the listener's ClientConnection no longer holds. */
  readonly leftover: Buffer | null;
}

/** A hello the proxy holds until maxAwaitTimeMS passes (and, streaming, repeats). */
interface HeldHello {
  readonly request: OpMsgRequest;
  readonly command: HandshakeCommand;
  readonly waitMs: number;
  readonly exhaust: boolean;
  /** Streaming replies answer the previous reply, as mongod's exhaust replies do. */
  responseTo: number;
  timer: ReturnType<typeof setTimeout>;
}

/** mongod's rules for database names (no `/\. "$`, NUL, or 64+ bytes). */
export function validDatabaseName(name: string): boolean {
  return name.length > 0 && Buffer.byteLength(name) < 64 && !/[/\\. "$\0]/.test(name);
}

export class MongoOpening {
  readonly #conn: ClientConnection;
  readonly #facts: ServerFacts;
  readonly #topologyVersion: TopologyVersion;
  readonly #connectionId = nextConnectionId();
  #reader: ClientConnection;
  #ownReader = false;
  #answered = 0;
  #held: HeldHello | null = null;
  #clientMetadata: BsonDocument | undefined = undefined;
  readonly #onClose = (): void => this.#reader.abort(new PolyproxyError('PROTOCOL', 'client closed the connection during its opening', { source: 'client' }));

  constructor(conn: ClientConnection, facts: ServerFacts, topologyVersion: TopologyVersion) {
    this.#conn = conn;
    this.#reader = conn;
    this.#facts = facts;
    this.#topologyVersion = topologyVersion;
    // A destroyed socket emits 'close' but not 'end': fail the pending read then, too.
    conn.socket.once('close', this.#onClose);
  }

  /** Answers handshakes until a request names a tenant database. */
  async run(): Promise<RoutedRequest> {
    try {
      while (true) {
        const message = await this.#next();
        this.#answerHeldNow();
        const database = requestDatabase(message);
        if (typeof database !== 'string' || !validDatabaseName(database)) {
          this.#reply(message, errorDocument(INVALID_NAMESPACE, typeof database === 'string' ? `invalid database name "${database}"` : 'a request needs a $db string naming its database'));
          continue;
        }
        if (database !== 'admin') {
          const pending: PendingRequest = { requestID: message.requestID, op: message.op, moreToCome: isMoreToCome(message) };
          return { message, database, pending, clientMetadata: this.#clientMetadata, leftover: this.#releaseOwnReader() };
        }
        this.#answer(message);
      }
    } finally {
      this.#stopHolding();
      this.#conn.socket.removeListener('close', this.#onClose);
      this.#releaseOwnReader();
    }
  }

  async #next(): Promise<ClientMessage> {
    while (true) {
      try {
        return await this.#reader.read(parseClientMessage);
      } catch (err) {
        if (!this.#ownReader && this.#answered > 0 && err instanceof PolyproxyError && err.kind === 'HANDSHAKE_TIMEOUT' && !this.#conn.closed) {
          this.#continueWithoutDeadline();
          continue;
        }
        throw err;
      }
    }
  }

  /**
   * The listener's handshake deadline aborted the read: take the socket
   * (and the bytes already buffered) into a ClientConnection of our own.
   */
  #continueWithoutDeadline(): void {
    const { socket, leftover } = this.#conn.detach();
    const reader = new ClientConnection(socket, { maxOpeningBytes: MAX_OPENING_BUFFER, tls: null });
    this.#reader = reader;
    this.#ownReader = true;
    if (leftover !== null) {
      try {
        socket.unshift(leftover);
      } catch (err) {
        throw new PolyproxyError('PROTOCOL', 'client ended its side during its opening', { source: 'client', cause: err });
      }
    }
    socket.resume();
  }

  /** Gives the socket back (paused) and returns what our own reader had buffered. */
  #releaseOwnReader(): Buffer | null {
    if (!this.#ownReader) return null;
    this.#ownReader = false;
    return this.#reader.detach().leftover;
  }

  #write(bytes: Buffer | null): void {
    if (bytes !== null) this.#reader.write(bytes);
  }

  #reply(message: ClientMessage, doc: BsonDocument): void {
    this.#write(replyTo({ requestID: message.requestID, op: message.op, moreToCome: isMoreToCome(message) }, nextRequestId(), doc));
  }

  #answer(message: ClientMessage): void {
    const name = message.op === 'msg' ? message.command : message.commandName;
    const command = handshakeCommand(name);
    if (message.op === 'query' && (message.collection !== 'admin.$cmd' || (command !== 'hello' && command !== 'isMaster'))) {
      // mongod 5.1+ accepts only the legacy hello over OP_QUERY.
      this.#reply(message, errorDocument(UNSUPPORTED_OP_QUERY_COMMAND, `Unsupported OP_QUERY command: ${name ?? '(none)'}. The client driver may require an upgrade.`));
      return;
    }
    if (command === undefined) {
      this.#reply(
        message,
        errorDocument(
          COMMAND_NOT_SUPPORTED,
          `polyproxy answers only hello, isMaster, ping, buildInfo and endSessions on "admin" before a tenant database is used on this connection (got "${name ?? ''}"); ` +
            'send commands to your tenant database (authenticate with authSource set to it)',
        ),
      );
      return;
    }
    const request = message.op === 'msg' ? message.body : message.command;
    switch (command) {
      case 'hello':
      case 'isMaster': {
        const client = request.client;
        if (this.#clientMetadata === undefined && client !== null && typeof client === 'object' && Object.getPrototypeOf(client) === Object.prototype) {
          this.#clientMetadata = client as BsonDocument;
        }
        this.#answered++;
        const waitMs = message.op === 'msg' && !isMoreToCome(message) ? awaitTimeMs(request, this.#topologyVersion) : undefined;
        if (waitMs !== undefined && message.op === 'msg') {
          this.#hold(message, command, waitMs);
          return;
        }
        this.#reply(message, this.#helloDocument(command, request));
        return;
      }
      case 'ping':
      case 'endSessions':
        // endSessions: the sessions live on backends, which expire them on their own.
        this.#answered++;
        this.#reply(message, { ok: 1 });
        return;
      case 'buildInfo':
        this.#answered++;
        this.#reply(message, buildInfoReply(this.#facts));
        return;
    }
  }

  #helloDocument(command: HandshakeCommand, request: BsonDocument): BsonDocument {
    return helloReply(command, request, { facts: this.#facts, topologyVersion: this.#topologyVersion, connectionId: this.#connectionId, now: new Date() });
  }

  #hold(request: OpMsgRequest, command: HandshakeCommand, waitMs: number): void {
    this.#stopHolding();
    const exhaust = (request.flags & MSG_EXHAUST_ALLOWED) !== 0;
    this.#held = { request, command, waitMs, exhaust, responseTo: request.requestID, timer: setTimeout(answerHeld, waitMs, this) };
  }

  /** @internal the held hello's timer fired. */
  answerHeld(): void {
    const held = this.#held;
    if (held === null) return;
    const replyId = nextRequestId();
    const bytes = encodeOpMsg(replyId, held.responseTo, this.#helloDocument(held.command, held.request.body), held.exhaust ? MSG_MORE_TO_COME : 0);
    if (held.exhaust && !this.#reader.closed) {
      held.responseTo = replyId;
      held.timer = setTimeout(answerHeld, held.waitMs, this);
    } else {
      this.#held = null;
    }
    this.#write(bytes);
  }

  /**
   * The client spoke while a hello was held. A plain awaitable hello is
   * answered at once so replies keep their order; a streaming one ends
   * (a client may not send on an exhaust stream, so it gave up on it).
   */
  #answerHeldNow(): void {
    const held = this.#held;
    if (held === null) return;
    this.#stopHolding();
    if (!held.exhaust) this.#write(encodeOpMsg(nextRequestId(), held.responseTo, this.#helloDocument(held.command, held.request.body)));
  }

  #stopHolding(): void {
    if (this.#held === null) return;
    clearTimeout(this.#held.timer);
    this.#held = null;
  }
}

function answerHeld(opening: MongoOpening): void {
  opening.answerHeld();
}

function isMoreToCome(message: ClientMessage): boolean {
  return message.op === 'msg' && (message.flags & MSG_MORE_TO_COME) !== 0;
}
