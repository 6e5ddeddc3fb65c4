/**
 * The admin server's data (src/admin/source.ts): read from this process when
 * it runs alone, or gathered from every worker by the supervisor and merged —
 * metrics through prom-client's AggregatorRegistry (counters add up; gauges
 * declare their own aggregation), stats row by row.
 */
import { AggregatorRegistry } from 'prom-client';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { AdminSource, BreakerState, EndpointStats, FleetInstance, ListenerStats, PoolStatsRow, ProxyStats } from '../admin/source.ts';
import { addRows } from '../protocols/postgres/pool/stats.ts';
import { registry } from '../core/metrics.ts';
import { mergeSplitStats } from '../core/rw-split/stats.ts';
import { mergeResources, topResources } from '../core/resource-stats.ts';
import { packageVersion } from '../core/version.ts';
import type { RunningProxy, WorkerStats } from './proxy.ts';

/** How many resources /api/stats lists. */
const TOP_RESOURCES = 20;

export function localAdminSource(proxy: RunningProxy, ready: () => boolean): AdminSource {
  return {
    metrics: () => registry.metrics(),
    stats: () => Promise.resolve(mergeWorkerStats([proxy.stats()], 1, ready())),
    purge: (resourceId) => Promise.resolve(proxy.purge(resourceId)),
    ready,
  };
}

/** What the supervisor asks every worker. */
export interface WorkerQueries {
  metrics(): Promise<Array<Array<MetricObjectWithValues<MetricValue<string>>>>>;
  stats(): Promise<WorkerStats[]>;
  purge(resourceId: string): Promise<number[]>;
  workers(): number;
}

export function clusterAdminSource(queries: WorkerQueries, ready: () => boolean): AdminSource {
  return {
    metrics: async () => AggregatorRegistry.aggregate(await queries.metrics()).metrics(),
    stats: async () => mergeWorkerStats(await queries.stats(), queries.workers(), ready()),
    purge: async (resourceId) => (await queries.purge(resourceId)).reduce((a, b) => a + b, 0),
    ready,
  };
}

const SEVERITY: Record<BreakerState, number> = { closed: 0, 'half-open': 1, open: 2 };

export function mergeWorkerStats(list: readonly WorkerStats[], workers: number, ready: boolean): ProxyStats {
  const startedAt = list.length === 0 ? Date.now() : Math.min(...list.map((s) => s.startedAt));
  const listeners = new Map<string, ListenerStats>();
  const endpoints = new Map<string, EndpointStats>();
  const cache = { entries: 0, hits: 0, misses: 0 };
  const coldStarts = { waiting: 0, wakes: 0, timeouts: 0 };
  const pools = new Map<string, PoolStatsRow>();
  for (const worker of list) {
    for (const p of worker.pools ?? []) {
      const key = `${p.listener}\0${p.pool}`;
      const seen = pools.get(key);
      pools.set(key, seen === undefined ? p : addRows(seen, p));
    }
    for (const l of worker.listeners) {
      const seen = listeners.get(l.name);
      listeners.set(
        l.name,
        seen === undefined
          ? l
          : { ...seen, open: seen.open + l.open, total: seen.total + l.total, refused: seen.refused + l.refused, failed: seen.failed + l.failed, bytesIn: seen.bytesIn + l.bytesIn, bytesOut: seen.bytesOut + l.bytesOut },
      );
    }
    // Each worker keeps its own breakers: show the worst view of an endpoint.
    for (const e of worker.endpoints) {
      const seen = endpoints.get(e.endpoint);
      if (seen === undefined) {
        endpoints.set(e.endpoint, e);
        continue;
      }
      endpoints.set(e.endpoint, {
        endpoint: e.endpoint,
        state: SEVERITY[e.state] > SEVERITY[seen.state] ? e.state : seen.state,
        healthy: seen.healthy === null ? e.healthy : e.healthy === null ? seen.healthy : seen.healthy && e.healthy,
        failures: Math.max(seen.failures, e.failures),
        lastProbeAt: Math.max(seen.lastProbeAt ?? 0, e.lastProbeAt ?? 0) || null,
      });
    }
    cache.entries += worker.cache.entries;
    cache.hits += worker.cache.hits;
    cache.misses += worker.cache.misses;
    coldStarts.waiting += worker.coldStarts.waiting;
    coldStarts.wakes += worker.coldStarts.wakes;
    coldStarts.timeouts += worker.coldStarts.timeouts;
  }
  return {
    resolvers: mergeResolverStats(list.map((s) => s.resolvers ?? {})),
    fleet: mergeFleet(list.map((s) => s.fleet ?? null)),
    version: packageVersion(),
    startedAt,
    uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
    workers,
    ready,
    listeners: [...listeners.values()],
    routes: list[0]?.routes ?? [],
    cache,
    endpoints: [...endpoints.values()].sort((a, b) => a.endpoint.localeCompare(b.endpoint)),
    resources: topResources(mergeResources(list.map((s) => s.resources)), TOP_RESOURCES),
    coldStarts,
    pools: [...pools.values()].sort((a, b) => a.listener.localeCompare(b.listener) || a.pool.localeCompare(b.pool)),
    readWriteSplit: mergeSplitStats(list.map((s) => s.readWriteSplit ?? [])),
  };
}

/** Numbers add up across workers; anything else is the first worker's. */
function mergeResolverStats(list: ReadonlyArray<NonNullable<ProxyStats['resolvers']>>): NonNullable<ProxyStats['resolvers']> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const worker of list) {
    for (const [source, stats] of Object.entries(worker)) {
      const into = (out[source] ??= {});
      for (const [field, value] of Object.entries(stats)) {
        const seen = into[field];
        into[field] = typeof value === 'number' && typeof seen === 'number' && field !== 'intervalMs' ? seen + value : (seen ?? value);
      }
    }
  }
  return out;
}

/** Every worker is a member of the fleet: the freshest view wins, Redis up only if every worker sees it up. */
function mergeFleet(list: ReadonlyArray<ProxyStats['fleet'] | null>): ProxyStats['fleet'] | null {
  const present = list.filter((f): f is NonNullable<ProxyStats['fleet']> => f !== null);
  const first = present[0];
  if (first === undefined) return null;
  const instances = new Map<string, FleetInstance>();
  for (const f of present) {
    for (const i of f.instances) {
      const seen = instances.get(i.id);
      if (seen === undefined || i.seenAt > seen.seenAt) instances.set(i.id, { ...i, self: i.self || (seen?.self ?? false) });
      else if (i.self) instances.set(i.id, { ...seen, self: true });
    }
  }
  return { instanceId: first.instanceId, node: first.instanceId, redisUp: present.every((f) => f.redisUp), instances: [...instances.values()].sort((a, b) => a.id.localeCompare(b.id)) };
}
