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
import { Counter, Gauge, Histogram } from 'prom-client';
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
  /** Filled by the pool (server-pool.ts) for reads: live counts. */
  read: () => { waiting: number; active: number; idle: number; opening: number } = () => ({ waiting: 0, active: 0, idle: 0, opening: 0 });
  retired = false;
  /** The wait histogram's child for this pool's labels (label lookup done once, not per observation). */
  waits: { observe(value: number): void } | null = null;

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
  stats.waits = waitHistogram?.labels(listener, label) ?? null;
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

let waitHistogram: Histogram<'listener' | 'pool'> | null = null;

/** A client waited `ms` for a server connection (0: one was idle). */
export function observeWait(stats: PoolStats, ms: number): void {
  stats.waitSecondsTotal += ms / 1000;
  stats.waits?.observe(ms / 1000);
}

type Field = 'clientsActive' | 'clientsWaiting' | 'serversActive' | 'serversIdle' | 'serversLoggingIn' | 'serversOpened' | 'transactions' | 'queries' | 'queueTimeouts';

let registered = false;
function ensureMetrics(): void {
  if (registered) return;
  registered = true;
  waitHistogram = new Histogram({
    name: 'polyproxy_pg_pool_wait_seconds',
    help: 'Time a client waited for a server connection of a PostgreSQL pool (0 when one was idle).',
    labelNames: ['listener', 'pool'] as const,
    buckets: [0, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [registry],
  });
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
