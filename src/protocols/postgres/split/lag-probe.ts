/**
 * A PostgreSQL standby's replay lag, for the read/write split's ReplicaSet
 * (core/rw-split/replica-set.ts). One connection per replica, kept open
 * between probes and logged in with the pool's backend login (the
 * credentials the route's sessions log in to the servers with), asks:
 *
 *   - pg_is_in_recovery(): false means not a standby (promoted, or not a
 *     replica at all): the probe fails, the replica gets no reads;
 *   - lag 0 when everything received is replayed (receive LSN = replay
 *     LSN: an idle primary sends nothing, and "time since the last replayed
 *     commit" would grow forever), else now() - pg_last_xact_replay_timestamp()
 *     (over-estimates after a quiet spell: never under).
 *
 * Any failure (connect, login, query, the AbortSignal's timeout) closes the
 * connection and rejects: the replica is down until a later probe succeeds.
 */
import type { Socket } from 'node:net';
import { BackendReader } from '../../../core/backend-reader.ts';
import { connectEndpoint } from '../../../core/connect.ts';
import type { Endpoint } from '../../../core/endpoint.ts';
import { parseEndpoint } from '../../../core/endpoint.ts';
import type { LagProbe } from '../../../core/rw-split/replica-set.ts';
import { backendLogin } from '../auth/backend-login.ts';
import { MSG_ERROR, MSG_READY, message, messageParser, parseFields } from '../auth/messages.ts';
import type { BackendCredentials } from '../auth/types.ts';

export const LAG_QUERY =
  'SELECT pg_is_in_recovery(), CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 ' +
  'ELSE (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::float8 END';

const readMessage = messageParser(64 * 1024, 'backend');
const TERMINATE = message(0x58, Buffer.alloc(0));

export interface LagProbeLogin {
  readonly database: string;
  readonly user: string;
  readonly credentials: BackendCredentials;
}

interface ProbeConnection {
  readonly socket: Socket;
  readonly reader: BackendReader;
}

/** A LagProbe over kept connections (one per replica endpoint); `close` ends them. */
export function postgresLagProbe(login: LagProbeLogin): LagProbe & { close(): void } {
  const connections = new Map<string, ProbeConnection>();
  const probe = async (endpointText: string, signal: AbortSignal): Promise<number> => {
    let conn = connections.get(endpointText);
    try {
      if (conn === undefined || conn.socket.destroyed) {
        conn = await open(parseEndpoint(endpointText), login, signal);
        connections.set(endpointText, conn);
      }
      return await ask(conn, signal);
    } catch (err) {
      if (conn !== undefined) drop(conn);
      connections.delete(endpointText);
      throw err;
    }
  };
  return Object.assign(probe, {
    close(): void {
      for (const conn of connections.values()) {
        if (!conn.socket.destroyed) conn.socket.end(TERMINATE);
        drop(conn);
      }
      connections.clear();
    },
  });
}

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    const fail = (): void => reject(new Error('lag probe timed out'));
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}

async function open(endpoint: Endpoint, login: LagProbeLogin, signal: AbortSignal): Promise<ProbeConnection> {
  const timeout = aborted(signal);
  timeout.catch(noop);
  const connecting = connectEndpoint(endpoint, 5000);
  let socket: Socket;
  try {
    socket = await Promise.race([connecting, timeout]);
  } catch (err) {
    connecting.then(destroy, noop);
    throw err;
  }
  socket.unref(); // a probe never keeps the process alive
  socket.on('error', noop);
  try {
    const logging = backendLogin(socket, { user: login.user, database: login.database, credentials: login.credentials, timeoutMs: 5000 });
    logging.catch(noop);
    const result = await Promise.race([logging, timeout]);
    const reader = new BackendReader(socket, 'the lag probe');
    if (result.leftover !== null) socket.unshift(result.leftover);
    socket.resume();
    return { socket, reader };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

async function ask(conn: ProbeConnection, signal: AbortSignal): Promise<number> {
  const timeout = aborted(signal);
  timeout.catch(noop);
  conn.socket.write(queryMessage);
  let inRecovery: string | null = null;
  let lag: string | null = null;
  let failure: Error | null = null;
  while (true) {
    const msg = await Promise.race([conn.reader.read(readMessage), timeout]);
    switch (msg.type) {
      case 0x44: // DataRow
        inRecovery = column(msg.body, 0);
        lag = column(msg.body, 1);
        break;
      case MSG_ERROR: {
        const fields = parseFields(msg.body);
        failure = new Error(`lag query failed: ${fields?.get('M') ?? 'malformed ErrorResponse'} (SQLSTATE ${fields?.get('C') ?? '?'})`);
        break;
      }
      case MSG_READY:
        if (failure !== null) throw failure;
        if (inRecovery !== 't') throw new Error('not a standby: pg_is_in_recovery() is false');
        if (lag === null) throw new Error('lag unknown: WAL received but no transaction replayed yet');
        return Number(lag);
      default:
        break; // RowDescription, CommandComplete, NoticeResponse, ParameterStatus
    }
  }
}

const queryMessage = message(0x51, Buffer.from(`${LAG_QUERY}\0`));

/** Column `index` of a DataRow as text (null for SQL NULL). */
function column(body: Buffer, index: number): string | null {
  let at = 2;
  for (let i = 0; at + 4 <= body.length; i++) {
    const length = body.readInt32BE(at);
    at += 4;
    if (i === index) return length < 0 ? null : body.toString('utf8', at, at + length);
    if (length > 0) at += length;
  }
  return null;
}

function drop(conn: ProbeConnection): void {
  conn.reader.dispose();
  if (!conn.socket.destroyed) conn.socket.destroy();
}

function destroy(socket: Socket): void {
  socket.destroy();
}

function noop(): void {}
