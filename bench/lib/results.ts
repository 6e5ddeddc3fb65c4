/**
 * Persisting results: bench/results/<scenario>.json (everything measured) and
 * the scenario's section of bench/RESULTS.md, between
 * `<!-- scenario:NAME -->` and `<!-- /scenario:NAME -->` (appended when absent).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describeMachine } from './machine.ts';
import type { MachineInfo } from './machine.ts';
import type { ScenarioReport } from './scenario.ts';
import { formatMarkdown } from './table.ts';

export interface RunInfo {
  readonly scenario: string;
  readonly command: string;
  readonly date: string;
  readonly durationSeconds: number;
  readonly machine: MachineInfo;
}

const RESULTS_INTRO = `# polyproxy benchmark results

Written by \`npm run bench -- <scenario|all>\` (bench/run.ts): each scenario
starts polyproxy and its anchors (PgBouncer, a direct connection, the naive
Node \`pipe()\` proxy) side by side in one run on the same machine, pins the
proxies to the same CPU with taskset, and reports ratios — absolute figures
drift between machines and runs (this 2-core machine is shared with other
work, so compare within a run). The section of each scenario between its
\`<!-- scenario:… -->\` markers is rewritten on every run, with the date,
machine and exact command; the raw data is in \`bench/results/<scenario>.json\`.
`;

export function writeResultsJson(benchDir: string, run: RunInfo, report: ScenarioReport): string {
  const dir = path.join(benchDir, 'results');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${run.scenario}.json`);
  const body = { ...run, title: report.title, verdict: report.verdict, tables: report.tables, notes: report.notes, data: report.data };
  writeFileSync(file, `${JSON.stringify(body, null, 2)}\n`);
  return file;
}

export function sectionMarkdown(run: RunInfo, report: ScenarioReport): string {
  const parts: string[] = [`## ${report.title}`, '', `**${report.verdict}**`, ''];
  for (const t of report.tables) {
    if (t.caption !== undefined) parts.push(t.caption, '');
    parts.push(formatMarkdown(t.table), '');
  }
  parts.push(`- Command: \`${run.command}\``);
  parts.push(`- Date: ${run.date} (scenario took ${Math.round(run.durationSeconds)} s)`);
  parts.push(`- Machine: ${describeMachine(run.machine)}`);
  for (const n of report.notes) parts.push(`- ${n}`);
  return parts.join('\n');
}

/** Rewrites (or appends) the scenario's section of RESULTS.md. */
export function updateResultsMarkdown(file: string, scenario: string, section: string): void {
  const open = `<!-- scenario:${scenario} -->`;
  const close = `<!-- /scenario:${scenario} -->`;
  const block = `${open}\n${section.trimEnd()}\n${close}`;
  let text = existsSync(file) ? readFileSync(file, 'utf8') : RESULTS_INTRO;
  const start = text.indexOf(open);
  const end = text.indexOf(close);
  if (start >= 0 && end > start) {
    text = text.slice(0, start) + block + text.slice(end + close.length);
  } else {
    text = `${text.trimEnd()}\n\n${block}\n`;
  }
  writeFileSync(file, text);
}
