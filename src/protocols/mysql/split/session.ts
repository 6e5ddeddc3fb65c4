/**
 * A MySQL client session under the read/write split (listener
 * `readWriteSplit`, route with `replicas`): the proxy authenticated the
 * client itself and holds its primary connection (logged in as
 * backendUser); a replica connection is opened on the first read that may
 * use one (ReplicaSet.pick()). Commands are handled one at a time (a
 * pipelining client's next command waits in the buffer): each goes to one
 * connection, whose answer is forwarded to the client as it arrives while
 * ResponseTracker finds its end and closing status flags.
 *
 * Where a command goes:
 * - inside a transaction (the connection's last status has
 *   SERVER_STATUS_IN_TRANS, or lacks SERVER_STATUS_AUTOCOMMIT): the
 *   connection that holds it;
 * - pinned session (session-effects.ts): the primary;
 * - COM_QUERY that classifyMysql calls a read: a replica, unless
 *   read-your-writes asks for the primary or no replica is healthy;
 *   `START TRANSACTION READ ONLY` starts its transaction on a replica;
 * - everything else (writes, the binary protocol COM_STMT_*, COM_PING...):
 *   the primary.
 * COM_INIT_DB and `USE` pass the use guard's rule (the database must route
 * to this session's primary), run on the primary, and the replica
 * connection is reopened on the new database when next needed; so is it
 * after a replayed SET or COM_RESET_CONNECTION. COM_CHANGE_USER is refused.
 * A replica that fails before its answer reached the client is marked down
 * and the command runs on the primary instead.
 */
import type { Socket } from 'node:net';
import type { Endpoint } from '../../../core/endpoint.ts';
import { parseEndpoint } from '../../../core/endpoint.ts';
import { PolyproxyError, toPolyproxyError } from '../../../core/errors.ts';
import type { Logger } from '../../../core/logger.ts';
import type { RouteLookup } from '../../../core/protocol.ts';
import { countPinnedSession, countStatement } from '../../../core/rw-split/metrics.ts';
import { ReadAfterWrite } from '../../../core/rw-split/read-after-write.ts';
import type { ReplicaSet } from '../../../core/rw-split/replica-set.ts';
import type { BackendCredentials } from '../auth/backend-login.ts';
import { UseScanner, inspectCommand } from '../commands.ts';
import { OTHER_BACKEND, encodeFailure } from '../errors.ts';
import { CLIENT_DEPRECATE_EOF, COM_CHANGE_USER, COM_INIT_DB, COM_QUERY, MAX_PAYLOAD, errPacket } from '../packets.ts';
import type { HandshakeResponse } from '../packets.ts';
import { okStatus, openBackend } from './backend-session.ts';
import { classifyMysql } from './classify.ts';
import { ResponseTracker, SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_IN_TRANS, answerKind } from './response.ts';
import { sessionEffect, startsReadOnlyTransaction } from './session-effects.ts';

const COM_QUIT = 0x01;
const COM_RESET_CONNECTION = 0x1f;
/** Commands the proxy does not carry in a split session (replication streams, obsolete ones). */
const REFUSED: ReadonlySet<number> = new Set([0x00 /* SLEEP */, 0x05, 0x06, 0x0b /* CONNECT */, 0x0f /* TIME */, 0x10 /* DELAYED_INSERT */, 0x12 /* BINLOG_DUMP */, 0x13 /* TABLE_DUMP */, 0x14 /* CONNECT_OUT */, 0x15 /* REGISTER_SLAVE */, 0x1d /* DAEMON */, 0x1e /* BINLOG_DUMP_GTID */, 0xfe /* MariaDB COM_MULTI */]);
/** Largest command collected (one full packet chain is MAX_PAYLOAD): MariaDB's default max_allowed_packet. */
export const MAX_COMMAND_BYTES = 16 * 1024 * 1024;
/** Session SETs kept for replay on replica connections; past this the session is pinned instead. */
const MAX_REPLAYED_SETS = 32;
const MAX_REPLAYED_BYTES = 16 * 1024;
/** Client bytes buffered while a command runs before the client is paused. */
const MAX_BUFFERED = 1024 * 1024;

const ER_UNKNOWN_COM_ERROR = 1047;
/** A replica's answers that mean "this connection is gone" (ER_SERVER_SHUTDOWN, ER_CONNECTION_KILLED): retried on the primary. */
const GONE_ERRORS: ReadonlySet<number> = new Set([1053, 1927]);
const ER_NET_PACKET_TOO_LARGE = 1153;
const ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION = 1792;

type Role = 'primary' | 'replica';

interface Conn {
  readonly role: Role;
  readonly socket: Socket;
  readonly endpoint: string;
  /** Last status flags seen. */
  status: number;
}

/** The command in flight. */
interface Command {
  readonly payload: Buffer;
  /** Its packets as the client sent them. */
  readonly packet: Buffer;
  conn: Conn;
  /** Bytes of the answer reached the client. */
  forwarded: boolean;
  /** Not a read: read-your-writes starts at the next commit. */
  readonly write: boolean;
  /** A SET to replay on replica connections once it succeeds. */
  readonly replay: boolean;
  /** The database a USE / COM_INIT_DB switches to. */
  readonly database: string | null;
  readonly reset: boolean;
}

export interface SplitSessionOptions {
  readonly listener: string;
  readonly client: Socket;
  readonly leftover: Buffer | null;
  readonly handshake: HandshakeResponse;
  readonly primary: { socket: Socket; endpoint: Endpoint; status: number };
  readonly replicas: ReplicaSet;
  readonly credentials: BackendCredentials;
  readonly readAfterWriteMs: number;
  readonly connectTimeoutMs: number;
  readonly loginTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly lookup: RouteLookup;
  readonly log: Logger;
}

export class SplitSession {
  readonly #o: SplitSessionOptions;
  readonly #client: Socket;
  readonly #primary: Conn;
  #replica: Conn | null = null;
  #opening: Promise<Conn | null> | null = null;
  readonly #tracker: ResponseTracker;
  readonly #scanner = new UseScanner();
  readonly #raw: ReadAfterWrite;
  #buffer: Buffer = Buffer.alloc(0);
  /** The command in flight, its target, and what to do when it ends. */
  #current: Command | null = null;
  #busy = false;
  #pinned: string | null = null;
  readonly #sets: string[] = [];
  #setBytes = 0;
  #database: string;
  /** The primary ran a non-read since its last commit: read-your-writes starts at the next commit. */
  #wrote = false;
  #closed = false;
  /** The listener drains: the session ends after the command in flight. */
  #draining = false;
  readonly done: Promise<void>;
  #resolveDone!: () => void;

  constructor(options: SplitSessionOptions) {
    this.#o = options;
    this.#client = options.client;
    this.#database = options.handshake.database;
    this.#tracker = new ResponseTracker((options.handshake.capabilities & CLIENT_DEPRECATE_EOF) !== 0);
    this.#raw = new ReadAfterWrite(options.readAfterWriteMs);
    this.done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
    this.#primary = { role: 'primary', socket: options.primary.socket, endpoint: options.primary.endpoint.label, status: options.primary.status };
    this.#attach(this.#primary);
    const client = this.#client;
    client.setNoDelay?.(true);
    client.on('data', (chunk: Buffer) => this.#onClient(chunk));
    client.on('error', () => this.close());
    client.on('close', () => this.close());
    client.on('end', () => this.close());
    client.on('drain', () => {
      this.#primary.socket.resume();
      this.#replica?.socket.resume();
    });
    if (options.idleTimeoutMs > 0) {
      client.setTimeout(options.idleTimeoutMs, () => {
        if (!this.#busy) this.close();
      });
    }
    if (options.leftover !== null) this.#onClient(options.leftover);
    client.resume();
  }

  /** Why the session is pinned to the primary (null: not pinned). */
  get pinned(): string | null {
    return this.#pinned;
  }

  #attach(conn: Conn): void {
    conn.socket.on('data', (chunk: Buffer) => this.#onBackend(conn, chunk));
    conn.socket.on('error', () => this.#backendGone(conn));
    conn.socket.on('close', () => this.#backendGone(conn));
    conn.socket.on('end', () => this.#backendGone(conn));
  }

  // ---- client side -------------------------------------------------------

  #onClient(chunk: Buffer): void {
    if (this.#closed) return;
    const current = this.#current;
    if (current !== null && this.#tracker.infile) {
      // LOAD DATA LOCAL: the client's file goes to the backend that asked, up to its empty packet.
      this.#infile(current.conn, chunk);
      return;
    }
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    if (this.#buffer.length > MAX_BUFFERED) this.#client.pause();
    this.#pump();
  }

  #infileRest: Buffer = Buffer.alloc(0);

  #infile(conn: Conn, chunk: Buffer): void {
    let data = this.#infileRest.length === 0 ? chunk : Buffer.concat([this.#infileRest, chunk]);
    let at = 0;
    while (data.length - at >= 4) {
      const length = data.readUIntLE(at, 3);
      if (data.length - at < 4 + length) break;
      at += 4 + length;
      if (length === 0) {
        conn.socket.write(data.subarray(0, at));
        const rest = data.subarray(at);
        this.#infileRest = Buffer.alloc(0);
        this.#tracker.infileSent();
        if (rest.length > 0) this.#onClient(rest);
        return;
      }
    }
    if (at > 0) conn.socket.write(data.subarray(0, at));
    data = data.subarray(at);
    this.#infileRest = Buffer.from(data);
  }

  /** Takes the next whole command from the buffer and runs it, when none is running. */
  #pump(): void {
    while (!this.#busy && !this.#closed) {
      const command = this.#nextCommand();
      if (command === null) {
        if (this.#client.isPaused() && this.#buffer.length <= MAX_BUFFERED) this.#client.resume();
        return;
      }
      if (command === 'too-large') {
        this.#refuseAndClose(errPacket(1, ER_NET_PACKET_TOO_LARGE, '08S01', `Got a packet bigger than ${MAX_COMMAND_BYTES} bytes (read/write split)`));
        return;
      }
      this.#busy = true;
      this.#run(command.packet, command.payload).catch((err: unknown) => this.#failed(err));
    }
  }

  /** The next whole command: its packets as received, and its payload (continuations joined). */
  #nextCommand(): { packet: Buffer; payload: Buffer } | null | 'too-large' {
    const buf = this.#buffer;
    let at = 0;
    const parts: Buffer[] = [];
    let total = 0;
    for (;;) {
      if (buf.length - at < 4) return null;
      const length = buf.readUIntLE(at, 3);
      total += length;
      if (total > MAX_COMMAND_BYTES) return 'too-large';
      if (buf.length - at < 4 + length) return null;
      parts.push(buf.subarray(at + 4, at + 4 + length));
      at += 4 + length;
      if (length < MAX_PAYLOAD) break;
    }
    const packet = buf.subarray(0, at);
    this.#buffer = buf.subarray(at);
    return { packet, payload: parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts) };
  }

  async #run(packet: Buffer, payload: Buffer): Promise<void> {
    const command = payload.length > 0 ? (payload[0] as number) : -1;
    if (command === COM_QUIT) {
      this.close();
      return;
    }
    if (command === COM_CHANGE_USER) {
      this.#refuseAndClose(errPacket(1, ER_UNKNOWN_COM_ERROR, '08S01', 'COM_CHANGE_USER is not supported by the read/write split: reconnect as the other user'));
      return;
    }
    if (REFUSED.has(command) || command < 0) {
      this.#answer(errPacket(1, ER_UNKNOWN_COM_ERROR, '08S01', 'Unknown command (not carried by the read/write split)'));
      return;
    }
    // The use guard's rule: a database switch must stay on this session's backend.
    let database: string | null = null;
    const check = inspectCommand(payload, this.#o.handshake.capabilities, this.#scanner);
    if (check !== null) {
      if ('malformed' in check) {
        this.#answer(encodeFailure(new PolyproxyError('PROTOCOL', check.malformed, { source: 'client' }), undefined, 1, true));
        return;
      }
      for (const name of check.databases) {
        let endpoints: readonly Endpoint[];
        try {
          endpoints = await this.#o.lookup(name);
        } catch (err) {
          this.#answer(encodeFailure(toPolyproxyError(err), name, 1, true));
          return;
        }
        if (!endpoints.some((e) => e.label === this.#primary.endpoint)) {
          this.#answer(errPacket(1, OTHER_BACKEND.code, OTHER_BACKEND.sqlState, `Access denied to database '${name}' on this connection: it routes to another backend (reconnect with that database)`));
          return;
        }
        database = name;
      }
    }
    const listener = this.#o.listener;
    const inTx = this.#txConn();
    let conn: Conn = this.#primary;
    let write = false;
    let replay = false;
    if (command === COM_QUERY && database !== null) {
      // USE (perhaps among other statements): the primary; the replica follows on its next connection.
      const effect = sessionEffect(payload.toString('utf8', 1));
      if (effect.pin !== null) this.#pin(effect.pin);
      if (inTx !== null && inTx.role === 'replica') {
        this.#answer(errPacket(1, ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION, '25006', 'Cannot execute USE in a READ ONLY transaction run by a replica (read/write split)'));
        return;
      }
      countStatement(listener, 'primary', inTx !== null ? 'transaction' : this.#pinned !== null ? 'pinned' : 'write');
    } else if (command === COM_QUERY) {
      const sql = payload.toString('utf8', 1);
      const read = classifyMysql(sql) === 'read';
      if (inTx !== null) {
        conn = inTx;
        if (inTx.role === 'replica' && !read) {
          const effect = sessionEffect(sql);
          if (effect.pin !== null || effect.replay) {
            this.#answer(errPacket(1, ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION, '25006', `Cannot execute statement in a READ ONLY transaction (${effect.pin ?? 'SET'}: read/write split)`));
            return;
          }
        }
        write = inTx.role === 'primary' && !read;
        countStatement(listener, conn.role, 'transaction');
      } else if (read) {
        if (this.#pinned !== null) countStatement(listener, 'primary', 'pinned');
        else if (this.#raw.primaryRequired(Date.now())) countStatement(listener, 'primary', 'read-after-write');
        else {
          const replica = await this.#replicaConn();
          if (replica === null) countStatement(listener, 'primary', this.#replicaFailed ? 'fallback' : 'no-replica');
          else {
            conn = replica;
            countStatement(listener, 'replica', 'read');
          }
        }
      } else if (this.#pinned === null && startsReadOnlyTransaction(sql)) {
        const replica = await this.#replicaConn();
        if (replica !== null) conn = replica;
        countStatement(listener, conn.role, 'transaction');
      } else {
        write = true;
        const effect = sessionEffect(sql);
        if (effect.pin !== null) this.#pin(effect.pin);
        replay = effect.replay;
        countStatement(listener, 'primary', this.#pinned !== null ? 'pinned' : 'write');
      }
    } else {
      // The binary protocol (statement ids are per connection), COM_INIT_DB, COM_PING...: the primary.
      write = command !== COM_INIT_DB && command !== 0x0e; /* COM_PING */
      countStatement(listener, conn.role, inTx !== null ? 'transaction' : this.#pinned !== null ? 'pinned' : 'write');
    }
    if (this.#closed) return;
    if (command === COM_RESET_CONNECTION) conn = this.#primary;
    this.#current = { payload, packet, conn, forwarded: false, write, replay, database, reset: command === COM_RESET_CONNECTION };
    this.#tracker.start(answerKind(command));
    conn.socket.write(packet);
    if (this.#tracker.done) this.#finish(); // no answer (COM_STMT_CLOSE, SEND_LONG_DATA)
  }

  #replicaFailed = false;

  /** The replica connection, opened on first need; null when none is usable (the read goes to the primary). */
  async #replicaConn(): Promise<Conn | null> {
    this.#replicaFailed = false;
    if (this.#replica !== null) return this.#replica;
    const endpoint = this.#o.replicas.pick();
    if (endpoint === undefined) return null;
    const opening = (this.#opening ??= this.#openReplica(endpoint));
    const conn = await opening;
    this.#opening = null;
    return conn;
  }

  async #openReplica(endpoint: string): Promise<Conn | null> {
    try {
      const handshake: HandshakeResponse = { ...this.#o.handshake, database: this.#database };
      const { socket, ok } = await openBackend(parseEndpoint(endpoint), handshake, this.#o.credentials, this.#sets, { connectMs: this.#o.connectTimeoutMs, loginMs: this.#o.loginTimeoutMs });
      if (this.#closed) {
        socket.destroy();
        return null;
      }
      const conn: Conn = { role: 'replica', socket, endpoint, status: okStatus(ok) === -1 ? SERVER_STATUS_AUTOCOMMIT : okStatus(ok) };
      this.#attach(conn);
      this.#replica = conn;
      this.#o.replicas.acquire(endpoint);
      return conn;
    } catch (err) {
      this.#replicaFailed = true;
      this.#o.replicas.markDown(endpoint, (err as Error).message);
      this.#o.log.warn({ listener: this.#o.listener, replica: endpoint, err: (err as Error).message }, 'replica connection failed: reads go to the primary');
      return null;
    }
  }

  #dropReplica(): void {
    const replica = this.#replica;
    if (replica === null) return;
    this.#replica = null;
    this.#o.replicas.release(replica.endpoint);
    replica.socket.removeAllListeners('close');
    replica.socket.removeAllListeners('end');
    replica.socket.on('error', noop);
    replica.socket.destroy();
  }

  #pin(reason: string): void {
    if (this.#pinned !== null) return;
    this.#pinned = reason;
    countPinnedSession(this.#o.listener, 1);
    this.#dropReplica();
  }

  /** The connection holding an open transaction, if any. */
  #txConn(): Conn | null {
    if (inTransaction(this.#primary.status)) return this.#primary;
    const replica = this.#replica;
    if (replica !== null && inTransaction(replica.status)) return replica;
    return null;
  }

  // ---- backend side ------------------------------------------------------

  #onBackend(conn: Conn, chunk: Buffer): void {
    const current = this.#current;
    if (current === null || current.conn !== conn) return; // nothing asked: ignore (a server's own notice before closing)
    if (conn.role === 'replica' && !current.forwarded && chunk.length >= 7 && chunk[4] === 0xff && GONE_ERRORS.has(chunk.readUInt16LE(5))) {
      // The replica is shutting down or killed this connection: the read runs on the primary.
      this.#o.replicas.markDown(conn.endpoint, `the replica answered with error ${chunk.readUInt16LE(5)}`);
      this.#dropReplica();
      this.#retryOnPrimary(current);
      return;
    }
    const used = this.#tracker.feed(chunk, 0, chunk.length);
    current.forwarded = true;
    const ok = this.#client.write(used === chunk.length ? chunk : chunk.subarray(0, used));
    if (!ok) conn.socket.pause();
    if (this.#tracker.done) this.#finish();
  }

  /** The command's answer is complete. */
  #finish(): void {
    const current = this.#current;
    if (current === null) return;
    this.#current = null;
    const tracker = this.#tracker;
    const conn = current.conn;
    if (tracker.status !== -1) conn.status = tracker.status;
    if (conn.role === 'primary') {
      if (current.write) this.#wrote = true;
      if (this.#wrote && !inTransaction(conn.status)) {
        this.#raw.noteCommittedWrite(Date.now());
        this.#wrote = false;
      }
      const succeeded = tracker.errorCode === 0;
      if (succeeded && current.database !== null) {
        this.#database = current.database;
        this.#dropReplica();
      }
      if (succeeded && current.replay && this.#pinned === null) {
        const sql = current.payload.toString('utf8', 1);
        if (this.#sets.length >= MAX_REPLAYED_SETS || this.#setBytes + sql.length > MAX_REPLAYED_BYTES) this.#pin('too many session SETs to replay');
        else {
          this.#sets.push(sql);
          this.#setBytes += sql.length;
          this.#dropReplica();
        }
      }
      if (succeeded && current.reset) {
        if (this.#pinned !== null) countPinnedSession(this.#o.listener, -1);
        this.#pinned = null;
        this.#sets.length = 0;
        this.#setBytes = 0;
        this.#database = this.#o.handshake.database;
        this.#dropReplica();
      }
    }
    this.#busy = false;
    if (this.#draining) {
      this.close();
      return;
    }
    this.#pump();
  }

  #backendGone(conn: Conn): void {
    if (this.#closed) return;
    if (conn.role === 'primary') {
      this.close();
      return;
    }
    if (this.#replica === conn) {
      this.#replica = null;
      this.#o.replicas.release(conn.endpoint);
      this.#o.replicas.markDown(conn.endpoint, 'the replica closed the connection');
    }
    const current = this.#current;
    if (current !== null && current.conn === conn) {
      if (current.forwarded || inTransaction(conn.status)) {
        // Part of the answer reached the client, or its read-only transaction is lost: it cannot go on.
        this.close();
        return;
      }
      // Nothing reached the client yet: the read runs on the primary.
      this.#retryOnPrimary(current);
    }
  }

  #retryOnPrimary(current: Command): void {
    countStatement(this.#o.listener, 'primary', 'fallback');
    current.conn = this.#primary;
    this.#tracker.start(answerKind(current.payload[0] as number));
    this.#primary.socket.write(current.packet);
  }

  // ---- answers and the end -----------------------------------------------

  /** Answers the command in flight from the proxy. */
  #answer(packet: Buffer): void {
    this.#client.write(packet);
    this.#busy = false;
    this.#pump();
  }

  #refuseAndClose(packet: Buffer): void {
    this.#client.end(packet);
    this.close();
  }

  #failed(err: unknown): void {
    this.#o.log.warn({ listener: this.#o.listener, err: (err as Error).message }, 'read/write split session failed');
    this.close();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#pinned !== null) countPinnedSession(this.#o.listener, -1);
    this.#dropReplica();
    this.#primary.socket.removeAllListeners('close');
    this.#primary.socket.on('error', noop);
    this.#primary.socket.destroy();
    if (!this.#client.destroyed) {
      if (this.#client.writableEnded) setTimeout(destroyIfOpen, 2000, this.#client).unref();
      else this.#client.destroy();
    }
    this.#resolveDone();
  }

  /** The listener drains: close once no command is in flight (or now, at the deadline). */
  drain(deadline: boolean): void {
    this.#draining = true;
    if (deadline || !this.#busy) this.close();
  }
}

function inTransaction(status: number): boolean {
  return (status & SERVER_STATUS_IN_TRANS) !== 0 || (status & SERVER_STATUS_AUTOCOMMIT) === 0;
}

function noop(): void {}

function destroyIfOpen(socket: Socket): void {
  if (!socket.destroyed) socket.destroy();
}
