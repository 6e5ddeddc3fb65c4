/**
 * The postgres listener with `auth` and `pool` through the real CLI (two
 * workers): clients log in to the proxy with SCRAM (pg, psql, pgbench),
 * share a transaction pool, cancel through it, and the pools show on
 * /api/stats and /metrics. A wrong password is refused before any pooling
 * (28P01).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { request } from 'undici';
import type { ProxyStats } from '../../src/admin/source.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { parsePrometheus, sample } from '../helpers/prometheus.ts';
import { PG_HOST, PG_PORT, PG_USER, ensureDatabases, pgDirect, postgresMissing } from '../helpers/services.ts';

const DB = 'pp_pool_cli';
const PASSWORD = 'pool secret';
let skip: string | null = null;
let proxy: RunningCli | undefined;
let port = 0;
let admin = '';

before(async () => {
  skip = await postgresMissing();
  if (skip !== null) return;
  await ensureDatabases([DB]);
  const file = await writeConfig({
    workers: 1,
    logLevel: 'warn',
    admin: { host: '127.0.0.1', port: 0 },
    security: { allowBackends: ['127.0.0.0/8'] },
    routes: { [DB]: `${PG_HOST}:${PG_PORT}` },
    listeners: [
      {
        name: 'pg',
        protocol: 'postgres',
        host: '127.0.0.1',
        port: 0,
        // The machine's PostgreSQL trusts loopback: the proxy logs in with the password, the server does not ask.
        auth: { users: { [PG_USER]: { password: PASSWORD } } },
        pool: { mode: 'transaction', size: 3, queueTimeoutMs: 10000 },
      },
    ],
  });
  proxy = await startCli(['--config', file]);
  port = proxy.port('pg');
  admin = `http://127.0.0.1:${(proxy.ready as unknown as { admin: AddressInfo }).admin.port}`;
});

after(async () => {
  await proxy?.stop();
});

function client(password = PASSWORD): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port, user: PG_USER, password, database: DB, application_name: 'pp_pool_cli_app' });
}

test('50 clients log in with SCRAM and share a transaction pool of 3', async (t) => {
  if (skip !== null) return t.skip(skip);
  const clients = Array.from({ length: 50 }, () => client());
  try {
    await Promise.all(clients.map((c) => c.connect()));
    const results = await Promise.all(clients.map(async (c, i) => (await c.query<{ n: number }>({ name: 'pp_cli_stmt', text: 'select $1::int as n', values: [i] })).rows[0]?.n));
    results.forEach((n, i) => assert.equal(n, i));
    const [row] = await pgDirect<{ n: string }>(`select count(*) as n from pg_stat_activity where datname = '${DB}'`);
    assert.ok(Number(row?.n) <= 3, `${row?.n} server connections`);
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
});

test('a wrong password is refused with 28P01 before any server connection is used', async (t) => {
  if (skip !== null) return t.skip(skip);
  const c = client('wrong');
  await assert.rejects(c.connect(), (err: { code?: string; message?: string }) => err.code === '28P01' && err.message === `password authentication failed for user "${PG_USER}"`);
});

test('an unsupported startup parameter is refused with 08P01', async (t) => {
  if (skip !== null) return t.skip(skip);
  const c = new pg.Client({ host: '127.0.0.1', port, user: PG_USER, password: PASSWORD, database: DB, options: '-c geqo=off' });
  await assert.rejects(c.connect(), (err: { code?: string; message?: string }) => err.code === '08P01' && /unsupported startup parameter in options: geqo/.test(err.message ?? ''));
});

test('cancel of a running query through the listener', async (t) => {
  if (skip !== null) return t.skip(skip);
  const c = client();
  await c.connect();
  try {
    const query = c.query('select pg_sleep(30) /* pp_pool_cli_cancel */');
    for (let i = 0; i < 500; i++) {
      const rows = await pgDirect(`select 1 from pg_stat_activity where state = 'active' and query like '%pp_pool_cli_cancel%' and pid <> pg_backend_pid()`);
      if (rows.length > 0) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const canceller = client();
    (canceller as unknown as { cancel(c: pg.Client, q: unknown): void }).cancel(c, (c as unknown as { activeQuery: unknown }).activeQuery);
    await assert.rejects(query, (err: { code?: string }) => err.code === '57014');
  } finally {
    await c.end();
  }
});

test('pgbench -M extended through the listener (PGPASSWORD, SCRAM)', async (t) => {
  if (skip !== null) return t.skip(skip);
  const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
    const child = spawn('pgbench', ['-n', '-M', 'extended', '-c', '8', '-j', '2', '-T', '2', '-h', '127.0.0.1', '-p', String(port), '-U', PG_USER, '-f', '-', DB], {
      env: { ...process.env, PGPASSWORD: PASSWORD },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let text = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (text += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (text += s));
    child.once('exit', (code) => resolve({ code, text }));
    child.stdin.end('\\set n random(1, 1000)\nselect :n::int + 1;\n');
  });
  assert.equal(out.code, 0, out.text);
  assert.match(out.text, /number of failed transactions: 0 /);
});

test('pools on /api/stats and /metrics', async (t) => {
  if (skip !== null) return t.skip(skip);
  const stats = (await (await request(`${admin}/api/stats`)).body.json()) as ProxyStats;
  const row = stats.pools.find((p) => p.listener === 'pg' && p.pool === `${DB}/${PG_USER}@${PG_HOST}:${PG_PORT}`);
  assert.ok(row !== undefined, JSON.stringify(stats.pools));
  assert.equal(row.mode, 'transaction');
  assert.ok(row.transactions >= 50, `transactions ${row.transactions}`);
  assert.ok(row.serversOpened >= 1 && row.serversOpened <= 3 + 1, `servers opened ${row.serversOpened}`);
  assert.ok(row.serversActive + row.serversIdle <= 3);
  const metrics = parsePrometheus(await (await request(`${admin}/metrics`)).body.text());
  const labels = { listener: 'pg', pool: `${DB}/${PG_USER}@${PG_HOST}:${PG_PORT}` };
  assert.ok(sample(metrics, 'polyproxy_pg_pool_transactions_total', labels) >= 50);
  assert.ok(sample(metrics, 'polyproxy_pg_pool_queries_total', labels) >= 50);
  assert.ok(sample(metrics, 'polyproxy_pg_pool_wait_seconds_count', labels) >= 50);
  assert.ok(sample(metrics, 'polyproxy_pg_pool_servers_opened_total', labels) >= 1);
  // Every client left: the servers still open are idle.
  assert.equal(sample(metrics, 'polyproxy_pg_pool_servers_idle', labels), row.serversIdle);
  assert.ok(metrics.has(`polyproxy_pg_pool_clients_waiting{listener="pg",pool="${labels.pool}"}`));
  assert.equal(sample(metrics, 'polyproxy_pg_pool_clients_waiting', labels), 0);
});
