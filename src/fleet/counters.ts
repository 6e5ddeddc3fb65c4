/**
 * Shared counters for per-tenant limits across the fleet (the tenant-limits
 * feature builds on this; nothing else needs to know Redis):
 *
 * ```ts
 * const counters = sharedCounters();              // fleet-wide when cluster.redis is set, else local
 * const { allowed } = await counters.acquire('shop', 50);  // one more connection, if the fleet has < 50
 * ...                                             // when that connection ends:
 * void counters.release('shop');
 * if (!(await counters.take('shop:conn/s', 20, 20))) refuse(); // token bucket: 20/s, burst 20
 * ```
 *
 * Each call is one round trip (a Lua script, atomic in Redis). Connection
 * counts are kept per node (`<prefix>conn:<tenant>` hash: node → count) so
 * a dead instance's connections can be dropped (`reapNode`, through the
 * node's `<prefix>conntenants:<node>` set, written beside the count). Every
 * script touches one key only, so each runs on whichever Redis Cluster node
 * holds that key's slot (no cross-slot script, and tenants spread over the
 * cluster's masters instead of one hash tag's). Every
 * heartbeat writes this node's true local counts back (`sync`), which
 * repairs a release that could not reach Redis. When Redis is down or slow,
 * every call answers from this process's own counts and buckets — the limit
 * then holds per instance, not per fleet — and counts
 * `polyproxy_fleet_fallbacks_total{feature="counters"}`.
 */
import type { LimitStore } from '../core/limits/store.ts';
import type { Fleet } from './fleet.ts';
import { fleetFallbacks } from './metrics.ts';

export interface Acquired {
  /** False: the tenant already has `max` connections (nothing was counted). */
  readonly allowed: boolean;
  /** The count after this call (fleet-wide, or this process's own when `shared` is false). */
  readonly count: number;
  /** Whether the answer came from the fleet (Redis) or from local state. */
  readonly shared: boolean;
}

export interface SharedCounters {
  /** Counts one more connection for `tenant` unless it already has `max` (0 or Infinity: no limit). */
  acquire(tenant: string, max: number): Promise<Acquired>;
  /** The connection counted by a successful `acquire` ended. Counted locally at once; the promise (never rejected) settles when Redis has it too — callers need not wait. */
  release(tenant: string): Promise<void>;
  /** Takes `n` tokens from the bucket `key` (refilled at `ratePerSecond`, holding at most `burst`); false when not enough. */
  take(key: string, ratePerSecond: number, burst: number, n?: number): Promise<boolean>;
  /** This process's own open count for `tenant`. */
  local(tenant: string): number;
}

/** KEYS: tenant hash. ARGV: node, max (0 = none). Returns {allowed, count}. */
const ACQUIRE = `
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(v) end
local max = tonumber(ARGV[2])
if max > 0 and total >= max then return {0, total} end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return {1, total + 1}`;

const RELEASE = `
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n`;

/** KEYS: bucket. ARGV: rate/s, burst, n. Server time, so instances' clocks do not matter. */
const TAKE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local ok = 0
if tokens >= n then tokens = tokens - n; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return ok`;

interface Bucket {
  tokens: number;
  at: number;
}

/** Local state: the whole answer without a fleet, the fallback with one. */
class LocalState {
  readonly counts = new Map<string, number>();
  readonly buckets = new Map<string, Bucket>();

  acquire(tenant: string, max: number): Acquired {
    const count = this.counts.get(tenant) ?? 0;
    if (max > 0 && Number.isFinite(max) && count >= max) return { allowed: false, count, shared: false };
    this.counts.set(tenant, count + 1);
    return { allowed: true, count: count + 1, shared: false };
  }

  release(tenant: string): void {
    const count = (this.counts.get(tenant) ?? 0) - 1;
    if (count <= 0) this.counts.delete(tenant);
    else this.counts.set(tenant, count);
  }

  take(key: string, rate: number, burst: number, n: number): boolean {
    const now = Date.now();
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      bucket = { tokens: burst, at: now };
      this.buckets.set(key, bucket);
    }
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) * rate) / 1000);
    bucket.at = now;
    if (bucket.tokens < n) return false;
    bucket.tokens -= n;
    return true;
  }
}

export class FleetCounters implements SharedCounters {
  readonly #fleet: Fleet | null;
  readonly #local = new LocalState();

  constructor(fleet: Fleet | null) {
    this.#fleet = fleet;
  }

  local(tenant: string): number {
    return this.#local.counts.get(tenant) ?? 0;
  }

  async acquire(tenant: string, max: number): Promise<Acquired> {
    const fleet = this.#fleet;
    const limit = Number.isFinite(max) && max > 0 ? max : 0;
    if (fleet === null || !fleet.up) {
      if (fleet !== null) fleetFallbacks.inc({ feature: 'counters' });
      return this.#local.acquire(tenant, limit);
    }
    try {
      // The node's tenant set is only the reaper's index: written in the same round trip, not atomically with the count (a lost SADD is repaired by the next sync).
      const [[allowed, count]] = (await fleet.link.run((c) =>
        Promise.all([c.eval(ACQUIRE, { keys: [fleet.key(`conn:${tenant}`)], arguments: [fleet.id, String(limit)] }), c.sAdd(fleet.key(`conntenants:${fleet.id}`), tenant)]),
      )) as [[number, number], number];
      if (allowed === 1) this.#local.counts.set(tenant, this.local(tenant) + 1);
      return { allowed: allowed === 1, count, shared: true };
    } catch {
      fleetFallbacks.inc({ feature: 'counters' });
      return this.#local.acquire(tenant, limit);
    }
  }

  async release(tenant: string): Promise<void> {
    this.#local.release(tenant);
    const fleet = this.#fleet;
    if (fleet === null || !fleet.up) return;
    // A release that cannot reach Redis is repaired by the next sync.
    await fleet.link.run((c) => c.eval(RELEASE, { keys: [fleet.key(`conn:${tenant}`)], arguments: [fleet.id] })).catch(() => {});
  }

  async take(key: string, ratePerSecond: number, burst: number, n = 1): Promise<boolean> {
    const fleet = this.#fleet;
    if (fleet === null || !fleet.up) {
      if (fleet !== null) fleetFallbacks.inc({ feature: 'counters' });
      return this.#local.take(key, ratePerSecond, burst, n);
    }
    try {
      const ok = await fleet.link.run((c) => c.eval(TAKE, { keys: [fleet.key(`bucket:${key}`)], arguments: [String(ratePerSecond), String(burst), String(n)] }));
      return ok === 1;
    } catch {
      fleetFallbacks.inc({ feature: 'counters' });
      return this.#local.take(key, ratePerSecond, burst, n);
    }
  }

  /** Writes this node's local counts to Redis (the heartbeat calls it): repairs releases lost while Redis was away. */
  async sync(): Promise<void> {
    const fleet = this.#fleet;
    if (fleet === null || !fleet.up) return;
    const tenants = await fleet.link.run((c) => c.sMembers(fleet.key(`conntenants:${fleet.id}`))).catch(() => [] as string[]);
    const all = new Set([...tenants, ...this.#local.counts.keys()]);
    if (all.size === 0) return;
    // One command per key (keys of different tenants sit in different cluster slots, so no MULTI); node-redis pipelines them.
    await fleet.link
      .run((c) =>
        Promise.all(
          [...all].flatMap((tenant) => {
            const n = this.local(tenant);
            return n > 0
              ? [c.hSet(fleet.key(`conn:${tenant}`), fleet.id, String(n)), c.sAdd(fleet.key(`conntenants:${fleet.id}`), tenant)]
              : [c.hDel(fleet.key(`conn:${tenant}`), fleet.id), c.sRem(fleet.key(`conntenants:${fleet.id}`), tenant)];
          }),
        ),
      )
      .catch(() => {});
  }
}

/** Drops a gone node's connection counts (the fleet view reaps it): one HDEL per tenant it counted in, then its set. */
export async function reapNode(fleet: Fleet, node: string): Promise<unknown> {
  const set = fleet.key(`conntenants:${node}`);
  const tenants = await fleet.link.run((c) => c.sMembers(set));
  await fleet.link.run((c) => Promise.all(tenants.map((tenant) => c.hDel(fleet.key(`conn:${tenant}`), node))));
  return fleet.link.run((c) => c.del(set));
}

let counters: FleetCounters | null = null;

/** The process's shared counters: fleet-wide when the fleet is on (`cluster.redis`), local otherwise. */
export function sharedCounters(): SharedCounters {
  counters ??= new FleetCounters(null);
  return counters;
}

/** Called when the fleet starts or stops (supervisor/proxy.ts). */
export function setSharedCounters(next: FleetCounters | null): void {
  counters = next;
}

export function currentCounters(): FleetCounters | null {
  return counters;
}

/**
 * Tenant limits' store when the fleet is configured (`cluster`): every call
 * goes to whichever counters are current (the fleet's once it started,
 * local ones before and after), so a tenant's concurrent count and
 * connection rate hold across instances — one Lua round trip per admitted
 * connection, local answers while Redis is down.
 */
export const fleetLimitStore: LimitStore = {
  acquire: (tenant, max) => sharedCounters().acquire(tenant, max),
  release: (tenant) => sharedCounters().release(tenant),
  take: (key, ratePerSecond, burst, n) => sharedCounters().take(key, ratePerSecond, burst, n),
};
