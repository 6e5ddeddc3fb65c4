/**
 * One authenticated client of a pooled postgres listener: the state
 * machine between the client socket and whichever server connection it
 * holds.
 *
 *   LOGIN  — waits for a server connection, brings it to the client's
 *            startup parameters, greets the client (ParameterStatus, the
 *            proxy's own BackendKeyData, ReadyForQuery);
 *   READY  — relays. Transaction mode takes a server connection when the
 *            client sends its first message and gives it back when the
 *            server's ReadyForQuery says idle ('I') with nothing else in
 *            flight (never by parsing SQL); session mode keeps one until
 *            the client leaves, then DISCARD ALL gives it back;
 *   CLOSED — the client left or was refused.
 *
 * Both directions are framed by MessageReaders; most messages stream
 * through as they come (PASS), a few are read whole (Parse, Bind,
 * Describe, Close and Query from the client; ParameterStatus,
 * ReadyForQuery, ErrorResponse, ParseComplete, CloseComplete and
 * CommandComplete from the server). Bytes for a socket are collected in
 * an Outbox and written once per read. Backpressure both ways: a full
 * socket pauses the other side until 'drain'.
 *
 * Transaction mode keeps what clients rely on across server connections:
 * named prepared statements (prepared-statements.ts: prepared lazily on the
 * server that runs the Bind or Describe; the client's ParseComplete and
 * CloseComplete answered in order by the server itself — a Parse of a
 * statement the server already has becomes a Close of a name that never
 * exists, whose CloseComplete is relayed as ParseComplete), parameters
 * (parameters.ts) and cancel (cancel-keys.ts). LISTEN is refused
 * (listen-guard.ts).
 */
import type { Socket } from 'node:net';
import { readBuffer, reclaimLent } from '../../../core/io/shared-read-buffer.ts';
import { adoptSharedReadBuffer } from '../../../core/io/socket-onread.ts';
import { handleOwner, lastReadResult, passReadToSocket } from '../../../core/io/stream-handle.ts';
import type { StreamHandle } from '../../../core/io/stream-handle.ts';
import type { Endpoint } from '../../../core/endpoint.ts';
import { FramingError, MessageReader, Outbox, PASS, WHOLE, cstringEnd, readDirect } from './framing.ts';
import type { MessageOwner } from './framing.ts';
import { LISTEN_REFUSAL_SQL, isListenTag, startsWithListen } from './listen-guard.ts';
import {
  POOL_SQLSTATE,
  T_BIND,
  T_CLOSE,
  T_CLOSE_COMPLETE,
  T_COMMAND_COMPLETE,
  T_DATA_ROW,
  T_DESCRIBE,
  T_ERROR,
  T_EXECUTE,
  T_PARAMETER_STATUS,
  T_PARSE,
  T_PARSE_COMPLETE,
  T_QUERY,
  T_READY,
  T_SYNC,
  T_TERMINATE,
  backendKeyData,
  cancelRequest,
  errorMessage,
  parameterStatus,
  readErrorFields,
  readyForQuery,
} from './messages.ts';
import { READ_BACK_QUERY, UNREPORTED, fingerprint, readBackRow, replayStatements, trackedName } from './parameters.ts';
import type { ParameterValues } from './parameters.ts';
import { ExpectQueue } from './expect-queue.ts';
import { ClientStatements } from './prepared-statements.ts';
import type { Statement } from './prepared-statements.ts';
import type { PoolClient, PoolManager, ServerPool } from './server-pool.ts';
import type { ServerConnection } from './server-connection.ts';
import type { ServerUser } from './server-connection.ts';
import { dropClientKey, newClientKey } from './cancel-keys.ts';
import type { WaitQueue } from './wait-queue.ts';
import type { SessionSplit } from '../split/session-split.ts';

const LOGIN = 0;
const READY = 1;
const CLOSED = 2;

const STATUS_IDLE = 0x49; // 'I'

/** A statement name no server ever has: a Close of it is answered CloseComplete, harmlessly. */
const NEVER_PREPARED = 'pp_none';

/** Client bytes held while it waits for a server connection before its socket is paused. */
const MAX_HELD_UNPAUSED = 64 * 1024;

/** How long a server connection may take to answer its reset (ROLLBACK / DISCARD ALL) before it is closed instead. */
export const RESET_TIMEOUT_MS = 10_000;
const EMPTY = Buffer.alloc(0);

const kSession = Symbol('polyproxy.pg.pool.session');
type SessionSocket = Socket & { [kSession]?: ClientSession };

export interface ClientSessionOptions {
  readonly manager: PoolManager;
  readonly pool: ServerPool;
  readonly tenant: string;
  /** Tracked startup parameters (canonical names; null: the server's default). */
  readonly startup: ParameterValues;
  /** The read/write split (split/session-split.ts): which pool the next transaction's server comes from. */
  readonly split?: SessionSplit | null;
}

export class ClientSession implements PoolClient, ServerUser {
  readonly client: Socket;
  readonly manager: PoolManager;
  readonly pool: ServerPool;
  readonly tenant: string;
  readonly transactionMode: boolean;
  readonly split: SessionSplit | null;
  readonly done: Promise<void>;
  #resolveDone!: () => void;
  phase = LOGIN;
  server: ServerConnection | null = null;
  readonly clientReader: MessageReader;
  readonly toClient = new Outbox();
  readonly statements: ClientStatements;
  /** What the client's session parameters are (tracked ones). */
  readonly desired: ParameterValues;
  /** fingerprint(desired), or null when desired changed since it was taken. */
  #desiredKey: string | null = null;
  readonly #startup: ParameterValues;
  readonly #key: { processId: number; secretKey: Buffer; hex: string };
  // Waiter fields (wait-queue.ts).
  waitingSince = 0;
  queue: WaitQueue | null = null;
  #waiting = false;
  /** Client bytes that arrived with no server connection (copied out of the shared read buffer). */
  #held: Buffer | null = null;
  #heldLength = 0;
  // Per server connection held (reset at each grant).
  /** Client Syncs and Queries forwarded whose ReadyForQuery has not come back. */
  #pendingSyncs = 0;
  /** Syncs and Queries forwarded (the client's and the pool's own), and ReadyForQuery seen: epochs for the queues below. */
  #syncsSent = 0;
  #readySeen = 0;
  /** Client messages forwarded since its last Sync/Query: the server is mid-exchange, not to be given back. */
  #sentSinceSync = false;
  /** The pool's own queries in flight whose answers are swallowed (their ReadyForQuery count). */
  #swallow = 0;
  /** The swallowed query is the read-back of unreported parameters. */
  #readBack = false;
  /** The server's reset in flight (the client left): ROLLBACK and, in session mode, DISCARD ALL. */
  #resetting = false;
  /** Of #swallow, the ReadyForQuery still owed to the client's own work in flight when it left (their errors are not the reset's). */
  #swallowForeign = 0;
  /** The reset includes DISCARD ALL (session mode, or a session the split pinned). */
  #resetDiscard = false;
  /** The reset's deadline (a server that does not answer it is closed). */
  #resetTimer: NodeJS.Timeout | null = null;
  /** The server is in COPY FROM STDIN (or COPY BOTH): it takes no reset until the copy ends. */
  #copyIn = false;
  /** The transaction ran SET/RESET (CommandComplete tag): read unreported parameters back before giving the server back. */
  #sawSet = false;
  #txStatus = STATUS_IDLE;
  /** ParseComplete expected per forwarded Parse: epoch, swallowed (the pool's own), statement (null: unnamed). */
  readonly #parses = new ExpectQueue();
  /** CloseComplete expected per forwarded Close: epoch, relayed as ParseComplete. */
  readonly #closes = new ExpectQueue();
  /** A FATAL the server sent before closing (shown in the client's 08006). */
  #serverFatal: string | null = null;
  #clientPaused = false;

  constructor(client: Socket, leftover: Buffer | null, options: ClientSessionOptions) {
    this.client = client;
    this.manager = options.manager;
    this.pool = options.pool;
    this.tenant = options.tenant;
    this.transactionMode = options.manager.settings.mode === 'transaction';
    this.split = options.split ?? null;
    this.#startup = options.startup;
    this.desired = new Map();
    this.statements = new ClientStatements(options.pool.registry);
    this.clientReader = new MessageReader(clientSideOf(this));
    this.#key = newClientKey(this);
    this.done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
    this.pool.stats.clients++;
    (client as SessionSocket)[kSession] = this;
    client.setNoDelay?.(true);
    if (!adoptSharedReadBuffer(client, clientOnRead)) client.on('data', clientOnData);
    else readDirect(client, this, clientHandleOnRead);
    client.on('error', clientOnError);
    client.on('close', clientOnClose);
    client.on('end', clientOnEnd);
    client.on('drain', clientOnDrain);
    if (leftover !== null && leftover.length > 0) this.#hold(leftover, 0, leftover.length);
    this.#pauseClient(); // until the greeting
    this.#requestServer();
  }

  // ---- client side -----------------------------------------------------------

  /** Bytes from the client. */
  onClientBytes(buf: Buffer, start: number, end: number): void {
    if (this.phase === CLOSED) return;
    // No server, or one being given back (the read-back after a SET runs on it first): the next exchange waits, and the
    // read/write split chooses its server afresh — forwarded now, a read would run on the primary the SET ran on.
    if (this.server === null || this.phase === LOGIN || this.#readBack) {
      // Between transactions: a Terminate needs no server (during a read-back it waits for it: the server then goes back to the pool whole).
      if (this.server === null && this.#heldLength === 0 && this.clientReader.atBoundary && buf[start] === T_TERMINATE && this.phase === READY) {
        this.#end(null);
        return;
      }
      this.#hold(buf, start, end);
      // Reading on costs nothing while little is held; pausing and resuming would cost two syscalls per transaction.
      if (this.phase === LOGIN || this.#heldLength > MAX_HELD_UNPAUSED) this.#pauseClient();
      if (this.phase === READY && this.server === null) this.#requestServer();
      return;
    }
    this.#processClient(buf, start, end);
    this.#flushServer();
  }

  #processClient(buf: Buffer, start: number, end: number): void {
    try {
      this.clientReader.push(buf, start, end);
    } catch (err) {
      const message = err instanceof FramingError ? err.message : `internal error: ${(err as Error).message}`;
      this.#end(errorMessage('FATAL', POOL_SQLSTATE.PROTOCOL_VIOLATION, message));
    }
  }

  #hold(buf: Buffer, start: number, end: number): void {
    const n = end - start;
    let held = this.#held;
    if (held === null || held.length < this.#heldLength + n) {
      const next = Buffer.allocUnsafe(Math.max(4096, (this.#heldLength + n) * 2));
      if (held !== null) held.copy(next, 0, 0, this.#heldLength);
      this.#held = held = next;
    }
    buf.copy(held, this.#heldLength, start, end);
    this.#heldLength += n;
  }

  /** Client message header (MessageReader owner, client side). */
  clientStart(type: number, length: number): number {
    if (!this.transactionMode) {
      if (type === T_SYNC || type === T_QUERY) this.#pendingSyncs++;
      if (type === T_QUERY || type === T_EXECUTE) this.pool.stats.queries++;
      else if (type === T_TERMINATE) return WHOLE;
      return PASS;
    }
    switch (type) {
      case T_PARSE:
      case T_BIND:
      case T_DESCRIBE:
      case T_CLOSE:
      case T_QUERY:
      case T_TERMINATE:
        return WHOLE;
      case T_SYNC:
        this.#syncsSent++;
        this.#pendingSyncs++;
        this.#sentSinceSync = false;
        return PASS;
      case T_EXECUTE:
        this.pool.stats.queries++;
        this.#sentSinceSync = true;
        return PASS;
      case 0x64: // d CopyData
      case 0x63: // c CopyDone
      case 0x66: // f CopyFail
      case 0x48: // H Flush
        return PASS;
      default:
        void length;
        this.#sentSinceSync = true;
        return PASS;
    }
  }

  clientBytes(bytes: Buffer, start: number, end: number): void {
    (this.server as ServerConnection).outbox.bytes(bytes, start, end);
  }

  clientWhole(type: number, body: Buffer, start: number, end: number): void {
    const server = this.server as ServerConnection;
    const out = server.outbox;
    if (type === T_TERMINATE) {
      this.#end(null);
      return;
    }
    if (this.split !== null) this.split.observe(type, body, start, end);
    if (!this.transactionMode) {
      forward(out, type, body, start, end);
      return;
    }
    switch (type) {
      case T_QUERY: {
        this.#syncsSent++;
        this.#pendingSyncs++;
        this.#sentSinceSync = false;
        this.pool.stats.queries++;
        if (startsWithListen(body, start, end)) writeQuery(out, LISTEN_REFUSAL_SQL);
        else forward(out, type, body, start, end);
        return;
      }
      case T_PARSE: {
        this.#sentSinceSync = true;
        const nameEnd = cstringEnd(body, start, end);
        const queryEnd = nameEnd < 0 ? -1 : cstringEnd(body, nameEnd + 1, end);
        if (queryEnd < 0) return this.#malformed('Parse');
        if (startsWithListen(body, nameEnd + 1, queryEnd)) {
          // The statement is the refusal: its Bind and Execute, now or later, get 0A000 from the server.
          const refusal = Buffer.byteLength(LISTEN_REFUSAL_SQL);
          const rewritten = Buffer.allocUnsafe(nameEnd - start + 1 + refusal + 1 + (end - queryEnd - 1));
          body.copy(rewritten, 0, start, nameEnd + 1);
          rewritten.write(LISTEN_REFUSAL_SQL, nameEnd - start + 1);
          rewritten[nameEnd - start + 1 + refusal] = 0;
          body.copy(rewritten, nameEnd - start + 2 + refusal, queryEnd + 1, end);
          this.clientWhole(type, rewritten, 0, rewritten.length);
          return;
        }
        if (nameEnd === start) {
          forward(out, type, body, start, end);
          this.#expectParse(false, null);
          return;
        }
        const name = body.toString('utf8', start, nameEnd);
        const existing = this.statements.get(name);
        if (existing !== undefined) {
          // PostgreSQL refuses a Parse of a name in use (42P05): let the server say so, in order.
          this.#ensurePrepared(existing);
          const at = out.startMessage(T_PARSE);
          out.cstring(existing.serverName);
          out.bytes(body, nameEnd + 1, end);
          out.endMessage(at);
          this.#expectParse(false, null);
          return;
        }
        const statement = this.pool.registry.acquire(body, nameEnd, end);
        this.statements.define(name, statement);
        if (server.prepared.has(statement.serverName)) {
          // Already there: the server answers a Close of a name it never has; relayed as ParseComplete.
          writeClose(out, NEVER_PREPARED);
          this.#expectClose(true);
          return;
        }
        writeParse(out, statement.parseBody);
        server.prepared.add(statement.serverName);
        this.#expectParse(false, statement);
        return;
      }
      case T_BIND: {
        this.#sentSinceSync = true;
        const portalEnd = cstringEnd(body, start, end);
        const nameEnd = portalEnd < 0 ? -1 : cstringEnd(body, portalEnd + 1, end);
        if (nameEnd < 0) return this.#malformed('Bind');
        const statement = nameEnd === portalEnd + 1 ? undefined : this.statements.get(body.toString('utf8', portalEnd + 1, nameEnd));
        if (statement === undefined) {
          forward(out, type, body, start, end);
          return;
        }
        this.#ensurePrepared(statement);
        const at = out.startMessage(T_BIND);
        out.bytes(body, start, portalEnd + 1);
        out.cstring(statement.serverName);
        out.bytes(body, nameEnd + 1, end);
        out.endMessage(at);
        return;
      }
      case T_DESCRIBE: {
        this.#sentSinceSync = true;
        const statement = end - start > 2 && body[start] === 0x53 /* S */ ? this.#namedStatement(body, start + 1, end) : undefined;
        if (statement === undefined) {
          forward(out, type, body, start, end);
          return;
        }
        this.#ensurePrepared(statement);
        const at = out.startMessage(T_DESCRIBE);
        out.byte(0x53);
        out.cstring(statement.serverName);
        out.endMessage(at);
        return;
      }
      case T_CLOSE: {
        this.#sentSinceSync = true;
        if (end - start > 2 && body[start] === 0x53) {
          const nameEnd = cstringEnd(body, start + 1, end);
          if (nameEnd > start + 1 && this.statements.close(body.toString('utf8', start + 1, nameEnd))) {
            // Shared by other clients and kept by servers: only the client's name goes.
            writeClose(out, NEVER_PREPARED);
            this.#expectClose(false);
            return;
          }
        }
        forward(out, type, body, start, end);
        this.#expectClose(false);
        return;
      }
      default:
        forward(out, type, body, start, end);
    }
  }

  #namedStatement(body: Buffer, start: number, end: number): Statement | undefined {
    const nameEnd = cstringEnd(body, start, end);
    if (nameEnd <= start) return undefined;
    return this.statements.get(body.toString('utf8', start, nameEnd));
  }

  #malformed(what: string): void {
    this.#end(errorMessage('FATAL', POOL_SQLSTATE.PROTOCOL_VIOLATION, `invalid ${what} message`));
  }

  /** Prepares `statement` on the current server connection unless it has it (its ParseComplete swallowed). */
  #ensurePrepared(statement: Statement): void {
    const server = this.server as ServerConnection;
    if (server.prepared.has(statement.serverName)) return;
    writeParse(server.outbox, statement.parseBody);
    server.prepared.add(statement.serverName);
    this.#expectParse(true, statement);
  }

  #expectParse(own: boolean, statement: Statement | null): void {
    this.#parses.push(this.#syncsSent, own, statement);
  }

  #expectClose(asParse: boolean): void {
    this.#closes.push(this.#syncsSent, asParse, null);
  }

  /** A ReadyForQuery ended sync #readySeen: expectations from before it got no answer (an error skipped them). */
  #purgeExpectations(): void {
    const server = this.server as ServerConnection;
    const parses = this.#parses;
    while (parses.length > 0 && parses.epoch < this.#readySeen) {
      const statement = parses.shift();
      // Not prepared after all.
      if (statement !== null) server.prepared.delete(statement.serverName);
    }
    const closes = this.#closes;
    while (closes.length > 0 && closes.epoch < this.#readySeen) closes.shift();
  }

  #flushServer(): void {
    const server = this.server;
    if (server === null) return;
    if (!server.outbox.flush(server.socket)) this.#pauseClient();
  }

  #pauseClient(): void {
    if (this.#clientPaused) return;
    this.#clientPaused = true;
    this.client.pause();
  }

  #resumeClient(): void {
    if (!this.#clientPaused || this.phase === CLOSED) return;
    this.#clientPaused = false;
    this.client.resume();
  }

  /** ServerUser: the server can take more. */
  serverDrained(): void {
    if (this.#heldLength === 0 && this.phase === READY) this.#resumeClient();
  }

  /** The client can take more: let its server speak again. */
  clientDrained(): void {
    reclaimLent(this.client);
    const server = this.server;
    if (server !== null && server.socket.isPaused()) server.socket.resume();
  }

  // ---- server side -----------------------------------------------------------

  #requestServer(): void {
    if (this.#waiting || this.server !== null || this.phase === CLOSED) return;
    // The split picks the pool (a replica's or the primary's) from the held messages; null: it waits for a whole exchange.
    const pool = this.split === null || this.phase !== READY ? this.pool : this.split.choose(this.#held ?? EMPTY, this.#heldLength, this.statements);
    if (pool === null) {
      this.#resumeClient(); // the rest of the exchange must come (the client may be paused since its login)
      return;
    }
    const server = this.manager.acquire(pool, this);
    if (server !== null) {
      this.serverGranted(server);
      return;
    }
    this.#waiting = true;
  }

  /** PoolClient: a server connection is ours. */
  serverGranted(server: ServerConnection): void {
    this.#waiting = false;
    if (this.phase === CLOSED) {
      this.manager.release(server.home as ServerPool, server);
      return;
    }
    this.server = server;
    server.user = this;
    this.pool.stats.clientsActive++;
    this.#pendingSyncs = 0;
    this.#syncsSent = 0;
    this.#readySeen = 0;
    this.#sentSinceSync = false;
    this.#swallow = 0;
    this.#readBack = false;
    this.#sawSet = false;
    this.#serverFatal = null;
    if (server.socket.isPaused()) server.socket.resume();
    if (this.phase === LOGIN) this.#initDesired();
    // In step when the fingerprints match (the common case: every client of a pool runs the same parameters).
    const key = this.#desiredKey ?? (this.#desiredKey = fingerprint(this.desired));
    if (server.paramsKey !== key) {
      const replay = replayStatements(this.desired, server.params);
      server.paramsKey = key; // replayStatements brought its params to desired
      if (replay !== null) this.#ownQuery(replay, false);
    }
    if (this.phase === LOGIN) {
      if (this.#swallow === 0) this.#greet();
      else this.#flushServer();
      return;
    }
    this.#drainHeld();
  }

  /** The client's parameters at login: its startup values, else the pool's defaults. */
  #initDesired(): void {
    const welcome = this.pool.welcome;
    for (const [name, value] of (this.server as ServerConnection).params) {
      const start = this.#startup.get(name);
      if (start !== undefined) this.desired.set(name, start);
      else if (UNREPORTED.includes(name as (typeof UNREPORTED)[number])) this.desired.set(name, null);
      else this.desired.set(name, welcome?.get(name) ?? value);
    }
    for (const [name, value] of this.#startup) if (!this.desired.has(name)) this.desired.set(name, value);
    this.#desiredKey = null;
  }

  /** Sends one of the pool's own queries; its answers are swallowed up to its ReadyForQuery. */
  #ownQuery(sql: string, readBack: boolean): void {
    const server = this.server as ServerConnection;
    writeQuery(server.outbox, sql);
    this.#syncsSent++;
    this.#swallow++;
    this.#readBack = readBack;
  }

  /** The greeting: the server's parameters as the client runs them, the proxy's key, ready. */
  #greet(): void {
    const server = this.server as ServerConnection;
    const out = this.toClient;
    const welcome = this.pool.welcome ?? new Map<string, string>();
    for (const [name, value] of welcome) {
      const tracked = trackedName(name);
      const current = tracked === undefined ? value : (server.params.get(tracked) ?? value);
      const message = parameterStatus(name, current);
      out.bytes(message, 0, message.length);
    }
    // Tracked values as the server now reports them are the client's.
    for (const [name, value] of server.params) if (value !== null && !UNREPORTED.includes(name as (typeof UNREPORTED)[number])) this.desired.set(name, value);
    this.#desiredKey = null;
    const key = backendKeyData(this.#key.processId, this.#key.secretKey);
    out.bytes(key, 0, key.length);
    const ready = readyForQuery(STATUS_IDLE);
    out.bytes(ready, 0, ready.length);
    this.phase = READY;
    this.#flushClient();
    this.#flushServer();
    if (this.transactionMode) this.#maybeRelease();
    this.#drainHeld();
  }

  /** Replays client bytes held while there was no server connection. */
  #drainHeld(): void {
    if (this.phase !== READY) return;
    if (this.#heldLength > 0 && this.server !== null) {
      // Processing client bytes never gives the server back (only its ReadyForQuery does), so nothing is held meanwhile.
      const n = this.#heldLength;
      this.#heldLength = 0;
      this.#processClient(this.#held as Buffer, 0, n);
      this.#flushServer();
    } else if (this.#heldLength > 0) {
      this.#requestServer();
      return;
    }
    if (this.#heldLength === 0) this.#resumeClient();
  }

  /** PoolClient: no server connection for us (queue timeout, login failure, shutdown). */
  serverFailed(sqlstate: string, message: string, raw: Buffer | null): void {
    this.#waiting = false;
    if (this.phase === CLOSED) return;
    // A replica that gave no connection: the same messages go to the primary, the client sees nothing.
    if (this.split !== null && this.phase === READY && this.split.failed(sqlstate, message)) {
      this.#requestServer();
      return;
    }
    this.#end(raw ?? errorMessage('FATAL', sqlstate, message));
  }

  messageStart(type: number, length: number): number {
    void length;
    if (this.#swallow > 0) return WHOLE;
    switch (type) {
      case T_READY:
      case T_ERROR:
        return WHOLE;
      case T_PARAMETER_STATUS:
      case T_PARSE_COMPLETE:
      case T_CLOSE_COMPLETE:
      case T_COMMAND_COMPLETE:
        return this.transactionMode ? WHOLE : PASS;
      case 0x47: // G CopyInResponse
      case 0x57: // W CopyBothResponse
        this.#copyIn = true;
        return PASS;
      default:
        return PASS;
    }
  }

  messageBytes(bytes: Buffer, start: number, end: number): void {
    this.toClient.bytes(bytes, start, end);
  }

  messageEnd(type: number): void {
    void type;
  }

  messageWhole(type: number, body: Buffer, start: number, end: number): void {
    const server = this.server as ServerConnection;
    if (this.#swallow > 0) {
      this.#swallowed(server, type, body, start, end);
      return;
    }
    switch (type) {
      case T_READY: {
        this.#readySeen++;
        this.#copyIn = false;
        this.#purgeExpectations();
        if (this.#pendingSyncs > 0) this.#pendingSyncs--;
        this.#txStatus = end > start ? (body[start] as number) : STATUS_IDLE;
        forward(this.toClient, type, body, start, end);
        if (this.#txStatus === STATUS_IDLE) this.pool.stats.transactions++;
        if (this.transactionMode) this.#maybeRelease();
        return;
      }
      case T_ERROR: {
        this.#copyIn = false;
        const fields = readErrorFields(body, start, end);
        if (fields.severity === 'FATAL' || fields.severity === 'PANIC') {
          // The server is going away (pg_terminate_backend, admin shutdown...): the client hears 08006 when it closes.
          server.broken = true;
          this.#serverFatal = `${fields.message} (SQLSTATE ${fields.code})`;
          return;
        }
        forward(this.toClient, type, body, start, end);
        return;
      }
      case T_PARAMETER_STATUS: {
        this.#trackParameter(server, body, start, end);
        forward(this.toClient, type, body, start, end);
        return;
      }
      case T_PARSE_COMPLETE: {
        const parses = this.#parses;
        if (parses.length > 0) {
          const own = parses.flag;
          parses.shift();
          if (own) return;
        }
        forward(this.toClient, type, body, start, end);
        return;
      }
      case T_CLOSE_COMPLETE: {
        const asParse = this.#closes.flag;
        this.#closes.shift();
        forward(this.toClient, asParse ? T_PARSE_COMPLETE : type, body, start, end);
        return;
      }
      case T_COMMAND_COMPLETE: {
        if (end - start >= 3) {
          const c0 = body[start];
          if ((c0 === 0x53 && body[start + 1] === 0x45 && body[start + 2] === 0x54) /* SET */ || (c0 === 0x52 && body.toString('latin1', start, start + 5) === 'RESET')) this.#sawSet = true;
          else if (c0 === 0x44 && body.toString('latin1', start, start + 7) === 'DISCARD') this.#sawSet = true;
          else if (c0 === 0x4c && isListenTag(body, start, end - 1)) server.broken = true; // a LISTEN got through: never reuse this connection
        }
        forward(this.toClient, type, body, start, end);
        return;
      }
      default:
        forward(this.toClient, type, body, start, end);
    }
  }

  /** Answers to the pool's own queries: parameters learned, the rest dropped. */
  #swallowed(server: ServerConnection, type: number, body: Buffer, start: number, end: number): void {
    switch (type) {
      case T_PARAMETER_STATUS:
        this.#trackParameter(server, body, start, end);
        if (this.phase === READY && !this.#resetting) forward(this.toClient, type, body, start, end);
        return;
      case T_DATA_ROW:
        if (this.#readBack) {
          readBackRow(body, start, end, this.desired, null);
          for (const name of UNREPORTED) server.params.set(name, this.desired.get(name) ?? null);
          this.#desiredKey = null;
          server.paramsKey = null;
        }
        return;
      case T_ERROR: {
        // The departed client's own work failing (a statement of its aborted transaction) is no reason to drop the server.
        if (this.#swallowForeign > 0) return;
        const fields = readErrorFields(body, start, end);
        this.manager.log.warn({ pool: this.pool.stats.name, err: fields.message, code: fields.code }, 'postgres pool: the pool\'s own query failed; the server connection will not be reused');
        server.broken = true;
        if (this.phase === LOGIN) {
          // The client's startup parameters were refused (an unknown TimeZone, say): PostgreSQL refuses the login.
          this.#end(errorMessage('FATAL', fields.code, fields.message));
        }
        return;
      }
      case T_READY: {
        this.#readySeen++;
        this.#swallow--;
        if (this.#swallowForeign > 0) this.#swallowForeign--;
        if (this.#swallow > 0) return;
        this.#readBack = false;
        if (this.#resetting) {
          this.#resetting = false;
          if (this.#resetTimer !== null) clearTimeout(this.#resetTimer);
          this.#resetTimer = null;
          if (this.#resetDiscard) server.prepared.clear();
          this.#detach(server);
          return;
        }
        if (this.phase === LOGIN) {
          this.#greet();
          return;
        }
        if (this.transactionMode) this.#maybeRelease();
        // Held during a read-back that did not end in a release: they go to the server the session still holds.
        if (this.server !== null && this.#heldLength > 0) this.#drainHeld();
        return;
      }
      default:
        return;
    }
  }

  #trackParameter(server: ServerConnection, body: Buffer, start: number, end: number): void {
    const nameEnd = cstringEnd(body, start, end);
    if (nameEnd < 0) return;
    const tracked = trackedName(body.toString('utf8', start, nameEnd));
    if (tracked === undefined) return;
    const valueEnd = cstringEnd(body, nameEnd + 1, end);
    const value = body.toString('utf8', nameEnd + 1, valueEnd < 0 ? end : valueEnd);
    server.params.set(tracked, value);
    server.paramsKey = null;
    if (!this.#resetting) {
      this.desired.set(tracked, value);
      this.#desiredKey = null;
    }
  }

  /** Transaction mode: gives the server back when the client's transaction is over and nothing is in flight. */
  #maybeRelease(): void {
    const server = this.server;
    if (server === null || this.phase !== READY) return;
    if (this.#pendingSyncs > 0 || this.#sentSinceSync || this.#swallow > 0 || this.#txStatus !== STATUS_IDLE || !this.clientReader.atBoundary) return;
    if (this.split !== null && this.split.holdsServer) return; // pinned: the session's state lives in this connection
    if (this.#sawSet) {
      this.#sawSet = false;
      this.#ownQuery(READ_BACK_QUERY, true);
      this.#flushServer();
      return;
    }
    this.#detach(server);
  }

  #detach(server: ServerConnection): void {
    this.server = null;
    this.pool.stats.clientsActive--;
    this.#parses.clear();
    this.#closes.clear();
    // The server first: a waiting client's held query goes out before this client's answer is written, so the server works while the proxy writes.
    this.manager.release(server.home as ServerPool, server);
    if (this.split !== null) this.split.detached();
    this.#flushClient();
    if (this.phase !== READY || this.#heldLength === 0) return;
    // A client that said goodbye while its server was being given back.
    if (this.#heldLength === 5 && (this.#held as Buffer)[0] === T_TERMINATE) this.#end(null);
    else this.#requestServer();
  }

  /** ServerUser: called after each server read, to write what it produced. */
  serverReadDone(): void {
    this.#flushClient();
  }

  #flushClient(): void {
    if (!this.toClient.flush(this.client)) {
      const server = this.server;
      if (server !== null) server.socket.pause();
    }
  }

  serverLost(server: ServerConnection, why: string): void {
    if (server !== this.server) return;
    this.server = null;
    server.user = null;
    this.pool.stats.clientsActive--;
    if (this.phase === CLOSED) return;
    const detail = this.#serverFatal ?? why;
    const message = this.phase === LOGIN ? `server connection lost during login: ${detail}` : `server connection lost: ${detail}`;
    this.#end(errorMessage('FATAL', POOL_SQLSTATE.CONNECTION_FAILURE, message));
  }

  // ---- cancel ------------------------------------------------------------------

  cancelTarget(): { endpoint: Endpoint; packet: Buffer } | null {
    const server = this.server;
    if (server === null || this.phase !== READY) return null;
    return { endpoint: server.endpoint, packet: cancelRequest(server.processId, server.secretKey) };
  }

  // ---- endings -------------------------------------------------------------------

  /** Ends the session, after `bytes` (an ErrorResponse) if given; the server goes back or is closed. */
  #end(bytes: Buffer | null): void {
    if (this.phase === CLOSED) return;
    const wasLogin = this.phase === LOGIN;
    this.phase = CLOSED;
    const client = this.client;
    this.#flushClient();
    client.on('error', noop);
    if (!client.destroyed) {
      if (bytes === null) client.end();
      else client.end(bytes);
      client.resume();
      setTimeout(destroyIfOpen, 2000, client).unref();
    }
    this.#cleanup(wasLogin);
  }

  /** The listener's drain deadline passed: PostgreSQL's admin shutdown error, then close. */
  shutdown(): void {
    this.#end(errorMessage('FATAL', POOL_SQLSTATE.ADMIN_SHUTDOWN, 'terminating connection due to administrator command'));
  }

  /** The client socket closed. */
  clientClosed(): void {
    if (this.phase === CLOSED) {
      this.#resolveDone();
      return;
    }
    const wasLogin = this.phase === LOGIN;
    this.phase = CLOSED;
    this.#cleanup(wasLogin);
    this.#resolveDone();
  }

  #cleanup(wasLogin: boolean): void {
    if (this.#waiting) {
      this.manager.cancel(this);
      this.#waiting = false;
    }
    dropClientKey(this.#key.hex);
    this.statements.clear();
    this.pool.stats.clients--;
    this.manager.leave(this.tenant);
    if (this.split !== null) this.split.end();
    const server = this.server;
    if (server === null) return;
    const idle = this.#pendingSyncs === 0 && !this.#sentSinceSync && this.#swallow === 0 && this.#txStatus === STATUS_IDLE;
    // Session mode, or a session the split pinned to its connection, ends with DISCARD ALL.
    const discard = !this.transactionMode || (this.split !== null && this.split.holdsServer);
    if (!wasLogin && idle && this.clientReader.atBoundary && !discard) {
      this.#detach(server);
      return;
    }
    // Only the pool's read-back after a SET in flight (the client left right after its ReadyForQuery): the server goes back when it answers.
    if (this.#readBack && this.#swallow === 1 && this.#pendingSyncs === 0 && !this.#sentSinceSync && this.#txStatus === STATUS_IDLE && this.clientReader.atBoundary && !discard && this.#parses.length === 0 && this.#closes.length === 0) {
      this.#resetting = true;
      this.#resetDiscard = false;
      this.#resetTimer = setTimeout(resetOverdue, RESET_TIMEOUT_MS, this);
      this.#resetTimer.unref();
      return;
    }
    // A server mid-message, mid-login, in COPY FROM STDIN, or (transaction mode) with statement bookkeeping in flight cannot be reset safely: never reuse it.
    const resettable = !wasLogin && this.clientReader.atBoundary && !this.#copyIn && this.#swallow === 0 && (!this.transactionMode || (this.#parses.length === 0 && this.#closes.length === 0));
    if (!resettable) {
      server.broken = true;
      this.#detach(server);
      return;
    }
    // PgBouncer's server_reset_query, and a ROLLBACK first when the client left inside a transaction or with work in flight
    // (its answers, and a Sync closing an unfinished extended-protocol exchange, are swallowed first).
    // The server goes back once the reset answered; it is closed if the reset fails or does not answer within RESET_TIMEOUT_MS.
    this.#resetting = true;
    const out = server.outbox;
    const foreign = this.#pendingSyncs + (this.#sentSinceSync ? 1 : 0);
    if (this.#sentSinceSync) writeSync(out);
    this.#swallow += foreign;
    this.#swallowForeign = foreign;
    if (foreign > 0 || this.#txStatus !== STATUS_IDLE) this.#ownQuery('ROLLBACK', false);
    this.#resetDiscard = discard;
    if (discard) {
      this.#ownQuery('DISCARD ALL', false);
      for (const name of UNREPORTED) server.params.set(name, null);
      server.paramsKey = null;
    }
    this.#resetTimer = setTimeout(resetOverdue, RESET_TIMEOUT_MS, this);
    this.#resetTimer.unref();
    this.#flushServer();
  }

  /** @internal The reset did not answer in time: close the server instead. */
  resetOverdue(): void {
    this.#resetTimer = null;
    const server = this.server;
    if (!this.#resetting || server === null) return;
    this.#resetting = false;
    server.broken = true;
    this.#detach(server);
  }
}

// ---- message writers -----------------------------------------------------------

function forward(out: Outbox, type: number, body: Buffer, start: number, end: number): void {
  out.byte(type);
  out.int32(end - start + 4);
  out.bytes(body, start, end);
}

function writeQuery(out: Outbox, sql: string): void {
  const at = out.startMessage(T_QUERY);
  out.cstring(sql);
  out.endMessage(at);
}

function writeSync(out: Outbox): void {
  out.byte(T_SYNC);
  out.int32(4);
}

function writeParse(out: Outbox, parseBody: Buffer): void {
  out.byte(T_PARSE);
  out.int32(parseBody.length + 4);
  out.bytes(parseBody, 0, parseBody.length);
}

function writeClose(out: Outbox, name: string): void {
  const at = out.startMessage(T_CLOSE);
  out.byte(0x53);
  out.cstring(name);
  out.endMessage(at);
}

/** The client reader's owner: the session's client-side methods (one small object per session). */
function clientSideOf(session: ClientSession): MessageOwner {
  return {
    messageStart: (type, length) => session.clientStart(type, length),
    messageBytes: (bytes, start, end) => session.clientBytes(bytes, start, end),
    messageEnd: () => {},
    messageWhole: (type, body, start, end) => session.clientWhole(type, body, start, end),
  };
}

// ---- socket handlers (module level: no closures per connection) ------------------

function clientOnRead(this: SessionSocket, nread: number): boolean {
  (this[kSession] as ClientSession).onClientBytes(readBuffer, 0, nread);
  return true;
}

function clientHandleOnRead(this: StreamHandle, arrayBuffer?: ArrayBuffer): unknown {
  const nread = lastReadResult();
  if (nread <= 0) return passReadToSocket(this, arrayBuffer);
  (handleOwner(this) as ClientSession).onClientBytes(readBuffer, 0, nread);
  return undefined;
}

function clientOnData(this: SessionSocket, chunk: Buffer): void {
  (this[kSession] as ClientSession).onClientBytes(chunk, 0, chunk.length);
}

function clientOnDrain(this: SessionSocket): void {
  (this[kSession] as ClientSession).clientDrained();
}

function clientOnEnd(this: SessionSocket): void {
  this.destroy();
}

function clientOnError(this: SessionSocket): void {
  // 'close' follows.
}

function clientOnClose(this: SessionSocket): void {
  (this[kSession] as ClientSession).clientClosed();
}

function resetOverdue(session: ClientSession): void {
  session.resetOverdue();
}

function destroyIfOpen(socket: Socket): void {
  if (!socket.destroyed) socket.destroy();
}

function noop(): void {}
