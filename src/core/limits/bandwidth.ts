/**
 * Per-tenant bandwidth buckets, shared by every session of the tenant in
 * this process (a reload changes their rates, not their state). A session
 * of a tenant with a bandwidth limit gets a Throttle when it starts, and
 * its relay takes the slower, throttled path (relay.ts); a session without
 * one never sees any of this.
 */
import { TokenBucket } from './token-bucket.ts';

export interface Throttle {
  /** Client → backend bytes; null = unlimited that way. */
  readonly in: TokenBucket | null;
  /** Backend → client bytes. */
  readonly out: TokenBucket | null;
}

const buckets = new Map<string, { in: TokenBucket | null; out: TokenBucket | null }>();

/** The tenant's throttle at these rates (bytes/s; undefined = unlimited), one second's worth of burst. */
export function throttleFor(tenant: string, inRate: number | undefined, outRate: number | undefined): Throttle | null {
  if (inRate === undefined && outRate === undefined) {
    buckets.delete(tenant);
    return null;
  }
  let pair = buckets.get(tenant);
  if (pair === undefined) {
    pair = { in: null, out: null };
    buckets.set(tenant, pair);
  }
  pair.in = bucketAt(pair.in, inRate);
  pair.out = bucketAt(pair.out, outRate);
  return pair;
}

function bucketAt(bucket: TokenBucket | null, rate: number | undefined): TokenBucket | null {
  if (rate === undefined) return null;
  if (bucket === null) return new TokenBucket(rate, rate);
  if (bucket.rate !== rate) bucket.configure(rate, rate);
  return bucket;
}
