/**
 * A PostgreSQL standby's replay lag, for the read/write split's ReplicaSet
 * (core/rw-split/replica-set.ts). One connection per replica, kept open
 * between probes and logged in with the pool's backend login (the
 * credentials the route's sessions log in to the servers with), asks:
 *
 *   - pg_is_in_recovery(): false means not a standby (promoted, or not a
 *     replica at all): the probe fails, the replica gets no reads;
 *   - the receive and replay LSNs and now() - pg_last_xact_replay_timestamp(),
 *     from which ReplayLagEstimate (replay-lag.ts) makes the lag: 0 when
 *     everything received is replayed (an idle primary sends nothing, and
 *     "time since the last replayed commit" would grow forever), else an
 *     upper bound that a quiet spell on the primary does not inflate; a
 *     standby seen behind is asked again a few times before the answer
 *     stands (`ask`).
 *
 * Any failure (connect, login, query, the AbortSignal's timeout) closes the
 * connection and rejects: the replica is down until a later probe succeeds.
 */
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { BackendReader } from '../../../core/backend-reader.ts';
import { connectEndpoint } from '../../../core/connect.ts';
import type { Endpoint } from '../../../core/endpoint.ts';
import { parseEndpoint } from '../../../core/endpoint.ts';
import type { LagProbe } from '../../../core/rw-split/replica-set.ts';
import { backendLogin } from '../auth/backend-login.ts';
import { ReplayLagEstimate } from './replay-lag.ts';
import { MSG_ERROR, MSG_READY, message, messageParser, parseFields } from '../auth/messages.ts';
import type { BackendCredentials } from '../auth/types.ts';

// LSNs as float8 byte positions: exact up to 2^53 bytes of WAL.
export const LAG_QUERY =
  "SELECT pg_is_in_recovery(), pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::float8, " +
  "pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::float8, " +
  '(extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::float8';

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
  /** This connection's earlier answers (a new connection may reach another server). */
  readonly estimate: ReplayLagEstimate;
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
    return { socket, reader, estimate: new ReplayLagEstimate() };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/**
 * A standby caught behind what it received is asked again every
 * FOLLOW_UP_MS for up to FOLLOW_UP_FOR_MS, until the estimate is under
 * SETTLED_MS: most such gaps close within milliseconds (a commit in
 * flight), or within the primary's wal_writer_delay (200 ms by default: a
 * record whose first part was flushed up to a page boundary waits for its
 * rest), and a later answer bounds the lag by its own spacing instead of a
 * whole probe interval. A standby that stays behind is answered as behind.
 */
const FOLLOW_UP_MS = 10;
const FOLLOW_UP_FOR_MS = 300;
const SETTLED_MS = 50;

async function ask(conn: ProbeConnection, signal: AbortSignal): Promise<number> {
  const timeout = aborted(signal);
  timeout.catch(noop);
  const started = performance.now();
  let lag = await askOnce(conn, timeout);
  while (lag > SETTLED_MS && performance.now() - started < FOLLOW_UP_FOR_MS) {
    await Promise.race([sleep(FOLLOW_UP_MS, undefined, { ref: false }), timeout]);
    lag = await askOnce(conn, timeout);
  }
  return lag;
}

async function askOnce(conn: ProbeConnection, timeout: Promise<never>): Promise<number> {
  const sentAt = performance.now();
  conn.socket.write(queryMessage);
  let row: Buffer | null = null;
  let failure: Error | null = null;
  while (true) {
    const msg = await Promise.race([conn.reader.read(readMessage), timeout]);
    switch (msg.type) {
      case 0x44: // DataRow
        row = msg.body;
        break;
      case MSG_ERROR: {
        const fields = parseFields(msg.body);
        failure = new Error(`lag query failed: ${fields?.get('M') ?? 'malformed ErrorResponse'} (SQLSTATE ${fields?.get('C') ?? '?'})`);
        break;
      }
      case MSG_READY:
        if (failure !== null) throw failure;
        if (row === null || column(row, 0) !== 't') throw new Error('not a standby: pg_is_in_recovery() is false');
        return conn.estimate.sample({
          sentAt,
          answeredAt: performance.now(),
          receiveLsn: numberOrNull(column(row, 1)),
          replayLsn: numberOrNull(column(row, 2)),
          sinceLastReplayedCommitMs: numberOrNull(column(row, 3)),
        });
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

function numberOrNull(text: string | null): number | null {
  return text === null ? null : Number(text);
}

function drop(conn: ProbeConnection): void {
  conn.reader.dispose();
  if (!conn.socket.destroyed) conn.socket.destroy();
}

function destroy(socket: Socket): void {
  socket.destroy();
}

function noop(): void {}
