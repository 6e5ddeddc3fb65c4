/**
 * mysql-sysbench: sysbench oltp_read_only, 8 threads, direct to MariaDB,
 * through polyproxy's MySQL listener and through HAProxy in TCP mode (one
 * thread), in the same run. The proxies are pinned to the same CPU; sysbench
 * and MariaDB float. Target (issue): polyproxy ≥ 0.9× HAProxy.
 *
 * Env: BENCH_DURATION (s, default 10), BENCH_WARMUP (s, default 1),
 * BENCH_ROUNDS (default 2, interleaved, order reversed every other round).
 */
import { haproxyVersion, startHaproxyTcp } from '../lib/haproxy.ts';
import { progress } from '../lib/progress.ts';
import { runChecked, runCommand } from '../lib/process.ts';
import { readCpuSeconds } from '../lib/rss.ts';
import type { Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { max, median } from '../lib/stats.ts';
import { num, ratio } from '../lib/table.ts';
import { startPolyproxy } from '../lib/targets.ts';
import type { Running } from '../lib/targets.ts';
import { envNumber } from '../lib/env.ts';

const MYSQL_HOST = '127.0.0.1';
const MYSQL_PORT = 3306;
const MYSQL_USER = 'root';
const DATABASE = 'pp_sysbench';
const TABLES = 4;
const TABLE_SIZE = 100_000;
const THREADS = 8;
const TARGET = 0.9;
const SYSBENCH = 'sysbench';

async function mariadb(sql: string): Promise<{ ok: boolean; out: string; err: string }> {
  const r = await runCommand('mariadb', ['-h', MYSQL_HOST, '-P', String(MYSQL_PORT), '-u', MYSQL_USER, '-N', '-B', '-e', sql], { name: 'mariadb' });
  return { ok: r.code === 0, out: r.stdout.trim(), err: r.stderr.trim() };
}

/** The options every sysbench invocation shares (connection, table layout). */
function commonArgs(port: number): string[] {
  return [
    'oltp_read_only',
    '--db-driver=mysql',
    `--mysql-host=${MYSQL_HOST}`,
    `--mysql-port=${port}`,
    `--mysql-user=${MYSQL_USER}`,
    `--mysql-db=${DATABASE}`,
    `--tables=${TABLES}`,
    `--table-size=${TABLE_SIZE}`,
  ];
}

function runArgs(port: number, seconds: number): string[] {
  return [...commonArgs(port), `--threads=${THREADS}`, `--time=${seconds}`, '--report-interval=0', 'run'];
}

/** Creates pp_sysbench and runs `sysbench oltp_read_only prepare` unless the tables are already there and full. */
async function prepareDatabase(): Promise<string> {
  const created = await mariadb(`create database if not exists ${DATABASE}`);
  if (!created.ok) throw new Error(`cannot reach MariaDB on ${MYSQL_HOST}:${MYSQL_PORT} as ${MYSQL_USER}: ${created.err}`);
  const tables = await mariadb(`select count(*) from information_schema.tables where table_schema = '${DATABASE}' and table_name regexp '^sbtest[0-9]+$'`);
  if (tables.ok && tables.out === String(TABLES)) {
    const rows = await mariadb(`select count(*) from ${DATABASE}.sbtest${TABLES}`);
    if (rows.ok && rows.out === String(TABLE_SIZE)) return 'reused';
  }
  if (tables.ok && tables.out !== '0') {
    progress(`mysql-sysbench: dropping incomplete sbtest tables in ${DATABASE}`);
    await runChecked(SYSBENCH, [...commonArgs(MYSQL_PORT), 'cleanup'], { name: 'sysbench cleanup' });
  }
  progress(`mysql-sysbench: preparing ${DATABASE} (${TABLES} tables × ${num(TABLE_SIZE)} rows)`);
  await runChecked(SYSBENCH, [...commonArgs(MYSQL_PORT), 'prepare'], { name: 'sysbench prepare' });
  return 'prepared';
}

interface RunResult {
  readonly tps: number;
  readonly qps: number;
  readonly transactions: number;
  readonly queries: number;
  readonly errors: number | null;
  readonly latencyAvgMs: number | null;
  readonly latencyP95Ms: number | null;
  /** CPU used by the proxy process during the run, in cores (null for direct). */
  readonly proxyCpu: number | null;
}

async function runSysbench(port: number, seconds: number, proxyPid: number | null): Promise<RunResult> {
  const cpuBefore = proxyPid === null ? 0 : readCpuSeconds(proxyPid);
  const started = Date.now();
  const r = await runCommand(SYSBENCH, runArgs(port, seconds), { name: 'sysbench' });
  const elapsed = (Date.now() - started) / 1000;
  const cpuAfter = proxyPid === null ? 0 : readCpuSeconds(proxyPid);
  // "    transactions:                        3521   (1167.13 per sec.)"
  const tx = /^\s*transactions:\s+(\d+)\s+\(([\d.]+) per sec\.\)/m.exec(r.stdout);
  const q = /^\s*queries:\s+(\d+)\s+\(([\d.]+) per sec\.\)/m.exec(r.stdout);
  if (r.code !== 0 || tx === null || q === null) throw new Error(`sysbench on port ${port} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  const errors = /^\s*ignored errors:\s+(\d+)/m.exec(r.stdout);
  const avg = /^\s*avg:\s+([\d.]+)/m.exec(r.stdout);
  const p95 = /^\s*95th percentile:\s+([\d.]+)/m.exec(r.stdout);
  return {
    tps: Number(tx[2]),
    qps: Number(q[2]),
    transactions: Number(tx[1]),
    queries: Number(q[1]),
    errors: errors === null ? null : Number(errors[1]),
    latencyAvgMs: avg === null ? null : Number(avg[1]),
    latencyP95Ms: p95 === null ? null : Number(p95[1]),
    proxyCpu: proxyPid === null ? null : (cpuAfter - cpuBefore) / elapsed,
  };
}

interface Target {
  readonly key: string;
  readonly label: string;
  readonly port: number;
  readonly pid: number | null;
}

export const mysqlSysbenchScenario: Scenario = {
  name: 'mysql-sysbench',
  description: 'sysbench oltp_read_only, 8 threads: direct MariaDB vs polyproxy (mysql) vs HAProxy tcp (1 thread)',
  needsBuild: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const duration = envNumber('BENCH_DURATION', 10);
    const warmup = envNumber('BENCH_WARMUP', 1);
    const rounds = Math.max(1, envNumber('BENCH_ROUNDS', 2));
    const dbState = await prepareDatabase();
    const versions = {
      sysbench: (await runCommand(SYSBENCH, ['--version'])).stdout.trim(),
      mariadb: (await mariadb('select version()')).out,
      haproxy: await haproxyVersion(),
    };

    const started: Running[] = [];
    try {
      progress('mysql-sysbench: starting polyproxy, HAProxy');
      const backend = `${MYSQL_HOST}:${MYSQL_PORT}`;
      const polyproxy = await startPolyproxy(ctx, { backend, protocol: 'mysql' });
      started.push(polyproxy);
      const haproxy = await startHaproxyTcp(ctx, { backend });
      started.push(haproxy);
      const targets: Target[] = [
        { key: 'direct', label: 'direct (MariaDB)', port: MYSQL_PORT, pid: null },
        { key: 'polyproxy', label: 'polyproxy (mysql)', port: polyproxy.port, pid: polyproxy.pid },
        { key: 'haproxy', label: 'HAProxy tcp (nbthread 1)', port: haproxy.port, pid: haproxy.pid },
      ];

      if (warmup > 0) {
        for (const t of targets) {
          progress(`mysql-sysbench: warm-up ${t.label} (${warmup} s)`);
          await runSysbench(t.port, warmup, t.pid);
        }
      }
      const runs = new Map<string, RunResult[]>(targets.map((t) => [t.key, []]));
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? targets : [...targets].reverse();
        for (const t of order) {
          progress(`mysql-sysbench: round ${round + 1}/${rounds}, ${t.label} (${duration} s)`);
          runs.get(t.key)?.push(await runSysbench(t.port, duration, t.pid));
        }
      }

      /** The run with the best TPS (its QPS goes with it). */
      const bestRun = (key: string): RunResult | undefined => {
        const rs = runs.get(key) ?? [];
        const top = max(rs.map((r) => r.tps));
        return rs.find((r) => r.tps === top);
      };
      const best = (key: string): number => bestRun(key)?.tps ?? NaN;
      const direct = best('direct');
      const ha = best('haproxy');
      const poly = best('polyproxy');
      const rows = targets.map((t) => {
        const rs = runs.get(t.key) ?? [];
        const b = bestRun(t.key);
        const cpu = rs.map((r) => r.proxyCpu).filter((c): c is number => c !== null);
        const perQuery = rs.filter((r) => r.proxyCpu !== null).map((r) => ((r.proxyCpu as number) / r.qps) * 1e6);
        return [
          t.label,
          num(b?.tps),
          rs.map((r) => num(r.tps)).join(', '),
          num(b?.qps),
          ratio(b?.tps, direct),
          ratio(b?.tps, ha),
          cpu.length === 0 ? '—' : `${Math.round(median(cpu) * 100)} %`,
          perQuery.length === 0 ? '—' : num(median(perQuery), 1),
        ];
      });
      const met = poly >= TARGET * ha;
      const verdict = `Target ${met ? 'met' : 'missed'}: polyproxy ${num(poly)} TPS = ${ratio(poly, ha)} HAProxy tcp (target ≥ ${TARGET.toFixed(2)}×), ${ratio(poly, direct)} direct`;
      const errors = [...runs.values()].flat().reduce((sum, r) => sum + (r.errors ?? 0), 0);
      return {
        title: 'MySQL: sysbench oltp_read_only, 8 threads (MariaDB)',
        verdict,
        tables: [
          {
            table: {
              headers: ['target', 'TPS (best)', 'TPS per run', 'QPS (best)', 'vs direct', 'vs HAProxy', 'proxy CPU', 'proxy CPU µs/query'],
              rows,
            },
          },
        ],
        notes: [
          `\`sysbench ${runArgs(0, duration).join(' ').replace('--mysql-port=0', '--mysql-port=<port>')}\` per target; ${rounds} interleaved round(s) of ${duration} s (order reversed every other round) after a ${warmup} s warm-up each; TPS and QPS are sysbench's "transactions/queries (… per sec.)" of the best run by TPS (oltp_read_only: 16 queries per transaction — 10 point SELECTs, 4 range SELECTs, BEGIN, COMMIT — all executed as server-side prepared statements, COM_STMT_EXECUTE). Ignored errors over all runs: ${errors}.`,
          `Database ${DATABASE}: \`sysbench oltp_read_only … --tables=${TABLES} --table-size=${TABLE_SIZE} prepare\` (${dbState} this run). MariaDB ${versions.mariadb}; ${versions.sysbench}; ${versions.haproxy}.`,
          `polyproxy (\`--protocol mysql --backend ${backend}\`, one worker, \`--log-level warn\`; sysbench authenticates as ${MYSQL_USER} through its auth switch) and HAProxy (\`mode tcp\`, \`nbthread 1\`) ${ctx.proxyCpu < 0 ? 'are not pinned' : `are each pinned to CPU ${ctx.proxyCpu} with taskset`}; sysbench and MariaDB are not pinned: client, proxy and server share the machine's cores. "proxy CPU" is the proxy process's user+system CPU time over the run's wall time (100 % = one core); "µs/query" is that CPU time per query (medians of the runs).`,
        ],
        data: {
          settings: { duration, warmup, rounds, threads: THREADS, tables: TABLES, tableSize: TABLE_SIZE, proxyCpu: ctx.proxyCpu },
          versions,
          targets: targets.map((t) => ({ key: t.key, label: t.label, bestTps: best(t.key), bestQps: bestRun(t.key)?.qps, runs: runs.get(t.key) })),
          ratios: { polyproxyToHaproxy: poly / ha, polyproxyToDirect: poly / direct, haproxyToDirect: ha / direct },
          targetMet: met,
        },
      };
    } finally {
      progress('mysql-sysbench: stopping proxies');
      await Promise.all(started.map((r) => r.stop()));
    }
  },
};
