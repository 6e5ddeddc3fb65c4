/**
 * The split's Prometheus metrics, and the same figures kept as plain
 * numbers for /api/stats. `countStatement` runs once per routed statement
 * (not per chunk): it finds a cached labelled child, no label object built.
 */
import { Counter, Gauge } from 'prom-client';
import { registry } from '../metrics.ts';

export type SplitTarget = 'primary' | 'replica';
/**
 * Why a statement went where it went: read (a read, to a replica),
 * write, transaction (inside one, or a transaction's opening statement),
 * pinned (session state pins the session to the primary),
 * read-after-write, no-replica (a read, no replica healthy and caught up),
 * fallback (a replica failed; rerun or sent to the primary).
 */
export type SplitReason = 'read' | 'write' | 'transaction' | 'pinned' | 'read-after-write' | 'no-replica' | 'fallback';

const statementsTotal = new Counter({
  name: 'polyproxy_rw_statements_total',
  help: 'Statements routed by the read/write split, by listener, target (primary, replica) and reason.',
  labelNames: ['listener', 'target', 'reason'] as const,
  registers: [registry],
});

const pinnedSessions = new Gauge({
  name: 'polyproxy_rw_pinned_sessions',
  help: 'Client sessions pinned to the primary for the rest of their session (temporary tables, advisory locks, LISTEN, session SET, ...).',
  labelNames: ['listener'] as const,
  registers: [registry],
});

/** Each worker probes on its own: the fleet's answer is the worst worker's. */
export const replicaLagMs = new Gauge({
  name: 'polyproxy_rw_replica_lag_ms',
  help: 'A replica\'s replay lag at the last probe, in ms (-1: unknown or down).',
  labelNames: ['listener', 'endpoint'] as const,
  registers: [registry],
  aggregator: 'max',
});

export const replicaUp = new Gauge({
  name: 'polyproxy_rw_replica_up',
  help: 'Whether a replica answered its last lag probe and no session saw it fail since (1) or not (0).',
  labelNames: ['listener', 'endpoint'] as const,
  registers: [registry],
  aggregator: 'min',
});

interface StatementCount {
  readonly listener: string;
  readonly target: SplitTarget;
  readonly reason: SplitReason;
  count: number;
  readonly child: { inc(): void };
}

const counts = new Map<string, StatementCount>();
const pinned = new Map<string, number>();

export function countStatement(listener: string, target: SplitTarget, reason: SplitReason): void {
  const key = `${listener}\0${target}\0${reason}`;
  let entry = counts.get(key);
  if (entry === undefined) {
    entry = { listener, target, reason, count: 0, child: statementsTotal.labels(listener, target, reason) };
    counts.set(key, entry);
  }
  entry.count++;
  entry.child.inc();
}

/** A session became pinned to the primary (`delta` 1) or a pinned session ended (-1). */
export function countPinnedSession(listener: string, delta: 1 | -1): void {
  const next = (pinned.get(listener) ?? 0) + delta;
  pinned.set(listener, next);
  pinnedSessions.set({ listener }, next);
}

export interface SplitListenerCounts {
  readonly listener: string;
  readonly pinnedSessions: number;
  readonly statements: readonly { target: SplitTarget; reason: SplitReason; count: number }[];
}

/** This process's statement and pinned-session counts, per listener (for /api/stats). */
export function splitCounts(): SplitListenerCounts[] {
  const byListener = new Map<string, { target: SplitTarget; reason: SplitReason; count: number }[]>();
  for (const entry of counts.values()) {
    let list = byListener.get(entry.listener);
    if (list === undefined) byListener.set(entry.listener, (list = []));
    list.push({ target: entry.target, reason: entry.reason, count: entry.count });
  }
  for (const listener of pinned.keys()) if (!byListener.has(listener)) byListener.set(listener, []);
  return [...byListener].map(([listener, statements]) => ({ listener, pinnedSessions: pinned.get(listener) ?? 0, statements }));
}
