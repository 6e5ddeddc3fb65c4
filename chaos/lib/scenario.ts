/** What a chaos scenario is given and hands back to the runner (chaos/run.ts). */

export interface ChaosContext {
  /** The project root (where package.json is). */
  readonly root: string;
  /** The Node binary running the campaign (Node 24): used for every Node child. */
  readonly node: string;
}

/**
 * One line of the results table. `ok`: true/false for an issue-16 must-show
 * (false fails `npm run chaos`), null for a figure reported without a bar.
 */
export interface Check {
  readonly what: string;
  readonly figure: string;
  readonly must: string;
  readonly ok: boolean | null;
}

export interface ChaosReport {
  readonly checks: readonly Check[];
  /** Markdown bullet texts: settings and observations. */
  readonly notes: readonly string[];
}

export interface ChaosScenario {
  readonly name: string;
  readonly description: string;
  run(ctx: ChaosContext): Promise<ChaosReport>;
}

/** A must-show line. */
export function must(what: string, figure: string, bar: string, ok: boolean): Check {
  return { what, figure, must: bar, ok };
}

/** A figure without a bar. */
export function figure(what: string, value: string): Check {
  return { what, figure: value, must: '—', ok: null };
}
