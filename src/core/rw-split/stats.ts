/**
 * The read/write split's figures for /api/stats and the dashboard: per
 * listener, the statements by target and reason, the pinned sessions, and
 * each route's replicas (up, lag, sessions reading). Each worker reports its
 * own; the supervisor merges them (counts add up; a replica is up only if
 * every worker sees it up, and its lag is the worst seen).
 */
import { splitCounts } from './metrics.ts';
import type { SplitReason, SplitTarget } from './metrics.ts';
import { replicaSetStats } from './registry.ts';

export interface SplitReplicaRow {
  readonly endpoint: string;
  readonly up: boolean;
  /** Lag at the last probe (ms); null when unknown or down. */
  readonly lagMs: number | null;
  /** Sessions reading from it now. */
  readonly sessions: number;
}

export interface SplitStatsRow {
  readonly listener: string;
  readonly pinnedSessions: number;
  readonly statements: readonly { readonly target: SplitTarget; readonly reason: SplitReason; readonly count: number }[];
  readonly routes: readonly { readonly route: string; readonly replicas: readonly SplitReplicaRow[] }[];
}

/** This process's rows, one per listener that split (or has replica sets), by listener name. */
export function splitStats(): SplitStatsRow[] {
  const rows = new Map<string, { listener: string; pinnedSessions: number; statements: SplitStatsRow['statements']; routes: SplitStatsRow['routes'][number][] }>();
  for (const c of splitCounts()) rows.set(c.listener, { listener: c.listener, pinnedSessions: c.pinnedSessions, statements: c.statements, routes: [] });
  for (const set of replicaSetStats()) {
    let row = rows.get(set.listener);
    if (row === undefined) rows.set(set.listener, (row = { listener: set.listener, pinnedSessions: 0, statements: [], routes: [] }));
    row.routes.push({ route: set.route, replicas: set.replicas.map((r) => ({ endpoint: r.endpoint, up: r.up, lagMs: r.lagMs ?? null, sessions: r.sessions })) });
  }
  return [...rows.values()].sort((a, b) => a.listener.localeCompare(b.listener));
}

/** Merges the workers' rows. */
export function mergeSplitStats(list: readonly (readonly SplitStatsRow[])[]): SplitStatsRow[] {
  const rows = new Map<string, { pinned: number; statements: Map<string, { target: SplitTarget; reason: SplitReason; count: number }>; routes: Map<string, Map<string, SplitReplicaRow>> }>();
  for (const worker of list) {
    for (const row of worker) {
      let into = rows.get(row.listener);
      if (into === undefined) rows.set(row.listener, (into = { pinned: 0, statements: new Map(), routes: new Map() }));
      into.pinned += row.pinnedSessions;
      for (const s of row.statements) {
        const key = `${s.target}\0${s.reason}`;
        const seen = into.statements.get(key);
        into.statements.set(key, { target: s.target, reason: s.reason, count: (seen?.count ?? 0) + s.count });
      }
      for (const route of row.routes) {
        let replicas = into.routes.get(route.route);
        if (replicas === undefined) into.routes.set(route.route, (replicas = new Map()));
        for (const r of route.replicas) {
          const seen = replicas.get(r.endpoint);
          replicas.set(
            r.endpoint,
            seen === undefined
              ? r
              : {
                  endpoint: r.endpoint,
                  up: seen.up && r.up,
                  lagMs: seen.lagMs === null || r.lagMs === null ? (seen.lagMs ?? r.lagMs) : Math.max(seen.lagMs, r.lagMs),
                  sessions: seen.sessions + r.sessions,
                },
          );
        }
      }
    }
  }
  return [...rows]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([listener, r]) => ({
      listener,
      pinnedSessions: r.pinned,
      statements: [...r.statements.values()],
      routes: [...r.routes].map(([route, replicas]) => ({ route, replicas: [...replicas.values()] })),
    }));
}
