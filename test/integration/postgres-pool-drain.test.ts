/**
 * A pooled postgres listener that drains closes its pool: the server
 * connections (warm ones included) are gone from pg_stat_activity once the
 * last client left, and no sweep timer keeps the process alive.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import pg from 'pg';
import { parseConfig } from '../../src/config/load.ts';
import { startProxy } from '../../src/supervisor/proxy.ts';
import { PG_HOST, PG_PORT, PG_USER, ensureDatabases, pgDirect, postgresMissing } from '../helpers/services.ts';

const DB = 'pp_pool_drain';
const PASSWORD = 'drain secret';
let skip: string | null = null;

before(async () => {
  skip = await postgresMissing();
  if (skip !== null) return;
  await ensureDatabases([DB]);
});

async function serverConnections(): Promise<number> {
  const rows = await pgDirect<{ n: string }>(`select count(*) as n from pg_stat_activity where datname = '${DB}' and backend_type = 'client backend'`);
  return Number(rows[0]?.n ?? 0);
}

test('drain closes the pool: its server connections, warm and used, are gone once the clients left', async (t) => {
  if (skip !== null) return t.skip(skip);
  const config = parseConfig(
    {
      workers: 1,
      logLevel: 'silent',
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: { [DB]: `${PG_HOST}:${PG_PORT}` },
      listeners: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0, auth: { users: { [PG_USER]: { password: PASSWORD } } }, pool: { mode: 'transaction', size: 4, minSize: 2 } }],
    },
    process.cwd(),
  );
  const proxy = await startProxy(config);
  const port = proxy.bound[0]?.port as number;
  const clients = Array.from({ length: 4 }, () => new pg.Client({ host: '127.0.0.1', port, user: PG_USER, password: PASSWORD, database: DB }));
  try {
    await Promise.all(clients.map((c) => c.connect()));
    await Promise.all(clients.map((c) => c.query('select pg_sleep(0.05)')));
    assert.ok((await serverConnections()) >= 2);
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
  await proxy.drain(2000);
  let left = await serverConnections();
  // The Terminates are on their way: PostgreSQL drops the backends within moments.
  for (let i = 0; i < 200 && left > 0; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    left = await serverConnections();
  }
  assert.equal(left, 0, 'server connections still open after the drain');
});
