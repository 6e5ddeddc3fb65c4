/**
 * The routing steps an HTTP/2 stream (exchange.ts) and a bridged HTTP/1.1
 * request (h1-bridge.ts) share: a failed route named after the host it
 * was for, and the tenant's per-request limits (core/limits) — the
 * refusal (429 / gRPC 8) and the bucket its response bytes draw from.
 */
import { PolyproxyError, toPolyproxyError } from '../../../core/errors.ts';
import { throttleFor } from '../../../core/limits/bandwidth.ts';
import type { TokenBucket } from '../../../core/limits/token-bucket.ts';
import { routeOnlyLimits } from '../../../core/limits/tenant-limits.ts';
import type { RouteDecision, Router } from '../../../core/router.ts';

/** A routing failure; one that names no resource is counted against `host` (metrics, error page). */
export function routeFailure(err: unknown, host: string): PolyproxyError {
  const error = toPolyproxyError(err);
  return error.resourceId === undefined && error.kind !== 'PROTOCOL' ? new PolyproxyError(error.kind, error.message, { source: error.source, resourceId: host, cause: error }) : error;
}

/** The tenant's requestsPerSecond for one request: its refusal, or null when admitted (or unlimited). */
export function requestRefusal(router: Router, decision: RouteDecision): PolyproxyError | null {
  const limits = decision.entry.limits ?? null;
  return limits === null ? null : (router.limits ?? routeOnlyLimits).request(decision.entry.resourceId, limits);
}

/** The bucket the response bytes of an admitted request draw from (limits bandwidth); null = unlimited. */
export function responseBucket(decision: RouteDecision): TokenBucket | null {
  const limits = decision.entry.limits ?? null;
  return limits === null ? null : (throttleFor(decision.entry.resourceId, limits.inBytesPerSecond, limits.outBytesPerSecond)?.out ?? null);
}
