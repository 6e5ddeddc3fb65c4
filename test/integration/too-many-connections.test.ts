/**
 * A listener's maxConnections: the client past the limit gets its
 * protocol's "too many connections" error, and the sessions already open
 * keep working.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { parseConfig } from '../../src/config/load.ts';
import { startProxy } from '../../src/supervisor/proxy.ts';
import { MY_HOST, MY_PORT, MY_USER, mariadbMissing } from '../helpers/mariadb.ts';
import { PG_HOST, PG_PORT, PG_USER, ensureDatabases, postgresMissing } from '../helpers/services.ts';

function config(protocol: 'postgres' | 'mysql', backend: string) {
  return parseConfig({ workers: 1, logLevel: 'silent', listeners: [{ name: protocol, protocol, host: '127.0.0.1', port: 0, backend, maxConnections: 1 }] }, process.cwd());
}

test('postgres: past maxConnections the client gets 53300', async (t) => {
  const skip = await postgresMissing();
  if (skip !== null) return t.skip(skip);
  await ensureDatabases(['pp_alpha']);
  const proxy = await startProxy(config('postgres', `${PG_HOST}:${PG_PORT}`));
  const port = proxy.bound[0]?.port ?? 0;
  const first = new pg.Client({ host: '127.0.0.1', port, user: PG_USER, database: 'pp_alpha' });
  try {
    await first.connect();
    const second = new pg.Client({ host: '127.0.0.1', port, user: PG_USER, database: 'pp_alpha' });
    second.on('error', () => {});
    await assert.rejects(second.connect(), (err: { code?: string; message: string }) => err.code === '53300' && /too many clients/.test(err.message));
    assert.equal((await first.query<{ n: number }>('select 1 as n')).rows[0]?.n, 1);
  } finally {
    await first.end();
    await proxy.drain(1000);
  }
});

test('mysql: past maxConnections the client gets ERR 1040 in place of the greeting', async (t) => {
  const skip = await mariadbMissing();
  if (skip !== null) return t.skip(skip);
  const proxy = await startProxy(config('mysql', `${MY_HOST}:${MY_PORT}`));
  const port = proxy.bound[0]?.port ?? 0;
  const first = await mysql.createConnection({ host: '127.0.0.1', port, user: MY_USER });
  try {
    await assert.rejects(
      mysql.createConnection({ host: '127.0.0.1', port, user: MY_USER }),
      // Sent before any handshake, as mysqld does: an ERR in place of the greeting carries no SQLSTATE.
      (err: { errno?: number; code?: string }) => err.errno === 1040 && err.code === 'ER_CON_COUNT_ERROR',
    );
    const [rows] = await first.query('select 1 as n');
    assert.equal((rows as Array<{ n: number }>)[0]?.n, 1);
  } finally {
    await first.end();
    await proxy.drain(1000);
  }
});
