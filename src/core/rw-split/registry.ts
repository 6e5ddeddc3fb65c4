/**
 * The process's replica sets: one per (listener, route, replica list), made
 * on first use by the listener's protocol (which knows how to probe), and
 * shared by every session of that listener and route. A route whose
 * replica list changes (a reload, a resolver's new answer) gets a new set;
 * the old one is closed.
 */
import type { ReplicaSet, ReplicaStats } from './replica-set.ts';

export interface ReplicaSetKey {
  readonly listener: string;
  /** The route's id (tenant / resource id). */
  readonly route: string;
  readonly replicas: readonly string[];
}

interface Entry {
  readonly replicas: string;
  readonly set: ReplicaSet;
}

const sets = new Map<string, Entry>();

function routeKey(listener: string, route: string): string {
  return `${listener}\0${route}`;
}

/** The set for this key, made by `make` when there is none (or the route's replicas changed). */
export function replicaSetFor(key: ReplicaSetKey, make: () => ReplicaSet): ReplicaSet {
  const k = routeKey(key.listener, key.route);
  const replicas = key.replicas.join(',');
  const entry = sets.get(k);
  if (entry !== undefined) {
    if (entry.replicas === replicas) return entry.set;
    entry.set.close();
  }
  const set = make();
  sets.set(k, { replicas, set });
  return set;
}

/** Closes (stops probing) every set of a listener that stops. */
export function closeReplicaSets(listener: string): void {
  for (const [k, entry] of sets) {
    if (entry.set.listener !== listener) continue;
    entry.set.close();
    sets.delete(k);
  }
}

export interface RouteReplicaStats {
  readonly listener: string;
  readonly route: string;
  readonly replicas: readonly ReplicaStats[];
}

/** Every set's replicas, for /api/stats and the dashboard. */
export function replicaSetStats(): RouteReplicaStats[] {
  return [...sets.values()].map(({ set }) => ({ listener: set.listener, route: set.route, replicas: set.stats() }));
}
