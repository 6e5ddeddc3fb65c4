/**
 * Per-pool figures, like PgBouncer's SHOW POOLS / SHOW STATS: clients
 * active (holding a server connection) and waiting, servers active, idle
 * and logging in, connections opened and closed, transactions and queries
 * run, waits (a histogram). The session and the pool only bump integers
 * here; prom-client reads them on a scrape and /api/stats on a request.
 *
 * Label cardinality is bounded: the first MAX_POOL_LABELS pools of a
 * process get their own `pool` label (`database/user@endpoint`); later ones
 * share "_other" (their figures add up there).
 */
import { Counter, Gauge } from 'prom-client';
import type { Metric } from 'prom-client';
import type { PoolStatsRow } from '../../../admin/source.ts';
import { registry } from '../../../core/metrics.ts';

export const MAX_POOL_LABELS = 100;
const OTHER = '_other';

export class PoolStats {
  readonly listener: string;
  readonly name: string;
  readonly label: string;
  readonly mode: string;
  /** Client sessions on this pool now. */
  clients = 0;
  /** Of them, holding a server connection now. */
  clientsActive = 0;
  serversOpened = 0;
  serversClosed = 0;
  loginFailures = 0;
  transactions = 0;
  queries = 0;
  queueTimeouts = 0;
  waitSecondsTotal = 0;
  /** Waits observed, and per WAIT_BUCKETS bound the waits at or below it and above the previous one (the last slot: above every bound). */
  waitCount = 0;
  readonly waitBuckets = new Float64Array(WAIT_BUCKETS.length + 1);
  /** Filled by the pool (server-pool.ts) for reads: live counts. */
  read: () => { waiting: number; active: number; idle: number; opening: number } = () => ({ waiting: 0, active: 0, idle: 0, opening: 0 });
  retired = false;

  constructor(listener: string, name: string, label: string, mode: string) {
    this.listener = listener;
    this.name = name;
    this.label = label;
    this.mode = mode;
  }

  /** The pool is gone: its figures stay counted (counters never go down) but it is no longer listed. */
  retire(): void {
    this.retired = true;
  }

  row(): PoolStatsRow {
    const live = this.read();
    return {
      listener: this.listener,
      pool: this.name,
      mode: this.mode,
      clientsActive: this.clientsActive,
      clientsWaiting: live.waiting,
      clients: this.clients,
      serversActive: live.active,
      serversIdle: live.idle,
      serversLoggingIn: live.opening,
      serversOpened: this.serversOpened,
      transactions: this.transactions,
      queries: this.queries,
      queueTimeouts: this.queueTimeouts,
      waitSecondsTotal: this.waitSecondsTotal,
    };
  }
}

/** Every pool of this process (retired ones until their counters were read once more). */
const live = new Set<PoolStats>();
/** Labels given out, per listener. */
const labelled = new Set<string>();

/** Figures for a new pool of `listener`. */
export function newPoolStats(listener: string, pool: { database: string; user: string; endpoint: string }, mode: string): PoolStats {
  ensureMetrics();
  const name = `${pool.database}/${pool.user}@${pool.endpoint}`;
  let label = name;
  if (!labelled.has(`${listener}\0${name}`)) {
    if (labelled.size >= MAX_POOL_LABELS) label = OTHER;
    else labelled.add(`${listener}\0${name}`);
  }
  const stats = new PoolStats(listener, name, label, mode);
  live.add(stats);
  return stats;
}

/** Rows for /api/stats: pools still in use, at most MAX_POOL_LABELS (the rest summed as "_other", as the metrics). */
export function poolRows(): PoolStatsRow[] {
  const out = new Map<string, PoolStatsRow>();
  for (const s of live) {
    if (s.retired) continue;
    const row = { ...s.row(), pool: s.label };
    const key = `${s.listener}\0${s.label}`;
    const seen = out.get(key);
    out.set(key, seen === undefined ? row : addRows(seen, row));
  }
  return [...out.values()];
}

/** Two rows of one pool (two workers, or two pools under "_other") added up. */
export function addRows(a: PoolStatsRow, b: PoolStatsRow): PoolStatsRow {
  return {
    listener: a.listener,
    pool: a.pool,
    mode: a.mode,
    clientsActive: a.clientsActive + b.clientsActive,
    clientsWaiting: a.clientsWaiting + b.clientsWaiting,
    clients: a.clients + b.clients,
    serversActive: a.serversActive + b.serversActive,
    serversIdle: a.serversIdle + b.serversIdle,
    serversLoggingIn: a.serversLoggingIn + b.serversLoggingIn,
    serversOpened: a.serversOpened + b.serversOpened,
    transactions: a.transactions + b.transactions,
    queries: a.queries + b.queries,
    queueTimeouts: a.queueTimeouts + b.queueTimeouts,
    waitSecondsTotal: a.waitSecondsTotal + b.waitSecondsTotal,
  };
}

/** Forgets every pool (tests, and a listener's shutdown). */
export function forgetPools(listener: string): void {
  for (const s of live) if (s.listener === listener) live.delete(s);
}

/** Upper bounds (seconds) of the wait histogram's buckets. */
const WAIT_BUCKETS = [0, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5];

/**
 * A client waited `ms` for a server connection (0: one was idle). Counted
 * in the pool's own figures, once per transaction: a prom-client
 * Histogram.observe hashes its labels on every call, so the histogram is
 * built from these counts when a scrape reads it (waitMetric).
 */
export function observeWait(stats: PoolStats, ms: number): void {
  const seconds = ms / 1000;
  stats.waitSecondsTotal += seconds;
  stats.waitCount++;
  let i = 0;
  while (i < WAIT_BUCKETS.length && seconds > (WAIT_BUCKETS[i] as number)) i++;
  (stats.waitBuckets[i] as number)++;
}

/** polyproxy_pg_pool_wait_seconds as prom-client's registry reads a histogram (get() → values), from the pools' counts. */
const waitMetric = {
  name: 'polyproxy_pg_pool_wait_seconds',
  help: 'Time a client waited for a server connection of a PostgreSQL pool (0 when one was idle).',
  type: 'histogram',
  aggregator: 'sum',
  get() {
    const sums = new Map<string, { listener: string; pool: string; buckets: Float64Array; count: number; sum: number }>();
    for (const s of live) {
      const key = `${s.listener}\0${s.label}`;
      let acc = sums.get(key);
      if (acc === undefined) sums.set(key, (acc = { listener: s.listener, pool: s.label, buckets: new Float64Array(WAIT_BUCKETS.length + 1), count: 0, sum: 0 }));
      for (let i = 0; i < acc.buckets.length; i++) (acc.buckets[i] as number) += s.waitBuckets[i] as number;
      acc.count += s.waitCount;
      acc.sum += s.waitSecondsTotal;
    }
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    for (const { listener, pool, buckets, count, sum } of sums.values()) {
      let cumulative = 0;
      for (let i = 0; i < WAIT_BUCKETS.length; i++) {
        cumulative += buckets[i] as number;
        values.push({ labels: { le: WAIT_BUCKETS[i] as number, listener, pool }, value: cumulative, metricName: 'polyproxy_pg_pool_wait_seconds_bucket' });
      }
      values.push({ labels: { le: '+Inf', listener, pool }, value: count, metricName: 'polyproxy_pg_pool_wait_seconds_bucket' });
      values.push({ labels: { listener, pool }, value: sum, metricName: 'polyproxy_pg_pool_wait_seconds_sum' });
      values.push({ labels: { listener, pool }, value: count, metricName: 'polyproxy_pg_pool_wait_seconds_count' });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  },
  reset() {},
};

type Field = 'clientsActive' | 'clientsWaiting' | 'serversActive' | 'serversIdle' | 'serversLoggingIn' | 'serversOpened' | 'transactions' | 'queries' | 'queueTimeouts';

let registered = false;
function ensureMetrics(): void {
  if (registered) return;
  registered = true;
  registry.registerMetric(waitMetric as unknown as Metric);
  const metric = (name: string, help: string, field: Field, type: 'gauge' | 'counter'): void => {
    const config = {
      name,
      help,
      labelNames: ['listener', 'pool'] as const,
      registers: [registry],
      collect(this: Gauge<'listener' | 'pool'> | Counter<'listener' | 'pool'>) {
        this.reset();
        const sums = new Map<string, { listener: string; pool: string; value: number }>();
        for (const s of live) {
          const row = s.row();
          const key = `${s.listener}\0${s.label}`;
          const seen = sums.get(key);
          if (seen === undefined) sums.set(key, { listener: s.listener, pool: s.label, value: row[field] });
          else seen.value += row[field];
        }
        for (const { listener, pool, value } of sums.values()) {
          if (this instanceof Gauge) this.set({ listener, pool }, value);
          else this.inc({ listener, pool }, value);
        }
      },
    };
    if (type === 'gauge') new Gauge(config);
    else new Counter(config);
  };
  metric('polyproxy_pg_pool_clients_active', 'Client sessions holding a server connection now, per PostgreSQL pool.', 'clientsActive', 'gauge');
  metric('polyproxy_pg_pool_clients_waiting', 'Client sessions waiting for a server connection now, per PostgreSQL pool.', 'clientsWaiting', 'gauge');
  metric('polyproxy_pg_pool_servers_active', 'Server connections serving a client now, per PostgreSQL pool.', 'serversActive', 'gauge');
  metric('polyproxy_pg_pool_servers_idle', 'Idle server connections, per PostgreSQL pool.', 'serversIdle', 'gauge');
  metric('polyproxy_pg_pool_servers_login', 'Server connections logging in now, per PostgreSQL pool.', 'serversLoggingIn', 'gauge');
  metric('polyproxy_pg_pool_servers_opened_total', 'Server connections opened (used) by a PostgreSQL pool.', 'serversOpened', 'counter');
  metric('polyproxy_pg_pool_transactions_total', 'Transactions run through a PostgreSQL pool (ReadyForQuery back to idle).', 'transactions', 'counter');
  metric('polyproxy_pg_pool_queries_total', 'Queries run through a PostgreSQL pool (simple Query and extended-protocol Execute messages).', 'queries', 'counter');
  metric('polyproxy_pg_pool_queue_timeouts_total', 'Clients refused with 53300 after waiting queueTimeoutMs for a server connection.', 'queueTimeouts', 'counter');
}
