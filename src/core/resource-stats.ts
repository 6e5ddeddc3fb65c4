/**
 * Per-resource (per-tenant) session and byte counts for metrics and the
 * dashboard's "top tenants". Cardinality is bounded: the first `maxResources`
 * ids get their own row, every later one is counted under "_other", so a
 * flood of unknown ids cannot grow memory or the metrics output.
 * Updated when a session starts and ends, never per chunk.
 */
import type { ResourceStats } from '../admin/source.ts';

export const OTHER_RESOURCES = '_other';

export interface ResourceRow {
  open: number;
  total: number;
  bytesIn: number;
  bytesOut: number;
  /** Refused by a tenant limit. */
  limited: number;
}

export class ResourceTable {
  #max: number;
  readonly #rows = new Map<string, ResourceRow>();

  constructor(maxResources: number) {
    this.#max = maxResources;
  }

  set maxResources(max: number) {
    this.#max = max;
  }

  /** The row a session of `resourceId` counts in; keep it for `closed`. */
  opened(resourceId: string): ResourceRow {
    let row = this.#rows.get(resourceId);
    if (row === undefined) {
      const key = this.#rows.size < this.#max ? resourceId : OTHER_RESOURCES;
      row = this.#rows.get(key);
      if (row === undefined) {
        row = { open: 0, total: 0, bytesIn: 0, bytesOut: 0, limited: 0 };
        this.#rows.set(key, row);
      }
    }
    row.open++;
    row.total++;
    return row;
  }

  /** A session or request of `resourceId` refused by a tenant limit. */
  limited(resourceId: string): void {
    const row = this.opened(resourceId);
    row.open--;
    row.total--;
    row.limited++;
  }

  closed(row: ResourceRow, bytesIn: number, bytesOut: number): void {
    row.open--;
    row.bytesIn += bytesIn;
    row.bytesOut += bytesOut;
  }

  /** A request-scoped use (an HTTP request): counted and finished at once. */
  count(resourceId: string, bytesIn: number, bytesOut: number): void {
    this.closed(this.opened(resourceId), bytesIn, bytesOut);
  }

  /** Every row (bounded by maxResources + 1). */
  all(): ResourceStats[] {
    const out: ResourceStats[] = [];
    // `limited` only where a limit refused something: rows stay as they were for deployments without limits.
    for (const [resourceId, { open, total, bytesIn, bytesOut, limited }] of this.#rows) out.push(limited === 0 ? { resourceId, open, total, bytesIn, bytesOut } : { resourceId, open, total, bytesIn, bytesOut, limited });
    return out;
  }
}

/** The process's table; `metrics.maxResources` sets its bound. */
export const resources = new ResourceTable(1000);

/** The busiest first: open sessions, then bytes, then sessions. */
export function topResources(rows: readonly ResourceStats[], limit: number): ResourceStats[] {
  return [...rows].sort((a, b) => b.open - a.open || b.bytesIn + b.bytesOut - (a.bytesIn + a.bytesOut) || b.total - a.total).slice(0, limit);
}

/** Sums rows of the same id (several workers). */
export function mergeResources(lists: ReadonlyArray<readonly ResourceStats[]>): ResourceStats[] {
  const merged = new Map<string, ResourceRow>();
  for (const list of lists) {
    for (const r of list) {
      const row = merged.get(r.resourceId) ?? { open: 0, total: 0, bytesIn: 0, bytesOut: 0, limited: 0 };
      row.open += r.open;
      row.total += r.total;
      row.bytesIn += r.bytesIn;
      row.bytesOut += r.bytesOut;
      row.limited += r.limited ?? 0;
      merged.set(r.resourceId, row);
    }
  }
  return [...merged].map(([resourceId, { open, total, bytesIn, bytesOut, limited }]) => (limited === 0 ? { resourceId, open, total, bytesIn, bytesOut } : { resourceId, open, total, bytesIn, bytesOut, limited }));
}
