/**
 * The resolver contract's `track(resourceId, activity)` (DESIGN.md §2):
 * throttled activity pings per resource, what a scale-to-zero platform
 * needs to know a tenant is still busy. One timer per process, every
 * `trackIntervalMs`: for each resource with sessions opened or ended since
 * the last tick, or sessions still open, every source with a `track` hook
 * gets the bytes and sessions since its last call — so no resource is
 * tracked more than once per interval, however busy.
 *
 * Figures come from the per-resource table (resource-stats.ts), which a
 * session updates when it starts and ends: a long session's bytes are
 * reported when it ends, and meanwhile its resource is tracked with zero
 * bytes (still busy). Nothing here runs per chunk.
 */
import type { Activity, Resolver } from './resolver.ts';
import type { ResourceTable } from './resource-stats.ts';
import { OTHER_RESOURCES } from './resource-stats.ts';
import { callHook } from './tenant-code.ts';

interface Seen {
  total: number;
  bytesIn: number;
  bytesOut: number;
}

export class ActivityTracker {
  readonly #table: ResourceTable;
  readonly #sinks: () => readonly Resolver[];
  readonly #last = new Map<string, Seen>();
  #intervalMs: number;
  #timer: NodeJS.Timeout | null = null;
  /** track() calls made (stats). */
  calls = 0;

  constructor(table: ResourceTable, intervalMs: number, sinks: () => readonly Resolver[]) {
    this.#table = table;
    this.#intervalMs = intervalMs;
    this.#sinks = sinks;
  }

  start(): void {
    if (this.#timer !== null) return;
    this.#timer = setInterval(() => this.tick(), this.#intervalMs);
    this.#timer.unref();
  }

  configure(intervalMs: number): void {
    if (intervalMs === this.#intervalMs) return;
    this.#intervalMs = intervalMs;
    if (this.#timer !== null) {
      this.stop();
      this.start();
    }
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** One round (the timer's; exposed for tests). */
  tick(): void {
    const sinks = this.#sinks().filter((r) => r.track !== undefined);
    for (const row of this.#table.all()) {
      if (row.resourceId === OTHER_RESOURCES) continue;
      const seen = this.#last.get(row.resourceId) ?? { total: 0, bytesIn: 0, bytesOut: 0 };
      const activity: Activity = { bytesIn: row.bytesIn - seen.bytesIn, bytesOut: row.bytesOut - seen.bytesOut, connections: row.total - seen.total };
      if (activity.connections === 0 && activity.bytesIn === 0 && activity.bytesOut === 0 && row.open === 0) continue;
      this.#last.set(row.resourceId, { total: row.total, bytesIn: row.bytesIn, bytesOut: row.bytesOut });
      for (const sink of sinks) {
        this.calls++;
        callHook('track', () => sink.track?.(row.resourceId, activity));
      }
    }
  }
}
