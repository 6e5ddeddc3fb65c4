/**
 * What the admin server serves, whoever computes it: the proxy itself when
 * it runs one process, the supervisor (aggregating every worker) otherwise.
 */
import type { SplitStatsRow } from '../core/rw-split/stats.ts';

export interface ListenerStats {
  readonly name: string;
  readonly protocol: string;
  readonly host: string;
  readonly port: number;
  /** Connections open now (in their opening or relayed). */
  readonly open: number;
  readonly total: number;
  /** Refused at accept (listener connection limit). */
  readonly refused: number;
  /** Ended with an error that was not the client's fault (unroutable, backend down...). */
  readonly failed: number;
  /** Client → backend bytes of finished and live sessions. */
  readonly bytesIn: number;
  /** Backend → client bytes. */
  readonly bytesOut: number;
}

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface EndpointStats {
  /** `host:port`, `[v6]:port` or `unix:/path`. */
  readonly endpoint: string;
  readonly state: BreakerState;
  /** Result of the last active probe; null before the first one or when not probed. */
  readonly healthy: boolean | null;
  /** Consecutive failures (probes and connects) since the last success. */
  readonly failures: number;
  /** Milliseconds since the epoch of the last probe, or null. */
  readonly lastProbeAt: number | null;
}

export interface ResourceStats {
  readonly resourceId: string;
  readonly open: number;
  readonly total: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Sessions and requests refused by a tenant limit (limits.*). */
  readonly limited?: number;
}

/** One PostgreSQL pool (src/protocols/postgres/pool/stats.ts), summed across workers. */
export interface PoolStatsRow {
  readonly listener: string;
  /** `database/user@endpoint`. */
  readonly pool: string;
  readonly mode: string;
  readonly clientsActive: number;
  readonly clientsWaiting: number;
  readonly clients: number;
  readonly serversActive: number;
  readonly serversIdle: number;
  readonly serversLoggingIn: number;
  readonly serversOpened: number;
  readonly transactions: number;
  readonly queries: number;
  readonly queueTimeouts: number;
  readonly waitSecondsTotal: number;
}

export interface ProxyStats {
  readonly version: string;
  readonly startedAt: number;
  readonly uptimeSeconds: number;
  readonly workers: number;
  readonly ready: boolean;
  readonly listeners: readonly ListenerStats[];
  /** Static routes (resource id patterns) from the config. */
  readonly routes: readonly string[];
  readonly cache: { readonly entries: number; readonly hits: number; readonly misses: number };
  readonly endpoints: readonly EndpointStats[];
  /** Top resources by open connections, then bytes (bounded list). */
  readonly resources: readonly ResourceStats[];
  readonly coldStarts: { readonly waiting: number; readonly wakes: number; readonly timeouts: number };
  /** PostgreSQL pools (listeners with `pool:`), bounded like the pool metrics' labels. */
  readonly pools: readonly PoolStatsRow[];
  /** The read/write split (listeners with readWriteSplit): statements by target and reason, pinned sessions, replicas' state. */
  readonly readWriteSplit?: readonly SplitStatsRow[];
  /** Each resolver source's stats() (module, redis, http), and the track() settings and call count. */
  readonly resolvers?: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** The fleet (`cluster`): this instance, the Redis state, every instance's last heartbeat; null without `cluster`. */
  readonly fleet?: FleetStats | null;
}

export interface FleetInstance {
  readonly id: string;
  readonly instanceId: string;
  readonly address: string;
  readonly version: string;
  readonly startedAt: number;
  readonly connections: number;
  readonly seenAt: number;
  /** No heartbeat for 3 intervals. */
  readonly stale: boolean;
  readonly self: boolean;
}

export interface FleetStats {
  readonly instanceId: string;
  readonly node: string;
  readonly redisUp: boolean;
  readonly instances: readonly FleetInstance[];
}

export interface AdminSource {
  /** Prometheus text exposition of every worker's metrics, aggregated. */
  metrics(): Promise<string>;
  stats(): Promise<ProxyStats>;
  /** Drops the resource id from every worker's routing cache; resolves with the entries dropped. */
  purge(resourceId: string): Promise<number>;
  /** True once every listener is bound (and not draining). */
  ready(): boolean;
}
