/**
 * The chaos campaign (issue 16): `npm run chaos [-- <scenario...>] [--no-build]`.
 *
 * Each scenario starts polyproxy (the built CLI, dist/) with real backends
 * and real load generators, injects its faults and checks the issue's
 * must-shows; every scenario also checks that the proxy's descriptors came
 * back to where they were. The runner prints one table, keeps every
 * scenario's last results in bench/results/chaos.json and rewrites the
 * `chaos` section of bench/RESULTS.md from it. A must-show that does not
 * hold, or a scenario that fails to run, makes the exit code 1.
 *
 * Not part of `npm test`: it takes minutes and starts nginx, php-fpm and
 * many processes. Child processes run in their own process groups and are
 * killed on exit or Ctrl-C (bench/lib/process.ts).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describeMachine, machineInfo } from '../bench/lib/machine.ts';
import { stopAll } from '../bench/lib/process.ts';
import { note, progress, progressDone, resetClock } from '../bench/lib/progress.ts';
import { updateResultsMarkdown } from '../bench/lib/results.ts';
import { formatMarkdown, formatText } from '../bench/lib/table.ts';
import type { Table } from '../bench/lib/table.ts';
import { buildPolyproxy } from '../bench/lib/targets.ts';
import type { ChaosContext, ChaosScenario, Check } from './lib/scenario.ts';
import { backendFaultsScenario } from './scenarios/backend-faults.ts';
import { drainReloadScenario } from './scenarios/drain-reload.ts';
import { fdExhaustionScenario } from './scenarios/fd-exhaustion.ts';
import { hostileResolverScenario } from './scenarios/hostile-resolver.ts';
import { slowlorisScenario } from './scenarios/slowloris.ts';
import { soakScenario } from './scenarios/soak.ts';

const SCENARIOS: readonly ChaosScenario[] = [drainReloadScenario, backendFaultsScenario, hostileResolverScenario, slowlorisScenario, fdExhaustionScenario, soakScenario];

const chaosDir = path.dirname(new URL(import.meta.url).pathname);
const root = path.dirname(chaosDir);
const resultsJson = path.join(root, 'bench', 'results', 'chaos.json');
const resultsMd = path.join(root, 'bench', 'RESULTS.md');

interface ScenarioResult {
  readonly scenario: string;
  readonly description: string;
  readonly date: string;
  readonly durationSeconds: number;
  readonly command: string;
  readonly checks: readonly Check[];
  readonly notes: readonly string[];
  /** The scenario threw: the message. */
  readonly error: string | null;
}

interface Stored {
  machine: string;
  scenarios: Record<string, ScenarioResult>;
}

function usage(): string {
  return [
    'Usage: npm run chaos [-- <scenario...>] [--no-build]',
    '',
    'Scenarios (all of them, in this order, without a name):',
    ...SCENARIOS.map((s) => `  ${s.name.padEnd(17)} ${s.description}`),
    '',
    'Env: CHAOS_RELOADS (drain-reload, default 20); CHAOS_SOAK_SECONDS (soak, default 120); CHAOS_SLOW_CLIENTS (slowloris, per listener, default 100).',
  ].join('\n');
}

function commandLine(args: readonly string[]): string {
  const env = Object.entries(process.env)
    .filter(([k, v]) => k.startsWith('CHAOS_') && v !== undefined && v !== '')
    .map(([k, v]) => `${k}=${v}`);
  return [...env, 'npm run chaos', ...(args.length > 0 ? ['--', ...args] : [])].join(' ');
}

function verdict(ok: boolean | null): string {
  return ok === null ? '' : ok ? 'ok' : 'FAILED';
}

function table(results: readonly ScenarioResult[]): Table {
  const rows: string[][] = [];
  for (const r of results) {
    if (r.error !== null) rows.push([r.scenario, 'scenario did not complete', r.error.split('\n')[0] ?? '', 'completes', 'FAILED']);
    for (const c of r.checks) rows.push([r.scenario, c.what, c.figure, c.must, verdict(c.ok)]);
  }
  return { headers: ['scenario', 'check', 'figure', 'must', 'verdict'], rows, rightAligned: [] };
}

function failed(r: ScenarioResult): boolean {
  return r.error !== null || r.checks.some((c) => c.ok === false);
}

function sectionMarkdown(stored: Stored): string {
  const results = SCENARIOS.map((s) => stored.scenarios[s.name]).filter((r): r is ScenarioResult => r !== undefined);
  const bad = results.filter(failed).map((r) => r.scenario);
  const parts = [
    '## Chaos campaign (issue 16): faults, drains and a soak against the built CLI',
    '',
    `**${bad.length === 0 ? `Every must-show held (${results.length} scenario(s))` : `Must-show broken in: ${bad.join(', ')}`}**`,
    '',
    formatMarkdown(table(results)),
    '',
    `- Written by \`npm run chaos\` (chaos/run.ts, one file per scenario in chaos/scenarios/); \`npm run chaos -- <scenario>\` reruns one and keeps the others' last rows (bench/results/chaos.json).`,
    `- Machine: ${stored.machine}. The machine is shared: other work (helpers building and testing) ran during these runs, so absolute figures (TPS, req/s, times) are noisy; the must-shows are counts and deadlines.`,
  ];
  for (const r of results) {
    parts.push('', `### ${r.scenario}: ${r.description}`, '', `- Command: \`${r.command}\``, `- Date: ${r.date} (took ${Math.round(r.durationSeconds)} s)`);
    for (const n of r.notes) parts.push(`- ${n}`);
    if (r.error !== null) parts.push(`- Did not complete: \`${r.error.split('\n')[0] ?? ''}\``);
  }
  return parts.join('\n');
}

async function main(argv: readonly string[]): Promise<number> {
  const flags = argv.filter((a) => a.startsWith('-'));
  const names = argv.filter((a) => !a.startsWith('-'));
  if (flags.includes('--help') || flags.includes('-h')) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  const unknownFlags = flags.filter((f) => f !== '--no-build');
  const chosen = names.length === 0 ? [...SCENARIOS] : names.map((n) => SCENARIOS.find((s) => s.name === n));
  if (unknownFlags.length > 0 || chosen.some((s) => s === undefined)) {
    process.stderr.write(`chaos: unknown ${unknownFlags.length > 0 ? `option ${unknownFlags.join(' ')}` : `scenario ${names.filter((n) => !SCENARIOS.some((s) => s.name === n)).join(' ')}`}\n\n${usage()}\n`);
    return 2;
  }
  const scenarios = chosen as ChaosScenario[];
  const ctx: ChaosContext = { root, node: process.execPath };
  const machine = describeMachine(machineInfo());
  const command = commandLine(argv);
  const started = Date.now();
  resetClock();
  process.stdout.write(`polyproxy chaos — ${machine}\n\n`);
  if (!flags.includes('--no-build')) {
    progress('building polyproxy (tsc -p tsconfig.build.json)');
    await buildPolyproxy({ root, node: process.execPath, proxyCpu: -1 });
  }
  const stored: Stored = existsSync(resultsJson) ? (JSON.parse(readFileSync(resultsJson, 'utf8')) as Stored) : { machine, scenarios: {} };
  stored.machine = machine;
  const ran: ScenarioResult[] = [];
  for (const scenario of scenarios) {
    const t0 = Date.now();
    progress(`${scenario.name}: running`);
    let result: ScenarioResult;
    try {
      const report = await scenario.run(ctx);
      result = { scenario: scenario.name, description: scenario.description, date: new Date().toISOString(), durationSeconds: (Date.now() - t0) / 1000, command, checks: report.checks, notes: report.notes, error: null };
    } catch (err) {
      note(`${scenario.name} failed: ${(err as Error).stack ?? String(err)}`);
      result = { scenario: scenario.name, description: scenario.description, date: new Date().toISOString(), durationSeconds: (Date.now() - t0) / 1000, command, checks: [], notes: [], error: (err as Error).message };
    }
    await stopAll();
    progressDone();
    process.stdout.write(`== ${scenario.name} (${Math.round(result.durationSeconds)} s)${failed(result) ? ' — MUST-SHOW BROKEN' : ''}\n${formatText(table([result]))}\n\n`);
    ran.push(result);
    stored.scenarios[scenario.name] = result;
    mkdirSync(path.dirname(resultsJson), { recursive: true });
    writeFileSync(resultsJson, `${JSON.stringify(stored, null, 2)}\n`);
    updateResultsMarkdown(resultsMd, 'chaos', sectionMarkdown(stored));
  }
  const bad = ran.filter(failed);
  process.stdout.write(`${formatText(table(ran))}\n\ndone in ${Math.round((Date.now() - started) / 1000)} s; ${bad.length === 0 ? 'every must-show held' : `must-show broken in ${bad.map((r) => r.scenario).join(', ')}`}\nwrote bench/results/chaos.json and the chaos section of bench/RESULTS.md\n`);
  return bad.length > 0 ? 1 : 0;
}

const code = await main(process.argv.slice(2));
await stopAll();
process.exit(code);
