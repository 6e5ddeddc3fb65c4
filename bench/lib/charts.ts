/**
 * SVG bar charts (hand-written, no dependencies): one per scenario, from
 * bench/results/<scenario>.json to bench/charts/<scenario>.svg — polyproxy
 * and its anchors, one bar each, for the scenario's headline figure (the
 * first numeric column of its first table, unless `data.chart` says
 * otherwise: `{ metric, lowerIsBetter?, bars: [{ label, value }] }`).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface Bar {
  readonly label: string;
  readonly value: number;
}

export interface ChartSpec {
  readonly title: string;
  readonly metric: string;
  readonly lowerIsBetter: boolean;
  readonly bars: readonly Bar[];
  readonly footer: string;
}

interface ResultsJson {
  readonly scenario: string;
  readonly title?: string;
  readonly date?: string;
  readonly tables?: ReadonlyArray<{ readonly table: { readonly headers: readonly string[]; readonly rows: ReadonlyArray<readonly string[]> } }>;
  readonly data?: { readonly chart?: { readonly metric: string; readonly lowerIsBetter?: boolean; readonly bars: readonly Bar[] } };
}

/** "24,352" → 24352, "6.57" → 6.57, "1.47" → 1.47, "—" → NaN. */
function parseFigure(cell: string | undefined): number {
  if (cell === undefined) return NaN;
  const m = /-?[\d,]*\.?\d+/.exec(cell);
  return m === null ? NaN : Number(m[0].replace(/,/g, ''));
}

/** The chart a results file calls for, or null when it has nothing to plot. */
export function chartSpec(json: ResultsJson): ChartSpec | null {
  const footer = `${json.scenario}${json.date === undefined ? '' : `, ${json.date.slice(0, 10)}`} — bench/results/${json.scenario}.json`;
  const title = json.title ?? json.scenario;
  const custom = json.data?.chart;
  if (custom !== undefined) return { title, metric: custom.metric, lowerIsBetter: custom.lowerIsBetter === true, bars: custom.bars, footer };
  const table = json.tables?.[0]?.table;
  if (table === undefined) return null;
  const col = table.headers.findIndex((_, i) => i > 0 && table.rows.some((r) => Number.isFinite(parseFigure(r[i]))));
  if (col < 0) return null;
  const metric = table.headers[col] as string;
  const bars = table.rows.map((r) => ({ label: r[0] ?? '', value: parseFigure(r[col]) })).filter((b) => Number.isFinite(b.value));
  const lowerIsBetter = /KB|MB|µs|latency|\bms\b|\bs\/|CPU/i.test(metric);
  return { title, metric, lowerIsBetter, bars, footer };
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function formatValue(v: number): string {
  const decimals = Math.abs(v) >= 100 ? 0 : 2;
  return v.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

/** A horizontal bar chart; polyproxy's bar is highlighted. */
export function renderSvg(spec: ChartSpec): string {
  const width = 720;
  const labelWidth = 260;
  const barArea = width - labelWidth - 90;
  const top = 62;
  const rowHeight = 30;
  const height = top + spec.bars.length * rowHeight + 36;
  const maxValue = Math.max(...spec.bars.map((b) => b.value), 0) || 1;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif" font-size="13">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="16" y="24" font-size="15" font-weight="bold" fill="#1f2328">${esc(spec.title)}</text>`,
    `<text x="16" y="44" fill="#57606a">${esc(spec.metric)} — ${spec.lowerIsBetter ? 'lower' : 'higher'} is better</text>`,
  ];
  spec.bars.forEach((bar, i) => {
    const y = top + i * rowHeight;
    const w = Math.max(1, (Math.max(0, bar.value) / maxValue) * barArea);
    const ours = /^polyproxy/i.test(bar.label);
    out.push(
      `<text x="${labelWidth - 8}" y="${y + 17}" text-anchor="end" fill="#1f2328"${ours ? ' font-weight="bold"' : ''}>${esc(bar.label)}</text>`,
      `<rect x="${labelWidth}" y="${y + 4}" width="${w.toFixed(1)}" height="${rowHeight - 10}" rx="2" fill="${ours ? '#2f81f7' : '#afb8c1'}"/>`,
      `<text x="${(labelWidth + w + 6).toFixed(1)}" y="${y + 17}" fill="#1f2328"${ours ? ' font-weight="bold"' : ''}>${esc(formatValue(bar.value))}</text>`,
    );
  });
  out.push(`<text x="16" y="${height - 12}" font-size="11" fill="#8c959f">${esc(spec.footer)}</text>`, '</svg>', '');
  return out.join('\n');
}

/** Writes bench/charts/<scenario>.svg from bench/results/<scenario>.json; returns the file or null. */
export function writeChart(benchDir: string, scenario: string): string | null {
  const file = path.join(benchDir, 'results', `${scenario}.json`);
  if (!existsSync(file)) return null;
  const spec = chartSpec(JSON.parse(readFileSync(file, 'utf8')) as ResultsJson);
  if (spec === null || spec.bars.length === 0) return null;
  const dir = path.join(benchDir, 'charts');
  mkdirSync(dir, { recursive: true });
  const out = path.join(dir, `${scenario}.svg`);
  writeFileSync(out, renderSvg(spec));
  return out;
}

/** Regenerates the chart of every bench/results/*.json. */
export function writeAllCharts(benchDir: string): string[] {
  const dir = path.join(benchDir, 'results');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => writeChart(benchDir, f.slice(0, -'.json'.length)))
    .filter((f): f is string => f !== null);
}
