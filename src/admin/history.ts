/**
 * The dashboard's history: a ring buffer of cumulative counters sampled
 * every `intervalMs` (default 5 s) from the admin source, by the admin
 * server while it listens (GET /api/history),, covering the last
 * 15 minutes. Per listener: open connections, totals, errors (failed +
 * refused), bytes; per top tenant (the stats' top resources, at most
 * TOP_TENANTS): open, totals, bytes; and the resolver's latency as the
 * histogram's cumulative sum and count. The page turns consecutive samples
 * into rates (bytes/s, errors/s, mean resolve latency per interval), so a
 * sample is small and a restart of a worker shows as a gap, not a spike.
 * Sampling reads what /api/stats and /metrics already compute: nothing is
 * added to the relay.
 */
import type { AdminSource } from './source.ts';

export const HISTORY_WINDOW_MS = 15 * 60 * 1000;
export const DEFAULT_HISTORY_INTERVAL_MS = 5000;
export const TOP_TENANTS = 5;

export interface ListenerSample {
  readonly open: number;
  readonly total: number;
  readonly errors: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

export interface TenantSample {
  readonly open: number;
  readonly total: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

export interface HistorySample {
  /** Milliseconds since the epoch. */
  readonly at: number;
  readonly listeners: Readonly<Record<string, ListenerSample>>;
  readonly tenants: Readonly<Record<string, TenantSample>>;
  /** polyproxy_resolve_duration_seconds, summed over its labels (cumulative). */
  readonly resolve: { readonly count: number; readonly sumSeconds: number };
}

export interface HistorySnapshot {
  readonly intervalMs: number;
  readonly windowMs: number;
  /** Oldest first. */
  readonly samples: readonly HistorySample[];
}

/** Fixed-size ring of samples. */
export class SampleRing {
  readonly #slots: Array<HistorySample | undefined>;
  #next = 0;
  #size = 0;

  constructor(capacity: number) {
    this.#slots = new Array<HistorySample | undefined>(Math.max(1, capacity));
  }

  push(sample: HistorySample): void {
    this.#slots[this.#next] = sample;
    this.#next = (this.#next + 1) % this.#slots.length;
    if (this.#size < this.#slots.length) this.#size++;
  }

  /** Oldest first. */
  toArray(): HistorySample[] {
    const out: HistorySample[] = [];
    const start = (this.#next - this.#size + this.#slots.length) % this.#slots.length;
    for (let i = 0; i < this.#size; i++) out.push(this.#slots[(start + i) % this.#slots.length] as HistorySample);
    return out;
  }
}

/** Sum and count of the resolve-duration histogram across all label sets, from Prometheus text. */
export function resolveTotals(metricsText: string): { count: number; sumSeconds: number } {
  let count = 0;
  let sumSeconds = 0;
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith('polyproxy_resolve_duration_seconds_')) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (!Number.isFinite(value)) continue;
    if (line.startsWith('polyproxy_resolve_duration_seconds_sum')) sumSeconds += value;
    else if (line.startsWith('polyproxy_resolve_duration_seconds_count')) count += value;
  }
  return { count, sumSeconds };
}

export async function takeSample(source: Pick<AdminSource, 'stats' | 'metrics'>, now = Date.now()): Promise<HistorySample> {
  const [stats, metrics] = await Promise.all([source.stats(), source.metrics()]);
  const listeners: Record<string, ListenerSample> = {};
  for (const l of stats.listeners) listeners[l.name] = { open: l.open, total: l.total, errors: l.failed + l.refused, bytesIn: l.bytesIn, bytesOut: l.bytesOut };
  const tenants: Record<string, TenantSample> = {};
  for (const r of stats.resources.slice(0, TOP_TENANTS)) tenants[r.resourceId] = { open: r.open, total: r.total, bytesIn: r.bytesIn, bytesOut: r.bytesOut };
  return { at: now, listeners, tenants, resolve: resolveTotals(metrics) };
}

export interface History {
  snapshot(): HistorySnapshot;
  stop(): void;
}

/** Samples every `intervalMs` (unref'd timer), the first after one interval; a failed sample (proxy still starting) is skipped, a slow one is not overlapped. */
export function startHistory(source: Pick<AdminSource, 'stats' | 'metrics'>, intervalMs: number): History {
  const ring = new SampleRing(Math.ceil(HISTORY_WINDOW_MS / intervalMs) + 1);
  let busy = false;
  const tick = (): void => {
    if (busy) return;
    busy = true;
    takeSample(source).then(
      (sample) => {
        busy = false;
        ring.push(sample);
      },
      () => {
        busy = false;
      },
    );
  };
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  return {
    snapshot: () => ({ intervalMs, windowMs: HISTORY_WINDOW_MS, samples: ring.toArray() }),
    stop: () => clearInterval(timer),
  };
}
