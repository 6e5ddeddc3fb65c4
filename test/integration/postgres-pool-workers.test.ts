/**
 * Pool limits are for the whole proxy: with `workers: 2` each worker gets
 * half of `size`, so PostgreSQL never sees more than `size` server
 * connections for the pool, however the kernel spreads the clients.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { PG_HOST, PG_PORT, PG_USER, ensureDatabases, postgresMissing } from '../helpers/services.ts';

const DB = 'pp_pool_workers';
const PASSWORD = 'workers secret';
const SIZE = 4;
let skip: string | null = null;
let proxy: RunningCli | undefined;

before(async () => {
  skip = await postgresMissing();
  if (skip !== null) return;
  await ensureDatabases([DB]);
  const file = await writeConfig({
    workers: 2,
    logLevel: 'warn',
    security: { allowBackends: ['127.0.0.0/8'] },
    routes: { [DB]: `${PG_HOST}:${PG_PORT}` },
    listeners: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0, auth: { users: { [PG_USER]: { password: PASSWORD } } }, pool: { mode: 'transaction', size: SIZE, queueTimeoutMs: 20000 } }],
  });
  // Two workers each load the whole proxy: on a loaded machine that takes a while.
  proxy = await startCli(['--config', file], 60_000);
});

after(async () => {
  await proxy?.stop();
});

test('workers: 2 — the pool size holds for the whole proxy, not per worker', async (t) => {
  if (skip !== null) return t.skip(skip);
  const port = (proxy as RunningCli).port('pg');
  const clients = Array.from({ length: 12 }, () => new pg.Client({ host: '127.0.0.1', port, user: PG_USER, password: PASSWORD, database: DB }));
  let max = 0;
  let running = true;
  const watcher = new pg.Client({ host: PG_HOST, port: PG_PORT, user: PG_USER, database: 'postgres' });
  await watcher.connect();
  const watch = (async () => {
    while (running) {
      const { rows } = await watcher.query<{ n: string }>(`select count(*) as n from pg_stat_activity where datname = '${DB}' and backend_type = 'client backend'`);
      max = Math.max(max, Number(rows[0]?.n ?? 0));
    }
  })();
  try {
    await Promise.all(clients.map((c) => c.connect()));
    for (let round = 0; round < 2; round++) await Promise.all(clients.map((c) => c.query('select pg_sleep(0.05)')));
  } finally {
    running = false;
    await watch;
    await watcher.end();
    await Promise.all(clients.map((c) => c.end()));
  }
  assert.ok(max >= 2, `pg_stat_activity showed ${max} server connections`);
  assert.ok(max <= SIZE, `pg_stat_activity showed ${max} server connections for a pool of ${SIZE} over two workers`);
});
