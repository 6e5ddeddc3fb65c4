/**
 * Opening one MySQL backend connection for the read/write split: dial,
 * log in as the listener's backendUser for the client's handshake (its
 * database, character set, capabilities), and run setup statements (the
 * session's replayed SETs) whose answers are OK or ERR. Used for replica
 * connections and by the lag probe; the primary is dialled through the
 * router (breakers, cold start) and logged in by the session itself.
 */
import type { Socket } from 'node:net';
import { BackendReader } from '../../../core/backend-reader.ts';
import { connectEndpoint } from '../../../core/connect.ts';
import { Deadline } from '../../../core/deadline.ts';
import type { Endpoint } from '../../../core/endpoint.ts';
import { PolyproxyError } from '../../../core/errors.ts';
import { loginToBackend } from '../auth/backend-login.ts';
import type { BackendCredentials } from '../auth/backend-login.ts';
import { COM_QUERY, ERR_HEADER, OK_HEADER, encodePacket, packetParser, parseErr } from '../packets.ts';
import type { HandshakeResponse, Packet } from '../packets.ts';

const readPacket = packetParser(16 * 1024 * 1024, 'backend');

export interface LoggedIn {
  readonly socket: Socket;
  /** The login OK's payload. */
  readonly ok: Buffer;
}

/** The server status flags of an OK payload (-1 when it is too short). */
export function okStatus(payload: Buffer): number {
  let at = 1;
  for (let k = 0; k < 2; k++) {
    const b = payload[at];
    if (b === undefined) return -1;
    at += b < 0xfb ? 1 : b === 0xfc ? 3 : b === 0xfd ? 4 : 9;
  }
  return at + 2 <= payload.length ? payload.readUInt16LE(at) : -1;
}

/**
 * Dials `endpoint` and logs in; then runs `setup` one statement at a time.
 * Rejects with PolyproxyError (and closes the socket) on any failure; an
 * ERR to a setup statement rejects with its message.
 */
export async function openBackend(
  endpoint: Endpoint,
  client: HandshakeResponse,
  credentials: BackendCredentials,
  setup: readonly string[],
  timeouts: { connectMs: number; loginMs: number },
  signal?: AbortSignal,
): Promise<LoggedIn> {
  const socket = await connectEndpoint(endpoint, timeouts.connectMs);
  const reader = new BackendReader(socket, 'the replica login');
  const deadline = new Deadline(timeouts.loginMs);
  const late = (): PolyproxyError => new PolyproxyError('BACKEND_UNREACHABLE', `${endpoint.label} did not finish its login within ${timeouts.loginMs} ms`, { source: 'backend' });
  const onAbort = (): void => {
    socket.destroy();
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const ok = await loginToBackend(socket, reader, deadline, late, client, credentials, 0);
    for (const sql of setup) {
      const answer = await query(socket, reader, deadline, late, sql);
      if (answer.payload[0] === ERR_HEADER) {
        const info = parseErr(answer.payload);
        throw new PolyproxyError('UNAVAILABLE', `${endpoint.label} refused the session's ${sql.slice(0, 60)}: ${info.code} ${info.message}`, { source: 'backend' });
      }
      if (answer.payload[0] !== OK_HEADER) throw new PolyproxyError('PROTOCOL', `${endpoint.label} answered ${sql.slice(0, 60)} with a result set`, { source: 'backend' });
    }
    if (reader.leftover() !== null) throw new PolyproxyError('PROTOCOL', `${endpoint.label} sent bytes after the login`, { source: 'backend' });
    return { socket, ok };
  } catch (err) {
    socket.destroy();
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    deadline.clear();
    reader.dispose();
  }
}

/** Sends one COM_QUERY and reads the first packet of its answer. */
export function query(socket: Socket, reader: BackendReader, deadline: Deadline, late: () => PolyproxyError, sql: string): Promise<Packet> {
  socket.write(encodePacket(0, Buffer.concat([Buffer.from([COM_QUERY]), Buffer.from(sql, 'utf8')])));
  return deadline.wait(reader.read(readPacket), late);
}

/** Reads the next packet. */
export function next(reader: BackendReader, deadline: Deadline, late: () => PolyproxyError): Promise<Packet> {
  return deadline.wait(reader.read(readPacket), late);
}
