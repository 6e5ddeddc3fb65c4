/**
 * rw-split (issue 17): the read/write split's throughput and its parser's
 * cost, one part per protocol. Add a part by appending an RwSplitPart to
 * PARTS (the MySQL part, sysbench oltp_read_only, lives in
 * rw-split-mysql.ts and is appended there).
 *
 * postgres part: a throwaway primary and a streaming standby
 * (test/helpers/postgres-replica.ts, in temp dirs, never the shared
 * server), `pgbench -i -s 10` on the primary; then `pgbench -S` (simple
 * protocol) with the same clients
 *   - through polyproxy with readWriteSplit (reads on the standby),
 *   - through polyproxy pooling the primary alone (the same route without
 *     replicas),
 *   - directly to the primary,
 * one run each after a warm-up. On one machine both servers share its
 * cores: the figure to read is the split's cost against the pool alone, not
 * a capacity gain a second host would give.
 * The classifier's cost per statement (µs): a first parse (libpg-query
 * over WASM) and a cached answer (by query text), and the whole held-bytes
 * decision for one pgbench Query message.
 *
 * Env: BENCH_DURATION (s, default 10), BENCH_WARMUP (s, default 3).
 */
import { startPostgresReplica } from '../../test/helpers/postgres-replica.ts';
import { PostgresClassifier, loadPostgresParser } from '../../src/protocols/postgres/split/classify.ts';
import { classifyHeld } from '../../src/protocols/postgres/split/held.ts';
import { envNumber } from '../lib/env.ts';
import { mysqlPart } from './rw-split-mysql.ts';
import { freePort } from '../lib/net.ts';
import { startPolyproxyWithConfig } from '../lib/polyproxy-config.ts';
import { progress } from '../lib/progress.ts';
import { runChecked, runCommand } from '../lib/process.ts';
import { readCpuSeconds } from '../lib/rss.ts';
import type { ReportTable, Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { num, ratio } from '../lib/table.ts';
import type { Running } from '../lib/targets.ts';

/** What one protocol's part hands the scenario. */
export interface RwSplitPartReport {
  readonly verdict: string;
  readonly tables: readonly ReportTable[];
  readonly notes: readonly string[];
  readonly data: Record<string, unknown>;
}

export interface RwSplitPart {
  readonly key: string;
  run(ctx: ScenarioContext): Promise<RwSplitPartReport>;
}

// --- postgres ---------------------------------------------------------------------

const DATABASE = 'rwbench';
const USER = 'bench';
const PASSWORD = 'rw-bench';
const SCALE = 10;
const CLIENTS = 16;
const THREADS = 2;

interface PgbenchResult {
  readonly tps: number;
  readonly failed: number;
  readonly usPerTx: number | null;
}

async function pgbench(port: number, seconds: number, pid: number | null): Promise<PgbenchResult> {
  const cpuBefore = pid === null ? 0 : readCpuSeconds(pid);
  const r = await runCommand('pgbench', ['-n', '-S', '-c', String(CLIENTS), '-j', String(THREADS), '-T', String(seconds), '-h', '127.0.0.1', '-p', String(port), '-U', USER, DATABASE], {
    name: 'pgbench',
    env: { ...process.env, PGPASSWORD: PASSWORD },
  });
  const cpu = pid === null ? 0 : readCpuSeconds(pid) - cpuBefore;
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(r.stdout);
  if (r.code !== 0 || tps === null) throw new Error(`pgbench -S on port ${port} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  const processed = Number(/number of transactions actually processed: (\d+)/.exec(r.stdout)?.[1] ?? 0);
  return { tps: Number(tps[1]), failed: Number(/number of failed transactions: (\d+)/.exec(r.stdout)?.[1] ?? 0), usPerTx: pid === null || processed === 0 ? null : (cpu / processed) * 1e6 };
}

/** µs per call of `fn` over `n` calls. */
function timeUs(n: number, fn: (i: number) => void): number {
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn(i);
  return Number(process.hrtime.bigint() - started) / 1000 / n;
}

function queryMessage(sql: string): Buffer {
  const text = Buffer.from(`${sql}\0`);
  const out = Buffer.alloc(5 + text.length);
  out[0] = 0x51;
  out.writeInt32BE(4 + text.length, 1);
  text.copy(out, 5);
  return out;
}

async function classifierCost(): Promise<{ firstParseUs: number; cachedUs: number; heldUs: number; n: number }> {
  await loadPostgresParser();
  const n = 20_000;
  const select = (i: number): string => `SELECT abalance FROM pgbench_accounts WHERE aid = ${i};`;
  // A fresh classifier per measurement: nothing cached before.
  const cold = new PostgresClassifier();
  const firstParseUs = timeUs(n, (i) => cold.classify(select(i)));
  const warm = new PostgresClassifier();
  const sql = select(1);
  warm.classify(sql);
  const cachedUs = timeUs(n * 10, () => warm.classify(sql));
  const held = queryMessage(sql);
  const heldUs = timeUs(n * 10, () => classifyHeld(held, held.length, warm, () => undefined));
  return { firstParseUs, cachedUs, heldUs, n };
}

export const postgresPart: RwSplitPart = {
  key: 'postgres',
  async run(ctx) {
    const duration = envNumber('BENCH_DURATION', 10);
    const warmup = envNumber('BENCH_WARMUP', 3);
    progress('rw-split: classifier cost per statement');
    const cost = await classifierCost();
    progress('rw-split: starting a PostgreSQL primary and a streaming standby');
    const pair = await startPostgresReplica({ roles: [{ name: USER, password: PASSWORD, database: DATABASE }], settings: { max_connections: 100 } });
    if (pair === null) throw new Error('rw-split: cannot start a PostgreSQL primary + standby (see stderr)');
    const started: Running[] = [];
    try {
      const { primary, standby } = pair;
      progress(`rw-split: pgbench -i -s ${SCALE} on the primary`);
      await runChecked('pgbench', ['-i', '-q', '-s', String(SCALE), '-h', primary.socketDir, '-p', String(primary.port), '-U', USER, DATABASE], { name: 'pgbench -i', env: { ...process.env, PGPASSWORD: PASSWORD } });
      await standby.waitForReplay(undefined, 120_000);
      const serverVersion = (await primary.query<{ v: string }>("select current_setting('server_version') as v"))[0]?.v ?? '?';
      const pgbenchVersion = (await runCommand('pgbench', ['--version'])).stdout.trim();
      const listener = (name: string, port: number, split: boolean): Record<string, unknown> => ({
        name,
        protocol: 'postgres',
        host: '127.0.0.1',
        port,
        auth: { users: { [USER]: { password: PASSWORD } } },
        pool: { mode: 'transaction', size: CLIENTS, maxClientConnections: 1000, queueTimeoutMs: 30000 },
        ...(split ? { readWriteSplit: { maxReplicaLagMs: 5000 } } : {}),
      });
      progress('rw-split: starting polyproxy (split) and polyproxy (primary alone)');
      const splitProxy = await startPolyproxyWithConfig(ctx, {
        security: { allowBackends: ['127.0.0.0/8'] },
        routes: { [DATABASE]: { primary: primary.endpoint, replicas: [standby.endpoint] } },
        listeners: [listener('split', await freePort(), true)],
      }, 'polyproxy-split');
      started.push(splitProxy);
      const poolProxy = await startPolyproxyWithConfig(ctx, {
        security: { allowBackends: ['127.0.0.0/8'] },
        routes: { [DATABASE]: primary.endpoint },
        listeners: [listener('pool', await freePort(), false)],
      }, 'polyproxy-pool');
      started.push(poolProxy);
      const targets = [
        { key: 'split', label: 'polyproxy, readWriteSplit (primary + standby)', port: splitProxy.port, pid: splitProxy.pid },
        { key: 'pool', label: 'polyproxy, pool on the primary alone', port: poolProxy.port, pid: poolProxy.pid },
        { key: 'direct', label: 'direct to the primary', port: primary.port, pid: null },
      ] as const;
      for (const t of targets) {
        progress(`rw-split: warm-up ${t.label} (${warmup} s)`);
        if (warmup > 0) await pgbench(t.port, warmup, t.pid).catch(() => undefined);
      }
      const results = new Map<string, PgbenchResult>();
      for (const t of targets) {
        progress(`rw-split: pgbench -S ${t.label} (${duration} s)`);
        results.set(t.key, await pgbench(t.port, duration, t.pid));
      }
      const onStandby = (await standby.query<{ n: string }>("select sum(xact_commit)::text as n from pg_stat_database where datname = 'rwbench'"))[0]?.n ?? '0';
      const get = (key: string): PgbenchResult => results.get(key) as PgbenchResult;
      const split = get('split');
      const pool = get('pool');
      const direct = get('direct');
      const rows = targets.map((t) => {
        const r = get(t.key);
        return [t.label, num(r.tps), ratio(r.tps, pool.tps), ratio(r.tps, direct.tps), r.usPerTx === null ? '—' : num(r.usPerTx, 1), String(r.failed)];
      });
      const failed = split.failed + pool.failed + direct.failed;
      return {
        verdict: `postgres: split ${num(split.tps)} TPS = ${ratio(split.tps, pool.tps)} the pool on the primary alone, ${ratio(split.tps, direct.tps)} direct; ${failed} failed transactions; classifier ${num(cost.firstParseUs, 1)} µs first parse, ${num(cost.cachedUs, 2)} µs cached per statement`,
        tables: [
          { caption: `pgbench -S -c ${CLIENTS} -j ${THREADS} (simple protocol), primary + streaming standby on this machine`, table: { headers: ['target', 'TPS', 'vs pool alone', 'vs direct', 'proxy CPU µs/tx', 'failed tx'], rows } },
          {
            caption: 'The PostgreSQL classifier per statement (libpg-query, WASM)',
            table: {
              headers: ['step', 'µs per statement'],
              rows: [
                [`first parse of a statement text (${num(cost.n)} distinct pgbench -S statements)`, num(cost.firstParseUs, 1)],
                ['cached answer (same text again)', num(cost.cachedUs, 2)],
                ['held-bytes decision for one Query message (cached text)', num(cost.heldUs, 2)],
              ],
            },
          },
        ],
        notes: [
          `pgbench -S -c ${CLIENTS} -j ${THREADS} -T ${duration}, one run per target after a ${warmup} s warm-up; TPS is pgbench's "without initial connection time". Both proxies: one worker, auth (SCRAM), \`pool: { mode: transaction, size: ${CLIENTS} }\`; the split adds \`readWriteSplit: { maxReplicaLagMs: 5000 }\`.`,
          `The primary and the standby run on this machine (PostgreSQL ${serverVersion}, \`pgbench -i -s ${SCALE}\`), sharing its cores with pgbench and polyproxy: a standby on its own host adds its capacity; here it can only show what the split costs. Transactions committed on the standby's database during the run: ${onStandby}.`,
          `Classifier cost measured in the bench process (Node ${process.version}) before the servers start; pgbench's statement texts differ by their literal, so the cache (by query text) misses every time for -M simple with random ids: the first-parse figure is what each pgbench -S statement costs; -M extended / prepared send one text and hit the cache.`,
          pgbenchVersion,
        ],
        data: { settings: { duration, warmup, clients: CLIENTS, threads: THREADS, scale: SCALE }, results: Object.fromEntries(results), classifier: cost, standbyCommits: Number(onStandby) },
      };
    } finally {
      progress('rw-split: stopping');
      await Promise.all(started.map((r) => r.stop()));
      await pair.stop();
    }
  },
};

/**
 * Every part, in the order they run. The MySQL part (rw-split-mysql.ts,
 * sysbench oltp_read_only) is appended here: `import { mysqlPart } from
 * './rw-split-mysql.ts'` and `[postgresPart, mysqlPart]`.
 */
export const PARTS: readonly RwSplitPart[] = [postgresPart, mysqlPart];

export const rwSplitScenario: Scenario = {
  name: 'rw-split',
  description: 'read/write split: pgbench -S through the split (primary + streaming standby) vs the pool on the primary alone vs direct; the classifier µs per statement',
  needsBuild: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const reports: Array<RwSplitPartReport & { key: string }> = [];
    for (const part of PARTS) reports.push({ key: part.key, ...(await part.run(ctx)) });
    return {
      title: `Read/write split (${reports.map((r) => r.key).join(', ')})`,
      verdict: reports.map((r) => r.verdict).join('; '),
      tables: reports.flatMap((r) => r.tables),
      notes: reports.flatMap((r) => r.notes),
      data: Object.fromEntries(reports.map((r) => [r.key, { ...r.data, verdict: r.verdict }])),
    };
  },
};
