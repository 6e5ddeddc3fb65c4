/**
 * pgbench select-only, 8 clients: direct to PostgreSQL, through polyproxy,
 * through PgBouncer (session mode), through the naive Node pipe() proxy and
 * through the "Node floor" (bench/lib/raw-proxy.ts: libuv handles driven
 * directly, the cheapest proxy a Node process can run — it bounds what any
 * Node proxy can do here), in the same run. The proxies are pinned to the
 * same CPU; pgbench and PostgreSQL float. Target (issue): polyproxy TPS >
 * PgBouncer TPS.
 *
 * Env: BENCH_DURATION (s, default 8), BENCH_WARMUP (s, default 1),
 * BENCH_ROUNDS (default 2, interleaved, order reversed every other round).
 */
import { progress } from '../lib/progress.ts';
import { runChecked, runCommand } from '../lib/process.ts';
import { readTreeCpuSeconds } from '../lib/rss.ts';
import type { Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { max, median } from '../lib/stats.ts';
import { num, ratio } from '../lib/table.ts';
import { startPgbouncer, startPipeProxy, startPolyproxy, startRawProxy, TWO_WORKERS_NOTE } from '../lib/targets.ts';
import type { Running } from '../lib/targets.ts';
import { envNumber } from '../lib/env.ts';

const PG_HOST = '127.0.0.1';
const PG_PORT = 5432;
const DATABASE = 'pp_bench';
const SCALE = 10;
const CLIENTS = 8;
const THREADS = 2;

async function psql(database: string, sql: string): Promise<{ ok: boolean; out: string }> {
  const r = await runCommand('psql', ['-h', PG_HOST, '-p', String(PG_PORT), '-U', 'postgres', '-d', database, '-tAXc', sql], { name: 'psql' });
  return { ok: r.code === 0, out: r.stdout.trim() };
}

/** Creates pp_bench and runs `pgbench -i -s 10` unless the tables are already there at that scale. */
async function prepareDatabase(): Promise<string> {
  const exists = await psql('postgres', `select 1 from pg_database where datname = '${DATABASE}'`);
  if (!exists.ok) throw new Error(`cannot reach PostgreSQL on ${PG_HOST}:${PG_PORT} as postgres`);
  if (exists.out !== '1') {
    progress(`pgbench: creating database ${DATABASE}`);
    await runChecked('psql', ['-h', PG_HOST, '-U', 'postgres', '-d', 'postgres', '-qc', `create database ${DATABASE}`]);
  }
  const branches = await psql(DATABASE, 'select count(*) from pgbench_branches');
  if (branches.ok && branches.out === String(SCALE)) return 'reused';
  progress(`pgbench: initialising ${DATABASE} (pgbench -i -s ${SCALE})`);
  await runChecked('pgbench', ['-i', '-q', '-s', String(SCALE), '-h', PG_HOST, '-p', String(PG_PORT), '-U', 'postgres', DATABASE], { name: 'pgbench -i' });
  return 'initialised';
}

interface RunResult {
  readonly tps: number;
  readonly latencyMs: number | null;
  readonly transactions: number | null;
  /** CPU used by the proxy process during the run, in cores (null for direct). */
  readonly proxyCpu: number | null;
}

function pgbenchArgs(port: number, seconds: number): string[] {
  return ['-S', '-n', '-c', String(CLIENTS), '-j', String(THREADS), '-T', String(seconds), '-h', PG_HOST, '-p', String(port), '-U', 'postgres', DATABASE];
}

async function runPgbench(port: number, seconds: number, proxyPid: number | null): Promise<RunResult> {
  const cpuBefore = proxyPid === null ? 0 : readTreeCpuSeconds(proxyPid);
  const started = Date.now();
  const r = await runCommand('pgbench', pgbenchArgs(port, seconds), { name: 'pgbench' });
  const elapsed = (Date.now() - started) / 1000;
  const cpuAfter = proxyPid === null ? 0 : readTreeCpuSeconds(proxyPid);
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(r.stdout);
  if (r.code !== 0 || tps === null) throw new Error(`pgbench on port ${port} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  const latency = /latency average = ([\d.]+) ms/.exec(r.stdout);
  const transactions = /number of transactions actually processed: (\d+)/.exec(r.stdout);
  return {
    tps: Number(tps[1]),
    latencyMs: latency === null ? null : Number(latency[1]),
    transactions: transactions === null ? null : Number(transactions[1]),
    proxyCpu: proxyPid === null ? null : (cpuAfter - cpuBefore) / elapsed,
  };
}

interface Target {
  readonly key: string;
  readonly label: string;
  readonly port: number;
  readonly pid: number | null;
}

export const pgbenchScenario: Scenario = {
  name: 'pgbench',
  description: 'pgbench -S, 8 clients: direct vs polyproxy vs PgBouncer (session) vs naive Node pipe() proxy vs Node floor (raw libuv handles)',
  needsBuild: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const duration = envNumber('BENCH_DURATION', 8);
    const warmup = envNumber('BENCH_WARMUP', 1);
    const rounds = Math.max(1, envNumber('BENCH_ROUNDS', 2));
    const dbState = await prepareDatabase();
    const pgbouncerVersion = (await runCommand('/usr/sbin/pgbouncer', ['--version'])).stdout.split('\n')[0] ?? '';
    const pgbenchVersion = (await runCommand('pgbench', ['--version'])).stdout.trim();
    const serverVersion = (await psql(DATABASE, 'show server_version')).out;

    const started: Running[] = [];
    try {
      progress('pgbench: starting polyproxy, PgBouncer, pipe proxy, raw proxy');
      const backend = `${PG_HOST}:${PG_PORT}`;
      const polyproxy = await startPolyproxy(ctx, { backend });
      started.push(polyproxy);
      const polyproxy2 = await startPolyproxy(ctx, { backend, workers: 2 });
      started.push(polyproxy2);
      const pgbouncer = await startPgbouncer(ctx, {
        databases: { [DATABASE]: `host=${PG_HOST} port=${PG_PORT}` },
        poolMode: 'session',
        maxClientConn: 200,
        defaultPoolSize: 20,
      });
      started.push(pgbouncer);
      const pipe = await startPipeProxy(ctx, backend);
      started.push(pipe);
      const raw = await startRawProxy(ctx, backend);
      started.push(raw);

      const targets: Target[] = [
        { key: 'direct', label: 'direct (PostgreSQL)', port: PG_PORT, pid: null },
        { key: 'polyproxy', label: 'polyproxy', port: polyproxy.port, pid: polyproxy.pid },
        { key: 'polyproxy2', label: 'polyproxy, 2 workers (unpinned)', port: polyproxy2.port, pid: polyproxy2.pid },
        { key: 'pgbouncer', label: 'PgBouncer (session)', port: pgbouncer.port, pid: pgbouncer.pid },
        { key: 'pipe', label: 'naive Node pipe() proxy', port: pipe.port, pid: pipe.pid },
        { key: 'nodeFloor', label: 'Node floor (raw libuv handles)', port: raw.port, pid: raw.pid },
      ];

      if (warmup > 0) {
        for (const t of targets) {
          progress(`pgbench: warm-up ${t.label} (${warmup} s)`);
          await runPgbench(t.port, warmup, t.pid);
        }
      }
      const runs = new Map<string, RunResult[]>(targets.map((t) => [t.key, []]));
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? targets : [...targets].reverse();
        for (const t of order) {
          progress(`pgbench: round ${round + 1}/${rounds}, ${t.label} (${duration} s)`);
          const result = await runPgbench(t.port, duration, t.pid);
          runs.get(t.key)?.push(result);
        }
      }

      const best = (key: string): number => max((runs.get(key) ?? []).map((r) => r.tps));
      const direct = best('direct');
      const bouncer = best('pgbouncer');
      const rows = targets.map((t) => {
        const rs = runs.get(t.key) ?? [];
        const tps = best(t.key);
        const cpu = rs.map((r) => r.proxyCpu).filter((c): c is number => c !== null);
        const perTx = rs.filter((r) => r.proxyCpu !== null).map((r) => ((r.proxyCpu as number) / r.tps) * 1e6);
        return [
          t.label,
          num(tps),
          rs.map((r) => num(r.tps)).join(', '),
          ratio(tps, direct),
          ratio(tps, bouncer),
          cpu.length === 0 ? '—' : `${Math.round(median(cpu) * 100)} %`,
          perTx.length === 0 ? '—' : num(median(perTx), 1),
        ];
      });
      const poly = best('polyproxy');
      const floor = best('nodeFloor');
      /** Median proxy CPU µs per transaction of a target's runs (NaN without CPU figures). */
      const usPerTx = (key: string): number => {
        const v = (runs.get(key) ?? []).filter((r) => r.proxyCpu !== null).map((r) => ((r.proxyCpu as number) / r.tps) * 1e6);
        return v.length === 0 ? NaN : median(v);
      };
      const floorPart = `; Node floor ${num(floor)} TPS = ${ratio(floor, bouncer)} PgBouncer, at ${ratio(usPerTx('nodeFloor'), usPerTx('pgbouncer'))} its CPU per transaction`;
      const verdict =
        poly > bouncer
          ? `Target met: polyproxy ${num(poly)} TPS = ${ratio(poly, bouncer)} PgBouncer, ${ratio(poly, direct)} direct${floorPart}`
          : `Target missed: polyproxy ${num(poly)} TPS = ${ratio(poly, bouncer)} PgBouncer (target > 1.00×), ${ratio(poly, direct)} direct${floorPart}`;
      return {
        title: 'pgbench select-only, 8 clients',
        verdict,
        tables: [
          {
            table: {
              headers: ['target', 'TPS (best)', 'TPS per run', 'vs direct', 'vs PgBouncer', 'proxy CPU', 'proxy CPU µs/tx'],
              rows,
            },
          },
        ],
        notes: [
          `\`pgbench ${pgbenchArgs(0, duration).join(' ').replace('-p 0', '-p <port>')}\` per target; ${rounds} interleaved round(s) of ${duration} s (order reversed every other round) after a ${warmup} s warm-up each; "TPS" is pgbench's \`tps = … (without initial connection time)\`, best run.`,
          `Database ${DATABASE}: \`pgbench -i -s ${SCALE}\` (${dbState} this run). ${serverVersion === '' ? '' : `PostgreSQL ${serverVersion}; `}${pgbenchVersion}; ${pgbouncerVersion}.`,
          `polyproxy (one worker, \`--log-level warn\`), PgBouncer (session mode, pool 20), the naive pipe() proxy and the Node floor ${ctx.proxyCpu < 0 ? 'are not pinned' : `are each pinned to CPU ${ctx.proxyCpu} with taskset`}; pgbench and PostgreSQL are not pinned: client, proxy and server share the machine's cores. "proxy CPU" is the proxy process's user+system CPU time over the run's wall time (100 % = one core); "µs/tx" is that CPU time per transaction — the proxy's cost, less sensitive to run-to-run noise than TPS (medians of the runs).`,
          'The naive pipe() proxy is bench/lib/pipe-proxy.ts: `client.pipe(backend).pipe(client)` with noDelay, the "naive Node" anchor of DESIGN.md §5.',
          TWO_WORKERS_NOTE,
          `"Node floor (raw libuv handles)" is bench/lib/raw-proxy.ts, a measuring anchor (not part of polyproxy): the cheapest proxy a Node process can run — libuv TCP handles driven directly through Node's internal bindings, no net.Socket, no streams, no per-read allocation, each read written straight to the other side. What it costs per transaction (${num(usPerTx('nodeFloor'), 1)} µs of CPU here, vs ${num(usPerTx('pgbouncer'), 1)} for PgBouncer and ${num(usPerTx('polyproxy'), 1)} for polyproxy) is the Node runtime's own cost (V8 ⇄ C++ calls, libuv, the kernel's TCP work), so it bounds what any Node proxy — polyproxy included — can do on this machine${floor < bouncer ? ': the floor itself does not beat PgBouncer here, so no single-process Node proxy can' : usPerTx('nodeFloor') > usPerTx('pgbouncer') ? `: even the floor needs ${ratio(usPerTx('nodeFloor'), usPerTx('pgbouncer'))} PgBouncer's CPU per transaction, so a Node proxy can at best tie PgBouncer's TPS while the proxy core has time to spare, never beat it on cost` : ''}.`,
        ],
        data: {
          settings: { duration, warmup, rounds, clients: CLIENTS, threads: THREADS, scale: SCALE, proxyCpu: ctx.proxyCpu },
          versions: { pgbouncer: pgbouncerVersion, pgbench: pgbenchVersion, postgres: serverVersion },
          targets: targets.map((t) => ({ key: t.key, label: t.label, bestTps: best(t.key), runs: runs.get(t.key) })),
          ratios: { polyproxyToDirect: poly / direct, twoWorkersToPgbouncer: best('polyproxy2') / bouncer, twoWorkersToOne: best('polyproxy2') / poly, polyproxyToPgbouncer: poly / bouncer, pgbouncerToDirect: bouncer / direct, pipeToDirect: best('pipe') / direct, nodeFloorToDirect: floor / direct, nodeFloorToPgbouncer: floor / bouncer, polyproxyToNodeFloor: poly / floor },
          targetMet: poly > bouncer,
        },
      };
    } finally {
      progress('pgbench: stopping proxies');
      await Promise.all(started.map((r) => r.stop()));
    }
  },
};
