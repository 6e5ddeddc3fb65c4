/**
 * pgbench select-only, extended protocol, 100 clients through a transaction
 * pool of 20 server connections: polyproxy (pool: transaction, size 20,
 * one worker) vs PgBouncer (pool_mode transaction, default_pool_size 20)
 * vs direct, one run each; then `-M prepared` through polyproxy alone
 * (Debian's PgBouncer 1.18 predates protocol-level prepared statements in
 * transaction mode). TPS and the proxy's CPU µs per transaction. Target
 * (issue 24): polyproxy ≥ 0.9× PgBouncer on one worker, above it with two.
 *
 * The two-worker row runs `workers: 2` unpinned (both cores; the same
 * `size: 20`, which each worker gets half of: 20 server connections in all,
 * as PgBouncer's) and counts the CPU of the supervisor and both workers.
 *
 * Direct runs 20 clients, not 100: the shared PostgreSQL allows 100
 * connections in all (other work uses some), and 20 is what both poolers
 * open; it is the no-proxy reference, not a like-for-like client count.
 *
 * Env: BENCH_DURATION (s, default 10), BENCH_WARMUP (s, default 3).
 */
import { progress } from '../lib/progress.ts';
import { runChecked, runCommand } from '../lib/process.ts';
import { readCpuSeconds, readTreeCpuSeconds } from '../lib/rss.ts';
import type { Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { num, ratio } from '../lib/table.ts';
import { freePort } from '../lib/net.ts';
import { startPgbouncer, startRawProxy } from '../lib/targets.ts';
import type { Running } from '../lib/targets.ts';
import { startPolyproxyWithConfig } from '../lib/polyproxy-config.ts';
import { envNumber } from '../lib/env.ts';

const PG_HOST = '127.0.0.1';
const PG_PORT = 5432;
const DATABASE = 'pp_bench';
const SCALE = 10;
const CLIENTS = 100;
const DIRECT_CLIENTS = 20;
const THREADS = 2;
const POOL = 20;
const PASSWORD = 'pgbench-pool';

async function psql(database: string, sql: string): Promise<{ ok: boolean; out: string }> {
  const r = await runCommand('psql', ['-h', PG_HOST, '-p', String(PG_PORT), '-U', 'postgres', '-d', database, '-tAXc', sql], { name: 'psql' });
  return { ok: r.code === 0, out: r.stdout.trim() };
}

async function prepareDatabase(): Promise<string> {
  const exists = await psql('postgres', `select 1 from pg_database where datname = '${DATABASE}'`);
  if (!exists.ok) throw new Error(`cannot reach PostgreSQL on ${PG_HOST}:${PG_PORT} as postgres`);
  if (exists.out !== '1') await runChecked('psql', ['-h', PG_HOST, '-U', 'postgres', '-d', 'postgres', '-qc', `create database ${DATABASE}`]);
  const branches = await psql(DATABASE, 'select count(*) from pgbench_branches');
  if (branches.ok && branches.out === String(SCALE)) return 'reused';
  progress(`pgbench-pool: initialising ${DATABASE} (pgbench -i -s ${SCALE})`);
  await runChecked('pgbench', ['-i', '-q', '-s', String(SCALE), '-h', PG_HOST, '-p', String(PG_PORT), '-U', 'postgres', DATABASE], { name: 'pgbench -i' });
  return 'initialised';
}

interface RunResult {
  readonly tps: number;
  readonly failed: number;
  /** Proxy CPU (user + system) per transaction, µs; null for direct. */
  readonly usPerTx: number | null;
  readonly proxyCpu: number | null;
}

function args(port: number, seconds: number, clients: number, mode: string): string[] {
  return ['-S', '-n', '-M', mode, '-c', String(clients), '-j', String(THREADS), '-T', String(seconds), '-h', PG_HOST, '-p', String(port), '-U', 'postgres', DATABASE];
}

async function runPgbench(port: number, seconds: number, clients: number, mode: string, proxyPid: number | null, tree = false): Promise<RunResult> {
  const cpuOf = tree ? readTreeCpuSeconds : readCpuSeconds;
  const cpuBefore = proxyPid === null ? 0 : cpuOf(proxyPid);
  const started = Date.now();
  const r = await runCommand('pgbench', args(port, seconds, clients, mode), { name: 'pgbench', env: { ...process.env, PGPASSWORD: PASSWORD } });
  const elapsed = (Date.now() - started) / 1000;
  const cpu = proxyPid === null ? 0 : cpuOf(proxyPid) - cpuBefore;
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(r.stdout);
  if (r.code !== 0 || tps === null) throw new Error(`pgbench -M ${mode} on port ${port} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  const processed = /number of transactions actually processed: (\d+)/.exec(r.stdout);
  const failed = /number of failed transactions: (\d+)/.exec(r.stdout);
  const transactions = Number(processed?.[1] ?? 0);
  return {
    tps: Number(tps[1]),
    failed: Number(failed?.[1] ?? 0),
    usPerTx: proxyPid === null || transactions === 0 ? null : (cpu / transactions) * 1e6,
    proxyCpu: proxyPid === null ? null : cpu / elapsed,
  };
}

export const pgbenchPoolScenario: Scenario = {
  name: 'pgbench-pool',
  description: 'pgbench -S -M extended -c 100 through a transaction pool of 20: polyproxy vs PgBouncer (transaction) vs direct; -M prepared through polyproxy',
  needsBuild: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const duration = envNumber('BENCH_DURATION', 10);
    const warmup = envNumber('BENCH_WARMUP', 3);
    const dbState = await prepareDatabase();
    const pgbouncerVersion = (await runCommand('/usr/sbin/pgbouncer', ['--version'])).stdout.split('\n')[0] ?? '';
    const pgbenchVersion = (await runCommand('pgbench', ['--version'])).stdout.trim();
    const serverVersion = (await psql(DATABASE, 'show server_version')).out;
    const started: Running[] = [];
    try {
      progress('pgbench-pool: starting polyproxy (pool) and PgBouncer (transaction)');
      const port = await freePort();
      const polyproxy = await startPolyproxyWithConfig(ctx, {
        security: { allowBackends: ['127.0.0.0/8'] },
        routes: { [DATABASE]: `${PG_HOST}:${PG_PORT}` },
        listeners: [
          {
            name: 'pg',
            protocol: 'postgres',
            host: '127.0.0.1',
            port,
            auth: { users: { postgres: { password: PASSWORD } } },
            pool: { mode: 'transaction', size: POOL, maxClientConnections: 1000, queueTimeoutMs: 30000 },
          },
        ],
      });
      started.push(polyproxy);
      const port2 = await freePort();
      const polyproxy2 = await startPolyproxyWithConfig(
        { ...ctx, proxyCpu: -1 },
        {
          workers: 2,
          security: { allowBackends: ['127.0.0.0/8'] },
          routes: { [DATABASE]: `${PG_HOST}:${PG_PORT}` },
          listeners: [
            {
              name: 'pg',
              protocol: 'postgres',
              host: '127.0.0.1',
              port: port2,
              auth: { users: { postgres: { password: PASSWORD } } },
              pool: { mode: 'transaction', size: POOL, maxClientConnections: 1000, queueTimeoutMs: 30000 },
            },
          ],
        },
        'polyproxy-2w',
      );
      started.push(polyproxy2);
      const pgbouncer = await startPgbouncer(ctx, { databases: { [DATABASE]: `host=${PG_HOST} port=${PG_PORT}` }, poolMode: 'transaction', maxClientConn: 200, defaultPoolSize: POOL });
      started.push(pgbouncer);
      // The Node floor: bench/lib/raw-proxy.ts relaying each of the 100 clients to a server connection of its own —
      // the same two reads and two writes per transaction as the pool, with no parsing, pooling or auth. It needs
      // 100 more server connections than the others, so it runs only where max_connections leaves room.
      const room = Number((await psql('postgres', 'select current_setting(\'max_connections\')::int - count(*) from pg_stat_activity')).out);
      const floor = room >= CLIENTS + 10 ? await startRawProxy(ctx, `${PG_HOST}:${PG_PORT}`) : null;
      if (floor !== null) started.push(floor);
      const targets = [
        { key: 'direct', label: `direct (PostgreSQL, ${DIRECT_CLIENTS} clients)`, port: PG_PORT, pid: null, clients: DIRECT_CLIENTS, mode: 'extended', tree: false },
        { key: 'polyproxy', label: 'polyproxy (transaction pool 20)', port: polyproxy.port, pid: polyproxy.pid, clients: CLIENTS, mode: 'extended', tree: false },
        { key: 'polyproxy2', label: 'polyproxy, workers: 2 (pool 10 per worker, unpinned)', port: polyproxy2.port, pid: polyproxy2.pid, clients: CLIENTS, mode: 'extended', tree: true },
        { key: 'pgbouncer', label: 'PgBouncer (transaction pool 20)', port: pgbouncer.port, pid: pgbouncer.pid, clients: CLIENTS, mode: 'extended', tree: false },
        { key: 'polyproxyPrepared', label: 'polyproxy -M prepared (transaction pool 20)', port: polyproxy.port, pid: polyproxy.pid, clients: CLIENTS, mode: 'prepared', tree: false },
        ...(floor === null ? [] : [{ key: 'floor', label: 'Node floor: raw libuv relay, no pool (100 server connections)', port: floor.port, pid: floor.pid, clients: CLIENTS, mode: 'extended', tree: false }]),
      ] as const;
      if (warmup > 0) {
        for (const t of targets) {
          progress(`pgbench-pool: warm-up ${t.label} (${warmup} s)`);
          // On a busy machine 100 logins may take the whole warm-up: a warm-up without a figure is fine.
          await runPgbench(t.port, warmup, t.clients, t.mode, t.pid, t.tree).catch(() => undefined);
        }
      }
      const results = new Map<string, RunResult>();
      for (const t of targets) {
        progress(`pgbench-pool: ${t.label} (${duration} s)`);
        results.set(t.key, await runPgbench(t.port, duration, t.clients, t.mode, t.pid, t.tree));
      }
      const get = (key: string): RunResult => results.get(key) as RunResult;
      const poly = get('polyproxy');
      const bouncer = get('pgbouncer');
      const direct = get('direct');
      const rows = targets.map((t) => {
        const r = get(t.key);
        return [t.label, `-M ${t.mode} -c ${t.clients}`, num(r.tps), ratio(r.tps, bouncer.tps), r.proxyCpu === null ? '—' : `${Math.round(r.proxyCpu * 100)} %`, r.usPerTx === null ? '—' : num(r.usPerTx, 1), String(r.failed)];
      });
      const poly2 = get('polyproxy2');
      const met = poly.tps >= 0.9 * bouncer.tps;
      const met2 = poly2.tps > bouncer.tps;
      const verdict = `${met ? 'Target met' : 'Target missed'}: polyproxy ${num(poly.tps)} TPS = ${ratio(poly.tps, bouncer.tps)} PgBouncer (target ≥ 0.90×) at ${num(poly.usPerTx ?? NaN, 1)} vs ${num(bouncer.usPerTx ?? NaN, 1)} CPU µs/tx; two workers ${num(poly2.tps)} TPS = ${ratio(poly2.tps, bouncer.tps)} (target > 1.00×: ${met2 ? 'met' : 'missed'}); -M prepared ${num(get('polyproxyPrepared').tps)} TPS${floor === null ? '' : `; the Node floor (raw relay, no pool) costs ${num(get('floor').usPerTx ?? NaN, 1)} µs/tx`}`;
      return {
        title: 'pgbench -S through a transaction pool of 20, 100 clients',
        verdict,
        tables: [{ table: { headers: ['target', 'pgbench', 'TPS', 'vs PgBouncer', 'proxy CPU', 'proxy CPU µs/tx', 'failed tx'], rows } }],
        notes: [
          `\`pgbench ${args(0, duration, CLIENTS, 'extended').join(' ').replace('-p 0', '-p <port>')}\`, one run per target after a ${warmup} s warm-up; TPS is pgbench's "without initial connection time".`,
          `Direct runs ${DIRECT_CLIENTS} clients: the shared PostgreSQL's max_connections (100) cannot take 100 more; it is the no-pooler reference (${num(direct.tps)} TPS), not a like-for-like client count.`,
          `polyproxy: one worker, \`auth\` (clients log in with SCRAM once per connection) and \`pool: { mode: transaction, size: ${POOL} }\`; PgBouncer: auth_type trust, pool_mode transaction, default_pool_size ${POOL}. Both ${ctx.proxyCpu < 0 ? 'unpinned' : `pinned to CPU ${ctx.proxyCpu}`}; pgbench and PostgreSQL float. The two-worker row: \`workers: 2\`, unpinned, the same \`size: ${POOL}\`, which each worker gets half of (${POOL} server connections in all); its CPU is the supervisor's and both workers'.`,
          `Database ${DATABASE}: \`pgbench -i -s ${SCALE}\` (${dbState} this run). PostgreSQL ${serverVersion}; ${pgbenchVersion}; ${pgbouncerVersion}.`,
        ],
        data: {
          settings: { duration, warmup, clients: CLIENTS, directClients: DIRECT_CLIENTS, threads: THREADS, pool: POOL, proxyCpu: ctx.proxyCpu },
          versions: { pgbouncer: pgbouncerVersion, pgbench: pgbenchVersion, postgres: serverVersion },
          results: Object.fromEntries(results),
          ratios: { polyproxyToPgbouncer: poly.tps / bouncer.tps, twoWorkersToPgbouncer: poly2.tps / bouncer.tps, cpuPerTxToPgbouncer: (poly.usPerTx ?? NaN) / (bouncer.usPerTx ?? NaN), ...(floor === null ? {} : { floorCpuPerTxToPgbouncer: (get('floor').usPerTx ?? NaN) / (bouncer.usPerTx ?? NaN) }) },
          targetMet: met,
          twoWorkersAbovePgbouncer: met2,
        },
      };
    } finally {
      progress('pgbench-pool: stopping proxies');
      await Promise.all(started.map((r) => r.stop()));
    }
  },
};
