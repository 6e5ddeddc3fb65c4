/**
 * The MySQL/MariaDB replica lag probe of the read/write split (core
 * ReplicaSet's LagProbe): logs in to the replica as the listener's
 * backendUser, runs `SHOW REPLICA STATUS` and returns
 * Seconds_Behind_Master (MariaDB) / Seconds_Behind_Source (MySQL) in ms.
 * No row (not a replica), a NULL lag (the SQL thread is stopped or never
 * connected), or an IO or SQL thread that is not running: the replica is
 * down (throws). backendUser needs the REPLICA MONITOR privilege on
 * MariaDB (REPLICATION CLIENT on MySQL) to run it.
 */
import { BackendReader } from '../../../core/backend-reader.ts';
import { connectEndpoint } from '../../../core/connect.ts';
import { Deadline } from '../../../core/deadline.ts';
import { parseEndpoint } from '../../../core/endpoint.ts';
import { PolyproxyError } from '../../../core/errors.ts';
import type { LagProbe } from '../../../core/rw-split/replica-set.ts';
import { loginToBackend } from '../auth/backend-login.ts';
import type { BackendCredentials } from '../auth/backend-login.ts';
import {
  CLIENT_LONG_PASSWORD,
  CLIENT_PLUGIN_AUTH,
  CLIENT_PROTOCOL_41,
  CLIENT_SECURE_CONNECTION,
  CLIENT_TRANSACTIONS,
  ERR_HEADER,
  Reader,
  parseErr,
} from '../packets.ts';
import type { HandshakeResponse } from '../packets.ts';
import { next, query } from './backend-session.ts';

/** The probe's own handshake: classic framing (EOF packets), no database, no attributes. */
const PROBE_CLIENT: HandshakeResponse = {
  type: 'response',
  capabilities: (CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH | CLIENT_TRANSACTIONS) >>> 0,
  maxPacket: 16 * 1024 * 1024,
  charset: 45,
  reserved: Buffer.alloc(23),
  user: '',
  authResponse: Buffer.alloc(0),
  database: '',
  plugin: '',
  attributes: null,
  rawAttributes: null,
};

/** The probe for one listener's backendUser; `timeoutMs` bounds one probe (connect, login, query). */
export function mysqlLagProbe(credentials: BackendCredentials, timeoutMs: number): LagProbe {
  return async (text, signal) => {
    const endpoint = parseEndpoint(text);
    const socket = await connectEndpoint(endpoint, timeoutMs);
    const reader = new BackendReader(socket, 'the lag probe');
    const deadline = new Deadline(timeoutMs);
    const late = (): PolyproxyError => new PolyproxyError('TIMEOUT', `lag probe of ${text} timed out after ${timeoutMs} ms`, { source: 'backend' });
    const onAbort = (): void => {
      socket.destroy();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await loginToBackend(socket, reader, deadline, late, PROBE_CLIENT, credentials, 0);
      const first = await query(socket, reader, deadline, late, 'SHOW REPLICA STATUS');
      if (first.payload[0] === ERR_HEADER) {
        const info = parseErr(first.payload);
        throw new PolyproxyError('UNAVAILABLE', `SHOW REPLICA STATUS on ${text}: ${info.code} ${info.message}`, { source: 'backend' });
      }
      const columns = new Reader(first.payload, 'column count', 0, 'backend').lenenc('column count');
      const names: string[] = [];
      for (let i = 0; i < columns; i++) {
        const r = new Reader((await next(reader, deadline, late)).payload, 'column definition', 0, 'backend');
        for (let k = 0; k < 4; k++) r.lenencBytes('column definition'); // catalog, schema, table, org_table
        names.push(r.lenencBytes('column name').toString('utf8'));
      }
      await next(reader, deadline, late); // EOF
      const row = (await next(reader, deadline, late)).payload;
      if (row[0] === 0xfe && row.length < 9) throw new PolyproxyError('UNAVAILABLE', `${text} is not a replica (SHOW REPLICA STATUS has no row)`, { source: 'backend' });
      const values = new Map<string, string | null>();
      const r = new Reader(row, 'status row', 0, 'backend');
      for (const name of names) {
        if (r.buf[r.at] === 0xfb) {
          r.at++;
          values.set(name, null);
        } else values.set(name, r.lenencBytes('status value').toString('utf8'));
      }
      socket.end();
      const io = values.get('Slave_IO_Running') ?? values.get('Replica_IO_Running');
      const sql = values.get('Slave_SQL_Running') ?? values.get('Replica_SQL_Running');
      const behind = values.has('Seconds_Behind_Master') ? values.get('Seconds_Behind_Master') : values.get('Seconds_Behind_Source');
      if (io !== 'Yes' || sql !== 'Yes') throw new PolyproxyError('UNAVAILABLE', `${text}: replication is not running (IO ${String(io)}, SQL ${String(sql)})`, { source: 'backend' });
      if (behind === null || behind === undefined || !/^\d+$/.test(behind)) throw new PolyproxyError('UNAVAILABLE', `${text}: replica lag unknown (Seconds_Behind_Master ${String(behind)})`, { source: 'backend' });
      return Number(behind) * 1000;
    } finally {
      signal.removeEventListener('abort', onAbort);
      deadline.clear();
      reader.dispose();
      socket.destroy();
    }
  };
}
