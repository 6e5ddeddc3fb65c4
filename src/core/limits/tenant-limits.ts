/**
 * The tenant limits of one config (a reload builds new ones; the counts
 * and buckets live in the store and outlive it). The router resolves each
 * routed answer's limits once (`resolve`, kept on the cache entry); every
 * listener asks `admit` per session and `request` per request, the same
 * for every protocol, and answers a LimitError in the protocol's words.
 */
import { LimitError } from '../errors.ts';
import { throttleFor } from './bandwidth.ts';
import type { Throttle } from './bandwidth.ts';
import { effectiveLimits, limitsSchema } from './config.ts';
import type { EffectiveLimits, LimitsConfig, TenantLimits as TenantLimitSpec } from './config.ts';
import type { ListenerShare } from './fair-share.ts';
import { resources } from '../resource-stats.ts';
import { limitedTotal } from './metrics.ts';
import { localLimitStore } from './store.ts';
import type { LimitStore } from './store.ts';

/** What an admitted session holds until it ends: release() it exactly once. */
export class Lease {
  readonly tenant: string;
  readonly store: LimitStore | null;
  readonly share: ListenerShare | null;
  /** Bandwidth for the session's relay; null = the relay's unthrottled path. */
  readonly throttle: Throttle | null;

  constructor(tenant: string, store: LimitStore | null, share: ListenerShare | null, throttle: Throttle | null) {
    this.tenant = tenant;
    this.store = store;
    this.share = share;
    this.throttle = throttle;
  }

  release(): void {
    if (this.store !== null) void this.store.release(this.tenant);
    this.share?.remove(this.tenant);
  }
}

export class TenantLimits {
  readonly config: LimitsConfig;
  readonly store: LimitStore;
  /** Listeners keep a fair share of their maxConnections (on with a `limits` section in the config). */
  readonly fairShare: boolean;

  constructor(config: LimitsConfig, store: LimitStore = localLimitStore, fairShare = true) {
    this.config = config;
    this.store = store;
    this.fairShare = fairShare;
  }

  /** A resource id's limits (default ← tenants[id] ← the route's), or null when none applies. */
  resolve(resourceId: string, routeLimits: TenantLimitSpec | undefined): EffectiveLimits | null {
    return effectiveLimits(this.config.default, Object.hasOwn(this.config.tenants, resourceId) ? this.config.tenants[resourceId] : undefined, routeLimits);
  }

  /**
   * Admits one session of `tenant` on a listener (its `share`, when the
   * listener keeps fair share): connection rate, fair share, concurrent
   * count, in that order (a refused session takes no count). Synchronous
   * with the local store; a promise with a shared one. Throws LimitError.
   */
  admit(tenant: string, limits: EffectiveLimits | null, share: ListenerShare | null): Lease | Promise<Lease> {
    if (limits !== null && limits.connectionsPerSecond !== undefined) {
      const rate = limits.connectionsPerSecond;
      const taken = this.store.take(`${tenant}\0conn/s`, rate, limits.connectionsBurst);
      if (taken instanceof Promise) return taken.then((ok) => this.#afterRate(ok, tenant, limits, share));
      return this.#afterRate(taken, tenant, limits, share);
    }
    return this.#afterRate(true, tenant, limits, share);
  }

  #afterRate(ok: boolean, tenant: string, limits: EffectiveLimits | null, share: ListenerShare | null): Lease | Promise<Lease> {
    if (!ok) throw refused('connection-rate', tenant, `connection rate limit of ${limits?.connectionsPerSecond}/s reached`, 1000 / (limits?.connectionsPerSecond ?? 1));
    if (share !== null && !share.fits(tenant, this.config.fairShareReservePercent)) throw refused('fair-share', tenant, 'the listener is nearly full and the tenant is over its fair share', 0);
    const max = limits?.maxConnections;
    if (max === undefined) return this.#lease(tenant, null, limits, share);
    const acquired = this.store.acquire(tenant, max);
    if (acquired instanceof Promise) return acquired.then((a) => this.#afterCount(a.allowed, tenant, max, limits, share));
    return this.#afterCount(acquired.allowed, tenant, max, limits, share);
  }

  #afterCount(allowed: boolean, tenant: string, max: number, limits: EffectiveLimits | null, share: ListenerShare | null): Lease {
    if (!allowed) throw refused('connections', tenant, `connection limit of ${max} reached`, 0);
    return this.#lease(tenant, this.store, limits, share);
  }

  #lease(tenant: string, store: LimitStore | null, limits: EffectiveLimits | null, share: ListenerShare | null): Lease {
    // A fair share that changed since fits() (another session admitted meanwhile) is not re-checked: one over at most.
    share?.add(tenant);
    const throttle = limits === null ? null : throttleFor(tenant, limits.inBytesPerSecond, limits.outBytesPerSecond);
    return new Lease(tenant, store, share, throttle);
  }

  /**
   * One request (HTTP, a ws-bridge message, FastCGI) of a tenant with a
   * requestsPerSecond: null when it may go, the LimitError otherwise (not
   * thrown: a refused request is a normal answer). Local buckets only: a
   * round trip per request would cost more than the request; with a fleet
   * each instance enforces the rate on what it serves.
   */
  request(tenant: string, limits: EffectiveLimits | null): LimitError | null {
    if (limits === null || limits.requestsPerSecond === undefined) return null;
    const rate = limits.requestsPerSecond;
    if (localLimitStore.take(`${tenant}\0req/s`, rate, limits.requestsBurst)) return null;
    limitedTotal.inc({ limit: 'request-rate' });
    resources.limited(tenant);
    return new LimitError('request-rate', tenant, `request rate limit of ${rate}/s reached`, 1000 / rate);
  }
}

/** For routers without a `limits` config: a route's own `limits` still hold (no fair share). */
export const routeOnlyLimits = new TenantLimits(limitsSchema.parse({}), localLimitStore, false);

function refused(limit: 'connections' | 'connection-rate' | 'fair-share', tenant: string, message: string, retryAfterMs: number): LimitError {
  limitedTotal.inc({ limit });
  resources.limited(tenant);
  return new LimitError(limit, tenant, message, retryAfterMs);
}
