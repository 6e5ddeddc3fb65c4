/**
 * The process's one Prometheus registry (prom-client). Every module
 * registers its metrics here; the admin server serves it, aggregated across
 * workers (prom-client's AggregatorRegistry: counters and gauges add up,
 * breaker states take the worst worker's).
 *
 * Nothing here is touched per chunk: connection and byte figures are read
 * from the listeners' counters when a scrape collects them (a `StatsProvider`
 * the running proxy registers); only rare events (a resolve, a refused
 * client) update a metric directly.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { EndpointStats, ListenerStats, ResourceStats } from '../admin/source.ts';
import type { ColdStartCounters } from './cold-start.ts';

export const registry = new Registry();

/** What a scrape reads; the running proxy provides it (supervisor/proxy.ts). */
export interface StatsProvider {
  listeners(): readonly ListenerStats[];
  cache(): { entries: number; hits: number; misses: number };
  endpoints(): readonly EndpointStats[];
  coldStarts(): ColdStartCounters;
  resources(): readonly ResourceStats[];
}

let provider: StatsProvider | null = null;

export function setStatsProvider(next: StatsProvider | null): void {
  provider = next;
}

let defaultsOn = false;
/** Process metrics (CPU, memory, event loop lag), once per process. */
export function collectProcessMetrics(): void {
  if (defaultsOn) return;
  defaultsOn = true;
  collectDefaultMetrics({ register: registry, prefix: 'polyproxy_' });
}

type ListenerField = 'open' | 'total' | 'refused' | 'failed' | 'bytesIn' | 'bytesOut';

function perListener(name: string, help: string, field: ListenerField, type: 'counter' | 'gauge'): void {
  const config = {
    name,
    help,
    labelNames: ['listener', 'protocol'] as const,
    registers: [registry],
    collect(this: Counter<'listener' | 'protocol'> | Gauge<'listener' | 'protocol'>) {
      this.reset();
      if (provider === null) return;
      for (const l of provider.listeners()) {
        const labels = { listener: l.name, protocol: l.protocol };
        if (this instanceof Gauge) this.set(labels, l[field]);
        else this.inc(labels, l[field]);
      }
    },
  };
  if (type === 'gauge') new Gauge(config);
  else new Counter(config);
}

perListener('polyproxy_connections_open', 'Client connections open now (in their opening or relayed).', 'open', 'gauge');
perListener('polyproxy_connections_total', 'Client connections accepted.', 'total', 'counter');
perListener('polyproxy_connections_refused_total', 'Client connections refused at accept (listener maxConnections).', 'refused', 'counter');
perListener('polyproxy_connections_failed_total', 'Connections or requests that failed for a reason other than the client (unroutable, forbidden, backend down...).', 'failed', 'counter');
perListener('polyproxy_bytes_in_total', 'Bytes relayed from clients to backends (live sessions included).', 'bytesIn', 'counter');
perListener('polyproxy_bytes_out_total', 'Bytes relayed from backends to clients (live sessions included).', 'bytesOut', 'counter');

export const errorsTotal = new Counter({
  name: 'polyproxy_errors_total',
  help: 'Failures answered to clients, by kind (NOT_FOUND, FORBIDDEN, UNAVAILABLE, BACKEND_UNREACHABLE, PROTOCOL...).',
  labelNames: ['listener', 'protocol', 'kind'] as const,
  registers: [registry],
});

export const fdExhaustedTotal = new Counter({
  name: 'polyproxy_fd_exhausted_total',
  help: 'Times a listener ran out of file descriptors (EMFILE/ENFILE on accept or on a backend dial) and paused accepting.',
  labelNames: ['listener'] as const,
  registers: [registry],
});

export const resolveDuration = new Histogram({
  name: 'polyproxy_resolve_duration_seconds',
  help: 'Resolver lookups on a cache miss, by the source that answered and the outcome.',
  labelNames: ['source', 'outcome'] as const,
  buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
  registers: [registry],
});

export const resolverHookErrors = new Counter({
  name: 'polyproxy_resolver_hook_errors_total',
  help: 'Resolver calls that failed in tenant code (threw, rejected, returned a hostile value or an invalid route), by hook.',
  labelNames: ['hook'] as const,
  registers: [registry],
});

function cacheCounter(name: string, help: string, field: 'hits' | 'misses'): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect(this: Counter) {
      this.reset();
      if (provider !== null) this.inc(provider.cache()[field]);
    },
  });
}
cacheCounter('polyproxy_route_cache_hits_total', 'Routing lookups answered from the cache.', 'hits');
cacheCounter('polyproxy_route_cache_misses_total', 'Routing lookups that asked the resolvers.', 'misses');

new Gauge({
  name: 'polyproxy_route_cache_entries',
  help: 'Routes in the cache now.',
  registers: [registry],
  collect(this: Gauge) {
    this.set(provider?.cache().entries ?? 0);
  },
});

const BREAKER_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const;

new Gauge({
  name: 'polyproxy_endpoint_breaker_state',
  help: 'Circuit breaker per endpoint: 0 closed, 1 half-open, 2 open (across workers: the worst).',
  labelNames: ['endpoint'] as const,
  aggregator: 'max',
  registers: [registry],
  collect(this: Gauge<'endpoint'>) {
    this.reset();
    for (const e of provider?.endpoints() ?? []) this.set({ endpoint: e.endpoint }, BREAKER_VALUE[e.state]);
  },
});

new Gauge({
  name: 'polyproxy_endpoint_up',
  help: 'Result of the last active probe per endpoint: 1 healthy, 0 failing (across workers: the worst).',
  labelNames: ['endpoint'] as const,
  aggregator: 'min',
  registers: [registry],
  collect(this: Gauge<'endpoint'>) {
    this.reset();
    for (const e of provider?.endpoints() ?? []) if (e.healthy !== null) this.set({ endpoint: e.endpoint }, e.healthy ? 1 : 0);
  },
});

function coldStartMetric(name: string, help: string, field: keyof ColdStartCounters, type: 'counter' | 'gauge'): void {
  const config = {
    name,
    help,
    registers: [registry],
    collect(this: Counter | Gauge) {
      this.reset();
      const value = provider?.coldStarts()[field] ?? 0;
      if (this instanceof Gauge) this.set(value);
      else this.inc(value);
    },
  };
  if (type === 'gauge') new Gauge(config);
  else new Counter(config);
}
coldStartMetric('polyproxy_cold_start_wakes_total', 'wake() calls made for sleeping backends (one per resource per wake).', 'wakes', 'counter');
coldStartMetric('polyproxy_cold_start_waits_total', 'Connections that waited for a backend to wake.', 'waits', 'counter');
coldStartMetric('polyproxy_cold_start_timeouts_total', 'Connections that gave up waiting (deadline or full queue).', 'timeouts', 'counter');
coldStartMetric('polyproxy_cold_start_waiting', 'Connections waiting for a backend to wake now.', 'waiting', 'gauge');

function perResource(name: string, help: string, type: 'counter' | 'gauge', read: (r: ResourceStats) => Array<[Record<string, string>, number]>): void {
  const config = {
    name,
    help,
    labelNames: ['resource', 'direction'] as const,
    registers: [registry],
    collect(this: Counter<'resource' | 'direction'> | Gauge<'resource' | 'direction'>) {
      this.reset();
      for (const r of provider?.resources() ?? []) {
        for (const [labels, value] of read(r)) {
          if (this instanceof Gauge) this.set({ resource: r.resourceId, ...labels }, value);
          else this.inc({ resource: r.resourceId, ...labels }, value);
        }
      }
    },
  };
  if (type === 'gauge') new Gauge(config);
  else new Counter(config);
}
perResource('polyproxy_resource_connections_open', 'Open sessions per resource (bounded: see metrics.maxResources; the rest count as "_other").', 'gauge', (r) => [[{}, r.open]]);
perResource('polyproxy_resource_connections_total', 'Sessions per resource (bounded, the rest as "_other").', 'counter', (r) => [[{}, r.total]]);
perResource('polyproxy_resource_limited_total', 'Sessions and requests per resource refused by a tenant limit (limits.*; bounded, the rest as "_other").', 'counter', (r) => [[{}, r.limited ?? 0]]);
perResource('polyproxy_resource_bytes_total', 'Bytes per resource and direction (in: client to backend).', 'counter', (r) => [
  [{ direction: 'in' }, r.bytesIn],
  [{ direction: 'out' }, r.bytesOut],
]);
