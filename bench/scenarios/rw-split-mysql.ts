/**
 * rw-split, MySQL part (issue 17): sysbench oltp_read_only against a
 * throwaway MariaDB primary + replica (test/helpers/mariadb-replica.ts,
 * temp dirs, never the shared server), with the same threads
 *   - through polyproxy with readWriteSplit (reads on the replica),
 *   - through polyproxy with proxy-side auth on the primary alone,
 *   - directly to the primary,
 * one run each after a warm-up. sysbench runs with --skip_trx=on (its
 * reads outside transactions: what the split sends to a replica) and
 * --db-ps-mode=disable (text protocol: prepared statements stay on the
 * primary by design). Both servers share this machine's cores with
 * sysbench and polyproxy: the figure to read is the split's cost and the
 * replica's share, not the capacity a second host would add.
 * The classifier's cost per statement (µs) is measured in-process on
 * sysbench's statement shapes.
 *
 * `mysqlPart` plugs into bench/scenarios/rw-split.ts (PARTS); standalone:
 * `npm run bench -- rw-split-mysql`.
 *
 * Env: BENCH_DURATION (s, default 10), BENCH_WARMUP (s, default 3).
 */
import { startMariadbReplicaPair } from '../../test/helpers/mariadb-replica.ts';
import { classifyMysql } from '../../src/protocols/mysql/split/classify.ts';
import { envNumber } from '../lib/env.ts';
import { freePort } from '../lib/net.ts';
import { startPolyproxyWithConfig } from '../lib/polyproxy-config.ts';
import { progress } from '../lib/progress.ts';
import { runChecked, runCommand } from '../lib/process.ts';
import { readCpuSeconds } from '../lib/rss.ts';
import type { ReportTable, Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { num, ratio } from '../lib/table.ts';
import type { Running } from '../lib/targets.ts';

/** The shape of bench/scenarios/rw-split.ts's parts. */
export interface MysqlPartReport {
  readonly verdict: string;
  readonly tables: readonly ReportTable[];
  readonly notes: readonly string[];
  readonly data: Record<string, unknown>;
}

const DATABASE = 'rwbench';
const USER = 'bench';
const PASSWORD = 'rw-bench';
const TABLES = 4;
const TABLE_SIZE = 50_000;
const THREADS = 8;

interface RunResult {
  readonly tps: number;
  readonly qps: number;
  readonly errors: number;
  readonly proxyCpu: number | null;
}

function sysbenchArgs(port: number): string[] {
  return ['oltp_read_only', '--db-driver=mysql', '--mysql-host=127.0.0.1', `--mysql-port=${port}`, `--mysql-user=${USER}`, `--mysql-password=${PASSWORD}`, `--mysql-db=${DATABASE}`, `--tables=${TABLES}`, `--table-size=${TABLE_SIZE}`];
}

function runArgs(port: number, seconds: number): string[] {
  return [...sysbenchArgs(port), `--threads=${THREADS}`, `--time=${seconds}`, '--skip_trx=on', '--db-ps-mode=disable', '--report-interval=0', 'run'];
}

async function runSysbench(port: number, seconds: number, pid: number | null): Promise<RunResult> {
  const before = pid === null ? 0 : readCpuSeconds(pid);
  const started = Date.now();
  const r = await runCommand('sysbench', runArgs(port, seconds), { name: 'sysbench' });
  const elapsed = (Date.now() - started) / 1000;
  const tx = /^\s*transactions:\s+(\d+)\s+\(([\d.]+) per sec\.\)/m.exec(r.stdout);
  const q = /^\s*queries:\s+(\d+)\s+\(([\d.]+) per sec\.\)/m.exec(r.stdout);
  if (r.code !== 0 || tx === null || q === null) throw new Error(`sysbench on port ${port} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  const errors = /^\s*ignored errors:\s+(\d+)/m.exec(r.stdout);
  return { tps: Number(tx[2]), qps: Number(q[2]), errors: errors === null ? 0 : Number(errors[1]), proxyCpu: pid === null ? null : (readCpuSeconds(pid) - before) / elapsed };
}

/** µs per classifyMysql call over sysbench oltp_read_only's statement shapes (no cache: the classifier is a tokenizer). */
function classifierCost(): { us: number; statements: number } {
  const shapes = [
    (i: number) => `SELECT c FROM sbtest1 WHERE id=${i}`,
    (i: number) => `SELECT c FROM sbtest2 WHERE id BETWEEN ${i} AND ${i + 99}`,
    (i: number) => `SELECT SUM(k) FROM sbtest3 WHERE id BETWEEN ${i} AND ${i + 99}`,
    (i: number) => `SELECT c FROM sbtest4 WHERE id BETWEEN ${i} AND ${i + 99} ORDER BY c`,
    (i: number) => `SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN ${i} AND ${i + 99} ORDER BY c`,
  ];
  const texts: string[] = [];
  for (let i = 0; i < 20_000; i++) texts.push((shapes[i % shapes.length] as (i: number) => string)(i * 7919 % TABLE_SIZE));
  let reads = 0;
  for (const t of texts.slice(0, 2000)) if (classifyMysql(t) === 'read') reads++; // warm-up
  const started = process.hrtime.bigint();
  for (const t of texts) if (classifyMysql(t) === 'read') reads++;
  const ns = Number(process.hrtime.bigint() - started);
  if (reads !== texts.length + 2000) throw new Error('classifyMysql did not call every sysbench read a read');
  return { us: ns / texts.length / 1000, statements: texts.length };
}

async function comSelect(query: (sql: string) => Promise<Array<{ Value?: string }>>): Promise<number> {
  const rows = await query("SHOW GLOBAL STATUS LIKE 'Com_select'");
  return Number(rows[0]?.Value ?? NaN);
}

export const mysqlPart = {
  key: 'mysql',
  async run(ctx: ScenarioContext): Promise<MysqlPartReport> {
    const duration = envNumber('BENCH_DURATION', 10);
    const warmup = envNumber('BENCH_WARMUP', 3);
    const cost = classifierCost();
    progress('rw-split mysql: starting a MariaDB primary and replica');
    const pair = await startMariadbReplicaPair();
    if (pair === null) throw new Error('cannot start a throwaway MariaDB primary + replica (mariadbd, mariadb-install-db)');
    const started: Running[] = [];
    try {
      await pair.createUser(USER, PASSWORD, DATABASE);
      await pair.primary.query(`GRANT SLAVE MONITOR ON *.* TO '${USER}'@'%'`);
      progress(`rw-split mysql: sysbench prepare (${TABLES} × ${num(TABLE_SIZE)} rows) on the primary`);
      await runChecked('sysbench', [...sysbenchArgs(pair.primary.port), 'prepare'], { name: 'sysbench prepare' });
      await pair.waitReplicated(120_000);
      const version = String((await pair.primary.query<{ v: string }>('SELECT VERSION() AS v'))[0]?.v);
      const auth = { users: { [USER]: { password: PASSWORD } }, backendUser: { user: USER, password: PASSWORD } };
      const base = { security: { allowBackends: ['127.0.0.0/8'] } };
      const splitPort = await freePort();
      const split = await startPolyproxyWithConfig(
        ctx,
        { ...base, routes: { [DATABASE]: { primary: pair.primary.endpoint, replicas: [pair.replica.endpoint] } }, listeners: [{ name: 'split', protocol: 'mysql', host: '127.0.0.1', port: splitPort, auth, readWriteSplit: { maxReplicaLagMs: 5000 } }] },
        'polyproxy split',
      );
      started.push(split);
      const alonePort = await freePort();
      const alone = await startPolyproxyWithConfig(ctx, { ...base, routes: { [DATABASE]: pair.primary.endpoint }, listeners: [{ name: 'primary', protocol: 'mysql', host: '127.0.0.1', port: alonePort, auth }] }, 'polyproxy primary');
      started.push(alone);
      const targets = [
        { key: 'split', label: 'polyproxy split (primary + replica)', port: splitPort, pid: split.pid },
        { key: 'primary', label: 'polyproxy, primary alone (auth)', port: alonePort, pid: alone.pid },
        { key: 'direct', label: 'direct (primary)', port: pair.primary.port, pid: null },
      ];
      if (warmup > 0) {
        for (const t of targets) {
          progress(`rw-split mysql: warm-up ${t.label} (${warmup} s)`);
          await runSysbench(t.port, warmup, t.pid);
        }
      }
      const results = new Map<string, RunResult & { replicaSelects?: number; primarySelects?: number }>();
      for (const t of targets) {
        progress(`rw-split mysql: ${t.label} (${duration} s)`);
        const [p0, r0] = [await comSelect(pair.primary.query), await comSelect(pair.replica.query)];
        const r = await runSysbench(t.port, duration, t.pid);
        const [p1, r1] = [await comSelect(pair.primary.query), await comSelect(pair.replica.query)];
        results.set(t.key, { ...r, primarySelects: p1 - p0, replicaSelects: r1 - r0 });
      }
      const splitTps = results.get('split')?.tps ?? NaN;
      const aloneTps = results.get('primary')?.tps ?? NaN;
      const directTps = results.get('direct')?.tps ?? NaN;
      const errors = [...results.values()].reduce((s, r) => s + r.errors, 0);
      const rows = targets.map((t) => {
        const r = results.get(t.key);
        const selects = (r?.primarySelects ?? 0) + (r?.replicaSelects ?? 0);
        return [
          t.label,
          num(r?.tps),
          num(r?.qps),
          ratio(r?.tps, aloneTps),
          ratio(r?.tps, directTps),
          selects > 0 ? `${Math.round(((r?.replicaSelects ?? 0) / selects) * 100)} %` : '—',
          r?.proxyCpu === null || r?.proxyCpu === undefined ? '—' : `${Math.round(r.proxyCpu * 100)} %`,
        ];
      });
      return {
        verdict: `mysql: sysbench oltp_read_only through the split ${num(splitTps)} TPS = ${ratio(splitTps, aloneTps)} the primary alone through polyproxy, ${ratio(splitTps, directTps)} direct; classifier ${num(cost.us, 2)} µs/statement`,
        tables: [
          {
            caption: `MySQL: sysbench oltp_read_only --skip_trx=on --db-ps-mode=disable, ${THREADS} threads (MariaDB ${version} primary + replica)`,
            table: { headers: ['target', 'TPS', 'QPS', 'vs primary alone', 'vs direct', 'SELECTs on the replica', 'proxy CPU'], rows },
          },
          { caption: 'MySQL classifier (classifyMysql, a tokenizer; no cache)', table: { headers: ['step', 'µs per statement'], rows: [[`classifyMysql over ${num(cost.statements)} sysbench read statements`, num(cost.us, 2)]] } },
        ],
        notes: [
          `\`sysbench ${runArgs(0, duration).join(' ').replace('--mysql-port=0', '--mysql-port=<port>')}\`, one run per target after a ${warmup} s warm-up; ignored errors over all runs: ${errors}. "SELECTs on the replica" is the servers' Com_select delta during the run (the replica's share of all SELECTs). Both polyproxies: one worker, proxy-side auth (mysql_native_password, backendUser ${USER}); the split adds \`readWriteSplit: { maxReplicaLagMs: 5000 }\`.`,
          'The primary and the replica (two mariadbd in temp dirs, GTID replication) run on this machine, sharing its 2 cores with sysbench and polyproxy: a replica on its own host adds its capacity; here the figure shows what the split costs (a per-command parse, one command at a time per session).',
        ],
        data: { settings: { duration, warmup, threads: THREADS, tables: TABLES, tableSize: TABLE_SIZE }, version, results: Object.fromEntries(results), classifier: cost, errors },
      };
    } finally {
      progress('rw-split mysql: stopping');
      await Promise.all(started.map((r) => r.stop()));
      await pair.stop();
    }
  },
};

/** Standalone: `npm run bench -- rw-split-mysql` (bench/scenarios/rw-split.ts runs `mysqlPart` as one of its PARTS). */
export const rwSplitMysqlScenario: Scenario = {
  name: 'rw-split-mysql',
  description: 'read/write split, MySQL: sysbench oltp_read_only through the split (MariaDB primary + replica) vs the primary alone vs direct; classifier µs',
  needsBuild: true,
  // `rw-split` runs this part too; `all` runs it there, not twice.
  notInAll: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const report = await mysqlPart.run(ctx);
    return { title: 'Read/write split (mysql)', ...report };
  },
};
