/** What a scenario is given and what it hands back to the runner. */
import type { Table } from './table.ts';

export interface ScenarioContext {
  /** The project root (where package.json is). */
  readonly root: string;
  /** The Node binary running the bench (Node 24): used for every Node child. */
  readonly node: string;
  /** CPU the proxy under test and its anchor are pinned to (-1 = unpinned). */
  readonly proxyCpu: number;
}

export interface ReportTable {
  readonly caption?: string;
  readonly table: Table;
}

export interface ScenarioReport {
  readonly title: string;
  /** One-line verdict against the target, e.g. "target met: 1.31× PgBouncer". */
  readonly verdict: string;
  readonly tables: readonly ReportTable[];
  /** Markdown bullet texts (settings, observations). */
  readonly notes: readonly string[];
  /** Everything measured, for bench/results/<scenario>.json. */
  readonly data: Record<string, unknown>;
}

export interface Scenario {
  readonly name: string;
  readonly description: string;
  /** Needs a fresh `dist/` build of polyproxy. */
  readonly needsBuild: boolean;
  /** Left out of `all` (the scale scenarios hold the machine for minutes): run by name. */
  readonly notInAll?: boolean;
  run(ctx: ScenarioContext): Promise<ScenarioReport>;
}
