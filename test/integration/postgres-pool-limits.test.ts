/**
 * The pool's limits and failures against the real PostgreSQL: a pool of 5
 * serving 200 clients, the per-backend budget shared by two tenants, the
 * FIFO queue's timeout (53300), maxClientConnections (53300), a server
 * connection killed mid-transaction (08006 for that client only), a
 * refused server login (the server's own SQLSTATE). Every failure is an
 * ErrorResponse with a SQLSTATE.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startPoolFront } from '../helpers/pg-pool-front.ts';
import type { PoolFront } from '../helpers/pg-pool-front.ts';
import { PG_USER, ensureDatabases, pgDirect, postgresMissing } from '../helpers/services.ts';

let skip: string | null = null;
const fronts: PoolFront[] = [];

before(async () => {
  skip = await postgresMissing();
  if (skip !== null) return;
  await ensureDatabases(['pp_pool_200', 'pp_pool_ta', 'pp_pool_tb', 'pp_pool_kill', 'pp_pool_q']);
});

after(async () => {
  for (const f of fronts) await f.close();
});

async function front(settings: Parameters<typeof startPoolFront>[0]): Promise<PoolFront> {
  const f = await startPoolFront(settings);
  fronts.push(f);
  return f;
}

function client(f: PoolFront, database: string): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port: f.port, user: PG_USER, database });
}

/** Samples how many server connections PostgreSQL shows for `databases` until `stop()` (the largest count seen). */
function watchConnections(databases: readonly string[]): { stop(): Promise<{ max: number; maxPerDb: Map<string, number> }> } {
  let running = true;
  let max = 0;
  const maxPerDb = new Map<string, number>();
  const list = databases.map((d) => `'${d}'`).join(', ');
  const watcher = new pg.Client({ host: '127.0.0.1', port: 5432, user: PG_USER, database: 'postgres' });
  const loop = (async () => {
    await watcher.connect();
    while (running) {
      const { rows } = await watcher.query<{ datname: string; n: string }>(`select datname, count(*) as n from pg_stat_activity where datname in (${list}) and backend_type = 'client backend' group by datname`);
      let total = 0;
      for (const r of rows) {
        total += Number(r.n);
        maxPerDb.set(r.datname, Math.max(maxPerDb.get(r.datname) ?? 0, Number(r.n)));
      }
      max = Math.max(max, total);
    }
    await watcher.end();
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { max, maxPerDb };
    },
  };
}

test('200 clients through a transaction pool of 5: PostgreSQL never sees more than 5 server connections', async (t) => {
  if (skip !== null) return t.skip(skip);
  const f = await front({ size: 5 });
  const watch = watchConnections(['pp_pool_200']);
  const clients = Array.from({ length: 200 }, () => client(f, 'pp_pool_200'));
  try {
    await Promise.all(clients.map((c) => c.connect()));
    // Every client runs transactions at once, several times over.
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all(
        clients.map(async (c, i) => {
          await c.query('begin');
          const r = await c.query<{ n: number }>('select $1::int as n, pg_sleep(0.001)', [i]);
          await c.query('commit');
          return r.rows[0]?.n;
        }),
      );
      results.forEach((n, i) => assert.equal(n, i));
    }
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }
  const { max } = await watch.stop();
  assert.ok(max <= 5, `pg_stat_activity showed ${max} server connections`);
  assert.ok(max >= 1);
  const stats = [...f.manager.pools.values()][0]?.stats;
  assert.ok((stats?.transactions ?? 0) >= 600, `transactions counted: ${stats?.transactions}`);
  assert.equal(stats?.serversOpened, 5);
});

test('the per-backend budget is shared by two tenants under load', async (t) => {
  if (skip !== null) return t.skip(skip);
  // Each tenant's pool may have 5, but the endpoint allows 6 in all.
  const f = await front({ size: 5, maxServerConnectionsPerBackend: 6, queueTimeoutMs: 20000 });
  const watch = watchConnections(['pp_pool_ta', 'pp_pool_tb']);
  const clients = [...Array.from({ length: 30 }, () => client(f, 'pp_pool_ta')), ...Array.from({ length: 30 }, () => client(f, 'pp_pool_tb'))];
  try {
    await Promise.all(clients.map((c) => c.connect()));
    const results = await Promise.all(
      clients.map(async (c) => {
        let done = 0;
        for (let i = 0; i < 10; i++) {
          await c.query('select pg_sleep(0.002)');
          done++;
        }
        return done;
      }),
    );
    assert.deepEqual(results, clients.map(() => 10));
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }
  const { max, maxPerDb } = await watch.stop();
  assert.ok(max <= 6, `both tenants together had ${max} server connections`);
  assert.ok((maxPerDb.get('pp_pool_ta') ?? 0) >= 1 && (maxPerDb.get('pp_pool_tb') ?? 0) >= 1, 'both tenants were served');
});

test('a client waiting longer than queueTimeoutMs gets 53300; the holder is unaffected', async (t) => {
  if (skip !== null) return t.skip(skip);
  const f = await front({ size: 1, queueTimeoutMs: 300 });
  const holder = client(f, 'pp_pool_q');
  const waiter = client(f, 'pp_pool_q');
  await holder.connect();
  await waiter.connect();
  waiter.on('error', () => {});
  try {
    await holder.query('begin');
    const started = Date.now();
    await assert.rejects(waiter.query('select 1'), (err: { code?: string; message?: string }) => err.code === '53300' && /within 300 ms/.test(err.message ?? ''));
    assert.ok(Date.now() - started >= 290);
    assert.equal((await holder.query<{ n: number }>('select 5 as n')).rows[0]?.n, 5);
    await holder.query('commit');
  } finally {
    await holder.end();
    await waiter.end().catch(() => {});
  }
  const stats = [...f.manager.pools.values()][0]?.stats;
  assert.equal(stats?.queueTimeouts, 1);
});

test('maxClientConnections per tenant: the next client gets 53300', async (t) => {
  if (skip !== null) return t.skip(skip);
  const f = await front({ size: 1, maxClientConnections: 2 });
  const a = client(f, 'pp_pool_q');
  const b = client(f, 'pp_pool_q');
  const c = client(f, 'pp_pool_q');
  const other = client(f, 'pp_pool_ta');
  await a.connect();
  await b.connect();
  try {
    await assert.rejects(c.connect(), (err: { code?: string; message?: string }) => err.code === '53300' && err.message === 'sorry, too many clients already');
    // Another tenant has its own count.
    await other.connect();
    await other.end();
    // A client leaving makes room.
    await b.end();
    const d = client(f, 'pp_pool_q');
    await d.connect();
    await d.end();
  } finally {
    await a.end();
  }
});

test('pg_terminate_backend of a server connection mid-transaction fails only that client (08006)', async (t) => {
  if (skip !== null) return t.skip(skip);
  const f = await front({ size: 3 });
  const victim = client(f, 'pp_pool_kill');
  // The proxy tells the victim at once (FATAL 08006): as the error of a query in flight, or as the
  // client's 'error' event when it is idle; either way its connection is done.
  const heard: Array<{ code?: string; message?: string }> = [];
  victim.on('error', (err: { code?: string; message?: string }) => heard.push(err));
  const others = Array.from({ length: 4 }, () => client(f, 'pp_pool_kill'));
  await victim.connect();
  await Promise.all(others.map((o) => o.connect()));
  try {
    await victim.query('begin');
    const { rows } = await victim.query<{ pid: number }>('select pg_backend_pid() as pid');
    // The others keep working while the victim's connection dies.
    const load = Promise.all(
      others.map(async (o) => {
        for (let i = 0; i < 20; i++) assert.equal((await o.query<{ n: number }>('select $1::int as n', [i])).rows[0]?.n, i);
      }),
    );
    await pgDirect(`select pg_terminate_backend(${rows[0]?.pid})`);
    // pg_terminate_backend only signals: wait until the server process is gone, so the victim's next
    // query cannot still run on it (under load it sometimes did, and succeeded).
    for (let i = 0; i < 1000 && (await pgDirect(`select 1 from pg_stat_activity where pid = ${rows[0]?.pid}`)).length > 0; i++);
    await victim.query('select 1').then(
      () => assert.fail('a query on the killed server connection succeeded'),
      (err: { code?: string; message?: string }) => heard.push(err),
    );
    assert.ok(
      heard.some((err) => err.code === '08006' && /terminating connection due to administrator command/.test(err.message ?? '')),
      `the victim heard 08006: ${JSON.stringify(heard.map((e) => [e.code, e.message]))}`,
    );
    await load;
    // The killed connection is not reused: new transactions still work.
    for (const o of others) assert.equal((await o.query<{ n: number }>('select 7 as n')).rows[0]?.n, 7);
  } finally {
    await victim.end().catch(() => {});
    await Promise.all(others.map((o) => o.end()));
  }
});

test('a server that refuses the pool login: the client gets the server error (3D000)', async (t) => {
  if (skip !== null) return t.skip(skip);
  const f = await front({ size: 1 });
  const c = client(f, 'pp_pool_no_such_db');
  await assert.rejects(c.connect(), (err: { code?: string; message?: string }) => err.code === '3D000' && /does not exist/.test(err.message ?? ''));
});

test('a server that cannot be reached: 08001', async (t) => {
  if (skip !== null) return t.skip(skip);
  const f = await startPoolFront({ size: 1 }, { backend: '127.0.0.1:1' });
  fronts.push(f);
  const c = new pg.Client({ host: '127.0.0.1', port: f.port, user: PG_USER, database: 'pp_pool_q' });
  await assert.rejects(c.connect(), (err: { code?: string }) => err.code === '08001');
});

test('idle server connections close after serverIdleTimeoutMs; minSize stay open', async (t) => {
  if (skip !== null) return t.skip(skip);
  const f = await front({ size: 3, minSize: 1, serverIdleTimeoutMs: 50 });
  const clients = Array.from({ length: 3 }, () => client(f, 'pp_pool_ta'));
  await Promise.all(clients.map((c) => c.connect()));
  await Promise.all(clients.map((c) => c.query('select pg_sleep(0.05)')));
  await Promise.all(clients.map((c) => c.end()));
  const pool = [...f.manager.pools.values()].find((p) => p.database === 'pp_pool_ta');
  for (let i = 0; i < 200 && (pool?.open ?? 0) > 1; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(pool?.open, 1, 'closed down to minSize');
  assert.equal(pool?.idle.length, 1);
});
