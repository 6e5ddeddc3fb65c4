/**
 * Where tenant counts and rate buckets live. The local store keeps them in
 * this process (one per process: a reload keeps the counts). The fleet's
 * shared counters (src/fleet/counters.ts, Redis) have the same shape, so
 * with `cluster.redis` the limits hold across instances: one round trip per
 * connection, and the fleet falls back to local state while Redis is down.
 */
import { TokenBucket } from './token-bucket.ts';

export interface StoreAcquired {
  /** False: the tenant already has `max` sessions (nothing was counted). */
  readonly allowed: boolean;
}

export interface LimitStore {
  /** Counts one more session of `tenant` unless it already has `max`. */
  acquire(tenant: string, max: number): StoreAcquired | Promise<StoreAcquired>;
  /** A session counted by a successful acquire ended. */
  release(tenant: string): unknown;
  /** Takes `n` tokens from the bucket `key` (`ratePerSecond`, at most `burst`); false when there are not enough. */
  take(key: string, ratePerSecond: number, burst: number, n?: number): boolean | Promise<boolean>;
}

/** This process's counts and buckets. Every answer is synchronous. */
export class LocalLimitStore implements LimitStore {
  readonly counts = new Map<string, number>();
  readonly #buckets = new Map<string, TokenBucket>();

  acquire(tenant: string, max: number): StoreAcquired {
    const count = this.counts.get(tenant) ?? 0;
    if (count >= max) return REFUSED;
    this.counts.set(tenant, count + 1);
    return ALLOWED;
  }

  release(tenant: string): void {
    const count = (this.counts.get(tenant) ?? 0) - 1;
    if (count <= 0) this.counts.delete(tenant);
    else this.counts.set(tenant, count);
  }

  take(key: string, ratePerSecond: number, burst: number, n = 1): boolean {
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      bucket = new TokenBucket(ratePerSecond, burst);
      this.#buckets.set(key, bucket);
    } else if (bucket.rate !== ratePerSecond || bucket.burst !== Math.max(1, burst)) {
      bucket.configure(ratePerSecond, burst);
    }
    return bucket.take(n) === 0;
  }
}

const ALLOWED: StoreAcquired = { allowed: true };
const REFUSED: StoreAcquired = { allowed: false };

/** The process's store when there is no fleet. */
export const localLimitStore = new LocalLimitStore();
