/**
 * One logged-in connection from the proxy to a PostgreSQL server, as a pool
 * holds it: its socket (read through the process's shared read buffer),
 * its BackendKeyData (to forward a client's cancel), the parameters it runs
 * with, the prepared statements it holds, and the client session it serves
 * now (null while idle). Its messages are framed by its own MessageReader
 * (a message may straddle reads; a server changes hands only between
 * messages) and handed to the session it serves.
 */
import type { Socket } from 'node:net';
import type { Endpoint } from '../../../core/endpoint.ts';
import { readBuffer } from '../../../core/io/shared-read-buffer.ts';
import { adoptSharedReadBuffer } from '../../../core/io/socket-onread.ts';
import { reclaimLent } from '../../../core/io/shared-read-buffer.ts';
import { handleOwner, lastReadResult, passReadToSocket } from '../../../core/io/stream-handle.ts';
import type { StreamHandle } from '../../../core/io/stream-handle.ts';
import { MessageReader, Outbox, readDirect } from './framing.ts';
import type { MessageOwner } from './framing.ts';
import { TERMINATE } from './messages.ts';
import type { ParameterValues } from './parameters.ts';
import { UNREPORTED, trackedName } from './parameters.ts';

/** What a server connection reports to (the session it serves). */
export interface ServerUser extends MessageOwner {
  /** The server connection ended (closed by the server, reset, or errored) while serving this session. */
  serverLost(server: ServerConnection, why: string): void;
  /** The server can take more bytes (after a write returned false). */
  serverDrained(): void;
  /** A read from the server was handled: write what it produced for the client. */
  serverReadDone(): void;
}

/** What a server connection reports to while idle (its pool). */
export interface ServerHome {
  /** The connection's socket closed (whoever closed it, active or idle): forget it, once. */
  serverGone(server: ServerConnection): void;
}

export const SERVER_IDLE = 0;
export const SERVER_ACTIVE = 1;
export const SERVER_CLOSED = 2;

const kServer = Symbol('polyproxy.pg.server');
type ServerSocket = Socket & { [kServer]?: ServerConnection };

let nextServerId = 1;

export class ServerConnection {
  readonly id = nextServerId++;
  readonly socket: Socket;
  readonly endpoint: Endpoint;
  readonly home: ServerHome;
  readonly processId: number;
  readonly secretKey: Buffer;
  /** Tracked parameters as this connection runs them (parameters.ts). */
  readonly params: ParameterValues;
  /** fingerprint(params), or null when params changed since it was taken (parameters.ts). */
  paramsKey: string | null = null;
  /** Server-side statement names prepared here (prepared-statements.ts). */
  readonly prepared = new Set<string>();
  readonly reader: MessageReader;
  readonly outbox = new Outbox();
  user: ServerUser | null = null;
  state = SERVER_IDLE;
  /** Date.now() when it last went idle (the idle sweep). */
  idleSince = Date.now();
  /** Set when it must not be reused (a FATAL error, an unexpected message, a broken reset). */
  broken = false;
  /** Transactions and queries it ran (stats). */
  readonly createdAt = Date.now();

  constructor(socket: Socket, endpoint: Endpoint, home: ServerHome, login: { processId: number; secretKey: Buffer; parameters: ReadonlyMap<string, string> }) {
    this.socket = socket;
    this.endpoint = endpoint;
    this.home = home;
    this.processId = login.processId;
    this.secretKey = login.secretKey;
    this.params = new Map();
    for (const [name, value] of login.parameters) {
      const tracked = trackedName(name);
      if (tracked !== undefined) this.params.set(tracked, value);
    }
    for (const name of UNREPORTED) if (!this.params.has(name)) this.params.set(name, null);
    this.reader = new MessageReader(relayTo(this));
    (socket as ServerSocket)[kServer] = this;
    socket.setNoDelay?.(true);
    if (!adoptSharedReadBuffer(socket, serverOnRead)) socket.on('data', serverOnData);
    else readDirect(socket, this, serverHandleOnRead);
    socket.on('error', serverOnError);
    socket.on('close', serverOnClose);
    socket.on('end', serverOnEnd);
    socket.on('drain', serverOnDrain);
  }

  /** Pushes bytes from the server through the reader (to the session it serves, or refuses them while idle). */
  receive(chunk: Buffer, start: number, end: number): void {
    if (this.user === null) {
      // A server must not speak unasked (a NOTICE before an admin shutdown, say): drop it.
      this.broken = true;
      this.close();
      return;
    }
    try {
      this.reader.push(chunk, start, end);
    } catch (err) {
      this.fail(`unreadable server message: ${(err as Error).message}`);
      return;
    }
    // The session it serves now (it may have changed hands at a ReadyForQuery in this read).
    this.user?.serverReadDone();
  }

  /** Ends the connection because it is unusable; the session it serves hears serverLost. */
  fail(why: string): void {
    this.broken = true;
    const user = this.user;
    this.close();
    if (user !== null) user.serverLost(this, why);
  }

  /** Closes for good (a Terminate first when the socket is still writable). */
  close(): void {
    if (this.state === SERVER_CLOSED) return;
    this.state = SERVER_CLOSED;
    const socket = this.socket;
    socket.on('error', noop);
    if (!socket.destroyed) {
      if (socket.writable) socket.end(TERMINATE);
      socket.destroy();
    }
  }

  write(bytes: Buffer): boolean {
    if (this.socket.destroyed) return true;
    return this.socket.write(bytes);
  }
}

/** The reader's owner is the connection's current user; a tiny forwarder made once per connection. */
function relayTo(server: ServerConnection): MessageOwner {
  return {
    messageStart: (type, length) => (server.user as ServerUser).messageStart(type, length),
    messageBytes: (bytes, start, end) => (server.user as ServerUser).messageBytes(bytes, start, end),
    messageEnd: (type) => (server.user as ServerUser).messageEnd(type),
    messageWhole: (type, body, start, end) => (server.user as ServerUser).messageWhole(type, body, start, end),
  };
}

function serverOnRead(this: ServerSocket, nread: number): boolean {
  const server = this[kServer] as ServerConnection;
  server.receive(readBuffer, 0, nread);
  return true; // pausing is socket.pause() (readStop in onread mode)
}

function serverHandleOnRead(this: StreamHandle, arrayBuffer?: ArrayBuffer): unknown {
  const nread = lastReadResult();
  if (nread <= 0) return passReadToSocket(this, arrayBuffer);
  (handleOwner(this) as ServerConnection).receive(readBuffer, 0, nread);
  return undefined;
}

function serverOnData(this: ServerSocket, chunk: Buffer): void {
  (this[kServer] as ServerConnection).receive(chunk, 0, chunk.length);
}

function serverOnDrain(this: ServerSocket): void {
  reclaimLent(this);
  const server = this[kServer] as ServerConnection;
  server.user?.serverDrained();
}

function serverOnEnd(this: ServerSocket): void {
  this.destroy();
}

function serverOnError(this: ServerSocket): void {
  // 'close' follows.
}

function serverOnClose(this: ServerSocket): void {
  const server = this[kServer] as ServerConnection;
  server.state = SERVER_CLOSED;
  server.broken = true;
  const user = server.user;
  // The pool counts it gone exactly once, here; the session it served (if any) hears it too.
  server.home.serverGone(server);
  if (user !== null) user.serverLost(server, 'the server closed the connection');
}

function noop(): void {}
