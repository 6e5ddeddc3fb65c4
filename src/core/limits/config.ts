/**
 * Tenant limits as the config and a resolver's Route write them, and how
 * one resource id's limits are worked out: `limits.default`, then
 * `limits.tenants[<id>]`, then the Route's `limits`, field by field (the
 * most specific wins; the route's answer is the one per tenant a resolver
 * can compute, e.g. from a plan). Resolved once per routed answer (the
 * router keeps the result on its cache entry), never per connection.
 */
import { z } from 'zod';

const perSecond = z.number().positive().finite();

export const bandwidthSchema = z.strictObject({
  /** Client → backend bytes a second for the tenant's sessions (together, in this process or fleet-wide buckets). */
  inBytesPerSecond: perSecond.optional(),
  /** Backend → client bytes a second. */
  outBytesPerSecond: perSecond.optional(),
});

/** One tenant's limits; every field optional (absent = unlimited, or inherited). */
export const tenantLimitsSchema = z.strictObject({
  /** Concurrent sessions of the tenant (across the process's listeners, or the fleet with cluster.redis). */
  maxConnections: z.number().int().min(1).optional(),
  /** New sessions a second (token bucket). */
  connectionsPerSecond: perSecond.optional(),
  /** The connection bucket's size: how many may open at once after a quiet spell. Default: connectionsPerSecond (at least 1). */
  connectionsBurst: z.number().int().min(1).optional(),
  /** HTTP requests, ws-bridge messages and FastCGI requests a second (token bucket). */
  requestsPerSecond: perSecond.optional(),
  /** The request bucket's size. Default: requestsPerSecond (at least 1). */
  requestsBurst: z.number().int().min(1).optional(),
  bandwidth: bandwidthSchema.optional(),
});

export const limitsSchema = z.strictObject({
  default: tenantLimitsSchema.default({}),
  tenants: z.record(z.string().min(1), tenantLimitsSchema).default({}),
  /**
   * When a listener is this close to its maxConnections (percent of it, at
   * least one connection), only tenants under their fair share are admitted.
   */
  fairShareReservePercent: z.number().min(0).max(100).default(10),
});

export type TenantLimitsInput = z.input<typeof tenantLimitsSchema>;
export type TenantLimits = z.output<typeof tenantLimitsSchema>;
export type LimitsConfig = z.output<typeof limitsSchema>;

/** A tenant's limits with every default filled in; undefined fields are unlimited. */
export interface EffectiveLimits {
  readonly maxConnections: number | undefined;
  readonly connectionsPerSecond: number | undefined;
  readonly connectionsBurst: number;
  readonly requestsPerSecond: number | undefined;
  readonly requestsBurst: number;
  readonly inBytesPerSecond: number | undefined;
  readonly outBytesPerSecond: number | undefined;
}

/** Merges the layers (later wins, field by field); null when nothing is limited. */
export function effectiveLimits(...layers: ReadonlyArray<TenantLimits | undefined>): EffectiveLimits | null {
  let maxConnections: number | undefined;
  let connectionsPerSecond: number | undefined;
  let connectionsBurst: number | undefined;
  let requestsPerSecond: number | undefined;
  let requestsBurst: number | undefined;
  let inBytesPerSecond: number | undefined;
  let outBytesPerSecond: number | undefined;
  for (const layer of layers) {
    if (layer === undefined) continue;
    maxConnections = layer.maxConnections ?? maxConnections;
    connectionsPerSecond = layer.connectionsPerSecond ?? connectionsPerSecond;
    connectionsBurst = layer.connectionsBurst ?? connectionsBurst;
    requestsPerSecond = layer.requestsPerSecond ?? requestsPerSecond;
    requestsBurst = layer.requestsBurst ?? requestsBurst;
    inBytesPerSecond = layer.bandwidth?.inBytesPerSecond ?? inBytesPerSecond;
    outBytesPerSecond = layer.bandwidth?.outBytesPerSecond ?? outBytesPerSecond;
  }
  if (maxConnections === undefined && connectionsPerSecond === undefined && requestsPerSecond === undefined && inBytesPerSecond === undefined && outBytesPerSecond === undefined) return null;
  return {
    maxConnections,
    connectionsPerSecond,
    connectionsBurst: connectionsBurst ?? Math.max(1, Math.floor(connectionsPerSecond ?? 1)),
    requestsPerSecond,
    requestsBurst: requestsBurst ?? Math.max(1, Math.floor(requestsPerSecond ?? 1)),
    inBytesPerSecond,
    outBytesPerSecond,
  };
}

/** Checks a Route's `limits` (tenant input): the same schema as the config's, as a plain copy. Throws with the zod message. */
export function checkRouteLimits(value: unknown): TenantLimits {
  const parsed = tenantLimitsSchema.safeParse(value);
  if (!parsed.success) throw new Error(parsed.error.issues.map((i) => `${i.path.join('.') || 'limits'}: ${i.message}`).join('; '));
  return parsed.data;
}
