/**
 * ws-bridge figures (DESIGN.md §3: connections_opened, connections_closed,
 * requests_started, requests_failed, requests_succeeded; plus open
 * connections, in-flight requests and messages lost to API failures).
 * The bridge only bumps integers in a `BridgeStats`; prom-client reads
 * them when the shared registry is scraped, and `formatMetrics` writes the
 * same series for the bridge's own `metricsPath` (only this listener's,
 * summed over the workers).
 */
import { Counter, Gauge } from 'prom-client';
import { registry } from '../../core/metrics.ts';

export class BridgeStats {
  connectionsOpened = 0;
  connectionsClosed = 0;
  /** Upgrades refused (API said no, API failed, bad handshake, limits). */
  upgradesRefused = 0;
  requestsStarted = 0;
  requestsFailed = 0;
  requestsSucceeded = 0;
  /** Client messages lost: their POST failed (also in requestsFailed), whatever onApiFailure told the client. */
  messagesFailed = 0;
  pushesDelivered = 0;
  pushesNotFound = 0;
  connectionsOpen = 0;
  requestsInFlight = 0;
}

export type StatsSnapshot = { readonly [K in keyof BridgeStats]: number };

interface MetricSpec {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  readonly field: keyof BridgeStats;
}

export const METRICS: readonly MetricSpec[] = [
  { name: 'polyproxy_wsbridge_connections_opened_total', help: 'WebSocket connections accepted by the bridge.', type: 'counter', field: 'connectionsOpened' },
  { name: 'polyproxy_wsbridge_connections_closed_total', help: 'WebSocket connections closed (by either side).', type: 'counter', field: 'connectionsClosed' },
  { name: 'polyproxy_wsbridge_upgrades_refused_total', help: 'WebSocket upgrades refused (API refusal or failure, bad handshake, limits).', type: 'counter', field: 'upgradesRefused' },
  { name: 'polyproxy_wsbridge_requests_started_total', help: 'Requests sent to the API (GET on upgrade, POST per message, DELETE on close).', type: 'counter', field: 'requestsStarted' },
  { name: 'polyproxy_wsbridge_requests_failed_total', help: 'API requests without a usable answer: unreachable, timed out, 5xx, or too large.', type: 'counter', field: 'requestsFailed' },
  { name: 'polyproxy_wsbridge_requests_succeeded_total', help: 'API requests answered with a status below 500.', type: 'counter', field: 'requestsSucceeded' },
  { name: 'polyproxy_wsbridge_messages_failed_total', help: 'Client messages lost because their POST to the API failed (unreachable, timed out, 5xx, or too large).', type: 'counter', field: 'messagesFailed' },
  { name: 'polyproxy_wsbridge_pushes_delivered_total', help: 'API pushes (POST /<ClientId>) delivered to a connected client.', type: 'counter', field: 'pushesDelivered' },
  { name: 'polyproxy_wsbridge_pushes_not_found_total', help: 'API pushes answered 404: the client is connected to no worker.', type: 'counter', field: 'pushesNotFound' },
  { name: 'polyproxy_wsbridge_connections_open', help: 'WebSocket connections open now.', type: 'gauge', field: 'connectionsOpen' },
  { name: 'polyproxy_wsbridge_requests_in_flight', help: 'API requests in flight now.', type: 'gauge', field: 'requestsInFlight' },
];

/** Every live bridge of this process, by listener name (read on scrape). */
const live = new Map<string, BridgeStats>();
let registered = false;

/** Adds a listener's stats to the process registry (the metrics are created once per process). */
export function trackStats(listener: string, stats: BridgeStats): void {
  live.set(listener, stats);
  if (registered) return;
  registered = true;
  for (const spec of METRICS) {
    const field = spec.field;
    if (spec.type === 'counter') {
      new Counter({
        name: spec.name,
        help: spec.help,
        labelNames: ['listener'],
        registers: [registry],
        collect(this: Counter<'listener'>) {
          this.reset();
          for (const [name, s] of live) this.inc({ listener: name }, s[field]);
        },
      });
    } else {
      new Gauge({
        name: spec.name,
        help: spec.help,
        labelNames: ['listener'],
        registers: [registry],
        collect(this: Gauge<'listener'>) {
          this.reset();
          for (const [name, s] of live) this.set({ listener: name }, s[field]);
        },
      });
    }
  }
}

export function untrackStats(listener: string, stats: BridgeStats): void {
  if (live.get(listener) === stats) live.delete(listener);
}

export function snapshot(stats: BridgeStats): StatsSnapshot {
  return { ...stats };
}

/** Field-wise sum (figures from several workers). */
export function sumSnapshots(list: readonly StatsSnapshot[]): StatsSnapshot {
  const total = new BridgeStats();
  for (const s of list) for (const spec of METRICS) total[spec.field] += typeof s[spec.field] === 'number' ? s[spec.field] : 0;
  return snapshot(total);
}

/** Prometheus text exposition (version 0.0.4) of one listener's series. */
export function formatMetrics(listener: string, stats: StatsSnapshot): string {
  const label = `{listener="${listener.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"}`;
  let out = '';
  for (const spec of METRICS) out += `# HELP ${spec.name} ${spec.help}\n# TYPE ${spec.name} ${spec.type}\n${spec.name}${label} ${stats[spec.field]}\n`;
  return out;
}
