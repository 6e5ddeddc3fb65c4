/**
 * Benchmark runner: `npm run bench -- <scenario...|all> [--no-build]`.
 *
 * Each scenario starts its anchors and polyproxy side by side, prints a table
 * with ratios, writes bench/results/<scenario>.json and rewrites its section
 * of bench/RESULTS.md. Every child process runs in its own process group and
 * is killed on exit, Ctrl-C or SIGTERM.
 */
import path from 'node:path';
import { machineInfo, describeMachine, proxyCpu } from './lib/machine.ts';
import { stopAll } from './lib/process.ts';
import { note, progress, progressDone, resetClock } from './lib/progress.ts';
import { sectionMarkdown, updateResultsMarkdown, writeResultsJson } from './lib/results.ts';
import type { Scenario, ScenarioContext } from './lib/scenario.ts';
import { formatText } from './lib/table.ts';
import { writeAllCharts, writeChart } from './lib/charts.ts';
import { buildPolyproxy } from './lib/targets.ts';
import { brokersScenario } from './scenarios/brokers.ts';
import { clusterScenario } from './scenarios/cluster.ts';
import { fastcgiScenario } from './scenarios/fastcgi.ts';
import { httpRpsScenario } from './scenarios/http-rps.ts';
import { http2Scenario } from './scenarios/http2.ts';
import { idleMemoryScenario } from './scenarios/idle-memory.ts';
import { mysqlSysbenchScenario } from './scenarios/mysql-sysbench.ts';
import { pgbenchScenario } from './scenarios/pgbench.ts';
import { pgbenchPoolScenario } from './scenarios/pgbench-pool.ts';
import { rwSplitScenario } from './scenarios/rw-split.ts';
import { rwSplitMysqlScenario } from './scenarios/rw-split-mysql.ts';
import { smtpScenario } from './scenarios/smtp.ts';
import { tcpBulkScenario } from './scenarios/tcp-bulk.ts';
import { tcpHoldScenario } from './scenarios/tcp-hold.ts';
import { tcpRateScenario } from './scenarios/tcp-rate.ts';
import { tcpRrScenario } from './scenarios/tcp-rr.ts';
import { tcpScaleScenario } from './scenarios/tcp-scale.ts';
import { wsBridgeScenario, wsScaleScenario } from './scenarios/ws-bridge.ts';

const SCENARIOS: readonly Scenario[] = [pgbenchScenario, pgbenchPoolScenario, idleMemoryScenario, tcpRrScenario, tcpBulkScenario, mysqlSysbenchScenario, httpRpsScenario, smtpScenario, tcpRateScenario, tcpHoldScenario, wsBridgeScenario, fastcgiScenario, brokersScenario, http2Scenario, clusterScenario, rwSplitScenario, rwSplitMysqlScenario, tcpScaleScenario, wsScaleScenario];

/**
 * `all` runs every scenario shorter, to stay under 15 minutes on the 2-core
 * box (one interleaved round, 1 s warm-ups and 6 s runs, smaller request
 * counts, a 12,000 client ws-bridge): each scenario still runs polyproxy and its anchors side
 * by side in one run, so the ratios stand; run a scenario by name for the
 * full-length figures. A BENCH_* variable set by the caller wins.
 */
const ALL_PROFILE: Readonly<Record<string, string>> = {
  BENCH_ROUNDS: '1',
  BENCH_DURATION: '6',
  BENCH_WARMUP: '1',
  BENCH_RR_REQUESTS: '100000',
  BENCH_BULK_GB: '2',
  BENCH_REDIS_REQUESTS: '300000',
  BENCH_WSB_CLIENTS: '12000',
  BENCH_WSB_IDLE: '5000',
  BENCH_WSB_SUSTAIN: '15',
};

const benchDir = path.dirname(new URL(import.meta.url).pathname);
const root = path.dirname(benchDir);

function usage(): string {
  return [
    'Usage: npm run bench -- <scenario...|all> [--no-build]',
    '',
    'Scenarios:',
    ...SCENARIOS.map((s) => `  ${s.name.padEnd(14)} ${s.description}`),
    '  all            every scenario above, in order, except tcp-scale and ws-scale (minutes each: run them by name), shortened',
    `                 to stay under 15 minutes: ${Object.entries(ALL_PROFILE).map(([k, v]) => `${k}=${v}`).join(' ')} unless set`,
    '  charts         only regenerate bench/charts/*.svg from bench/results/*.json',
    '',
    'Env: BENCH_DURATION, BENCH_WARMUP, BENCH_ROUNDS (pgbench, mysql-sysbench); BENCH_IDLE_MAX, BENCH_IDLE_STEP, BENCH_IDLE_PROCESSES (idle-memory);',
    '     BENCH_RR_REQUESTS (tcp-rr); BENCH_BULK_GB, BENCH_BULK_CONNECTIONS (tcp-bulk);',
    '     BENCH_RATE_SECONDS, BENCH_RATE_CONCURRENCY, BENCH_RATE_PROCESSES (tcp-rate); BENCH_HOLD_MAX, BENCH_HOLD_STEP, BENCH_HOLD_PROCESSES (tcp-hold); BENCH_NATIVE=0 (Node instead of C load/echo);',
    '     BENCH_STREAM_GB (http-rps); BENCH_SMTP_CONNECTIONS (smtp); BENCH_FPM_CHILDREN (fastcgi); BENCH_REDIS_REQUESTS, BENCH_REDIS_CONNECTIONS (brokers); BENCH_MQTT_CLIENTS, BENCH_MQTT_WINDOW (brokers);',
    '     BENCH_WSB_CLIENTS, BENCH_WSB_STEPS, BENCH_WSB_PROCESSES, BENCH_WSB_WORKERS, BENCH_WSB_RATE, BENCH_WSB_SUSTAIN, BENCH_WSB_IDLE (ws-bridge); BENCH_WSS_CLIENTS, BENCH_WSS_STEPS, BENCH_WSS_PROCESSES, BENCH_WSS_WORKERS, BENCH_WSS_RATE, BENCH_WSS_SUSTAIN (ws-scale);',
    '     BENCH_SCALE_CONNECTIONS, BENCH_SCALE_STEPS, BENCH_SCALE_WORKERS, BENCH_SCALE_PROCESSES, BENCH_SCALE_BACKENDS (tcp-scale);',
    '     BENCH_CLUSTER_SECONDS, BENCH_CLUSTER_PUSH_CONCURRENCY, BENCH_CLUSTER_LOOKUPS, BENCH_REDIS_URL (cluster);',
    '     BENCH_PROXY_CPU (CPU the proxies are pinned to, -1 = none); BENCH_POLYPROXY_NODE_FLAGS (e.g. --cpu-prof).',
  ].join('\n');
}

/** The command line as a user would type it, with the BENCH_* settings that were set. */
function commandLine(args: readonly string[]): string {
  const env = Object.entries(process.env)
    .filter(([k, v]) => k.startsWith('BENCH_') && v !== undefined && v !== '')
    .map(([k, v]) => `${k}=${v}`);
  return [...env, 'npm run bench --', ...args].join(' ');
}

async function main(argv: readonly string[]): Promise<number> {
  const flags = argv.filter((a) => a.startsWith('-'));
  const names = argv.filter((a) => !a.startsWith('-'));
  if (flags.includes('--help') || flags.includes('-h') || names.length === 0) {
    process.stdout.write(`${usage()}\n`);
    return names.length === 0 && !flags.includes('--help') && !flags.includes('-h') ? 2 : 0;
  }
  const unknownFlags = flags.filter((f) => f !== '--no-build');
  if (names.length === 1 && names[0] === 'charts') {
    for (const f of writeAllCharts(benchDir)) process.stdout.write(`wrote ${path.relative(root, f)}\n`);
    return 0;
  }
  const chosen = names.includes('all') ? SCENARIOS.filter((s) => s.notInAll !== true) : names.map((n) => SCENARIOS.find((s) => s.name === n));
  if (unknownFlags.length > 0 || chosen.some((s) => s === undefined)) {
    process.stderr.write(`bench: unknown ${unknownFlags.length > 0 ? `option ${unknownFlags.join(' ')}` : `scenario ${names.filter((n) => !SCENARIOS.some((s) => s.name === n)).join(' ')}`}\n\n${usage()}\n`);
    return 2;
  }
  const scenarios = chosen as Scenario[];
  const ctx: ScenarioContext = { root, node: process.execPath, proxyCpu: proxyCpu() };
  const machine = machineInfo();
  const command = commandLine(argv);
  if (names.includes('all')) for (const [k, v] of Object.entries(ALL_PROFILE)) if (process.env[k] === undefined || process.env[k] === '') process.env[k] = v;
  const allStarted = Date.now();
  resetClock();
  process.stdout.write(`polyproxy bench — ${describeMachine(machine)}\nproxies pinned to CPU ${ctx.proxyCpu}\n\n`);

  if (scenarios.some((s) => s.needsBuild) && !flags.includes('--no-build')) {
    progress('building polyproxy (tsc -p tsconfig.build.json)');
    await buildPolyproxy(ctx);
  }

  let failures = 0;
  for (const scenario of scenarios) {
    const started = Date.now();
    progress(`${scenario.name}: starting`);
    try {
      const report = await scenario.run(ctx);
      const durationSeconds = (Date.now() - started) / 1000;
      progressDone();
      const run = { scenario: scenario.name, command, date: new Date().toISOString(), durationSeconds, machine };
      process.stdout.write(`== ${scenario.name}: ${report.title} (${Math.round(durationSeconds)} s)\n\n`);
      for (const t of report.tables) {
        if (t.caption !== undefined) process.stdout.write(`${t.caption}\n`);
        process.stdout.write(`${formatText(t.table)}\n\n`);
      }
      process.stdout.write(`${report.verdict}\n`);
      const json = writeResultsJson(benchDir, run, report);
      updateResultsMarkdown(path.join(benchDir, 'RESULTS.md'), scenario.name, sectionMarkdown(run, report));
      const chart = writeChart(benchDir, scenario.name);
      if (chart !== null) process.stdout.write(`wrote ${path.relative(root, chart)}\n`);
      process.stdout.write(`wrote ${path.relative(root, json)} and bench/RESULTS.md\n\n`);
    } catch (err) {
      failures++;
      note(`${scenario.name} failed: ${(err as Error).stack ?? String(err)}`);
      await stopAll();
    }
  }
  progressDone();
  process.stdout.write(`done in ${Math.round((Date.now() - allStarted) / 1000)} s${failures > 0 ? `, ${failures} scenario(s) failed` : ''}\n`);
  return failures > 0 ? 1 : 0;
}

const code = await main(process.argv.slice(2));
await stopAll();
process.exit(code);
