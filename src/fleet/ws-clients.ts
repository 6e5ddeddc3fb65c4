/**
 * ws-bridge clients across the fleet: `<prefix>ws:<listener>:<ClientId>` →
 * `<node>|<openedAt>`, with a TTL the bridge's ping sweep refreshes (an
 * instance that dies leaves no client behind for longer than the TTL).
 * A push for a ClientId this instance does not hold asks Redis who holds
 * it and sends it to that instance's inbox (fleet.ts). Every script is one
 * round trip and touches one key (a Redis Cluster runs it on that key's
 * node).
 */
import type { Fleet } from './fleet.ts';
import { fleetFallbacks } from './metrics.ts';

/**
 * Claims a ClientId for this node. ARGV: value, ttl ms, mode ("replace":
 * always take it; "refuse": take it only when free or already ours).
 * Returns the previous holder's value (or false when free); in refuse mode
 * a holder that is not us is returned and nothing is written.
 */
const CLAIM = `
local old = redis.call('GET', KEYS[1])
if ARGV[3] == 'refuse' and old and string.sub(old, 1, string.len(ARGV[4]) + 1) ~= ARGV[4] .. '|' then return old end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return old`;

/**
 * Refreshes the key's TTL if it still holds our value, and writes it again
 * when the key is gone (a claim that failed while Redis was down or slow, or
 * a Redis restarted empty) — never over another holder's. ARGV: ttl ms, value.
 */
const REFRESH = `
local v = redis.call('GET', KEYS[1])
if v == ARGV[2] then return redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if not v then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1]); return 2 end
return 0`;

const RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

export interface Holder {
  readonly node: string;
  readonly openedAt: number;
}

function parseHolder(value: unknown): Holder | null {
  if (typeof value !== 'string') return null;
  const bar = value.lastIndexOf('|');
  if (bar < 0) return null;
  return { node: value.slice(0, bar), openedAt: Number(value.slice(bar + 1)) };
}

export class FleetClients {
  readonly #fleet: Fleet;
  readonly #listener: string;
  readonly #ttlMs: number;
  #held: (() => ReadonlyArray<{ readonly id: string; readonly openedAt: number }>) | null = null;

  constructor(fleet: Fleet, listener: string, ttlMs: number) {
    this.#fleet = fleet;
    this.#listener = listener;
    this.#ttlMs = ttlMs;
  }

  #key(clientId: string): string {
    return this.#fleet.key(`ws:${this.#listener}:${clientId}`);
  }

  value(openedAt: number): string {
    return `${this.#fleet.id}|${openedAt}`;
  }

  /**
   * Records that this node now holds `clientId`. Returns the previous
   * holder elsewhere (null when none, ours, or Redis is down). In `refuse`
   * mode a holder elsewhere means nothing was written: refuse the client.
   */
  async claim(clientId: string, openedAt: number, mode: 'replace' | 'refuse'): Promise<Holder | null> {
    try {
      const old = await this.#fleet.link.run((c) => c.eval(CLAIM, { keys: [this.#key(clientId)], arguments: [this.value(openedAt), String(this.#ttlMs), mode, this.#fleet.id] }));
      const holder = parseHolder(old);
      return holder === null || holder.node === this.#fleet.id ? null : holder;
    } catch {
      fleetFallbacks.inc({ feature: 'ws-registry' });
      return null;
    }
  }

  /** The node holding `clientId` (may be this one); null when none, undefined when Redis could not say. */
  async holder(clientId: string): Promise<Holder | null | undefined> {
    try {
      return parseHolder(await this.#fleet.link.run((c) => c.get(this.#key(clientId))));
    } catch {
      fleetFallbacks.inc({ feature: 'ws-push' });
      return undefined;
    }
  }

  release(clientId: string, openedAt: number): void {
    this.#fleet.link.run((c) => c.eval(RELEASE, { keys: [this.#key(clientId)], arguments: [this.value(openedAt)] })).catch(() => {});
  }

  /** Refreshes (re-claims) `held()` each time the fleet's Redis comes back, rather than at the next sweep: a push from another instance finds them again within a probe interval. */
  refreshWhenRedisReturns(held: () => ReadonlyArray<{ readonly id: string; readonly openedAt: number }>): void {
    // One hook per registry (a listener started again replaces its getter, it does not add one).
    if (this.#held === null) this.#fleet.link.onUp(() => this.refresh(this.#held?.() ?? []));
    this.#held = held;
  }

  /**
   * The ping sweep's refresh for every client this listener holds: one
   * script per key (clients' keys sit in different cluster slots), sent
   * together — node-redis pipelines them, one round trip per node.
   */
  refresh(clients: ReadonlyArray<{ readonly id: string; readonly openedAt: number }>): void {
    if (clients.length === 0 || !this.#fleet.up) return;
    const ttl = String(this.#ttlMs);
    this.#fleet.link.run((c) => Promise.all(clients.map((client) => c.eval(REFRESH, { keys: [this.#key(client.id)], arguments: [ttl, this.value(client.openedAt)] })))).catch(() => {});
  }
}
