/**
 * `resolver.redis`: routes kept in Redis by the platform's control plane.
 * `GET <prefix><id>` → `host:port` (or a list `a:1,b:2`), or a JSON Route
 * (`{"endpoint": ..., "ttlMs": ..., "timeoutMs": ..., "replicas": [...]}`).
 * A missing key passes the id on to the next source. While Redis is down
 * the source also passes (the cache, the http source and static routes keep
 * serving), and the failure is logged once by the link, not per lookup.
 *
 * A changed route reaches instances on the next lookup after a purge
 * (`PUBLISH <cluster.prefix>purge <id>`, fleet/index.ts) or when the cached
 * answer's TTL ends.
 *
 * track() keeps per-resource activity in `<prefix>activity:<id>` (a hash:
 * lastActiveMs, bytesIn, bytesOut, connections — cumulative), what a
 * scale-to-zero controller reads to know a tenant is busy.
 */
import { PolyproxyError, ResolveError } from '../core/errors.ts';
import type { Activity, Resolver, Route } from '../core/resolver.ts';
import { RedisDownError } from '../fleet/redis-link.ts';
import type { RedisLink } from '../fleet/redis-link.ts';

/** A key whose value is neither is the control plane's bug: the lookup fails (INTERNAL), it does not fall through to another source. */
export function parseRedisRoute(value: string, resourceId: string): Route {
  const text = value.trim();
  if (text.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new PolyproxyError('INTERNAL', `resolver "redis": the value for "${resourceId}" is not valid JSON: ${(err as Error).message}`, { resourceId });
    }
    return parsed as Route; // checked field by field by the router (route-check.ts)
  }
  const list = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (list.length === 0) throw new PolyproxyError('INTERNAL', `resolver "redis": the value for "${resourceId}" is empty`, { resourceId });
  return { endpoint: list.length === 1 ? (list[0] as string) : list };
}

/** Activity hashes expire after this long without a track() call. */
const ACTIVITY_TTL_SECONDS = 7 * 24 * 3600;

export class RedisResolver implements Resolver {
  readonly #link: RedisLink;
  readonly #prefix: string;
  #lookups = 0;
  #found = 0;
  #passedDown = 0;
  #tracked = 0;

  constructor(link: RedisLink, prefix: string) {
    this.#link = link;
    this.#prefix = prefix;
  }

  async resolve(resourceId: string): Promise<Route | null> {
    this.#lookups++;
    let value: string | null;
    try {
      value = await this.#link.run((c) => c.get(this.#prefix + resourceId));
    } catch (err) {
      if (err instanceof RedisDownError) {
        this.#passedDown++;
        return null;
      }
      throw new ResolveError('UNAVAILABLE', `resolver "redis": ${(err as Error).message}`, { cause: err });
    }
    if (value === null) return null;
    this.#found++;
    return parseRedisRoute(value, resourceId);
  }

  track(resourceId: string, activity: Activity): void {
    if (!this.#link.up) return;
    this.#tracked++;
    const key = `${this.#prefix}activity:${resourceId}`;
    void this.#link
      .run((c) =>
        c
          .multi()
          .hSet(key, 'lastActiveMs', String(Date.now()))
          .hIncrBy(key, 'bytesIn', activity.bytesIn)
          .hIncrBy(key, 'bytesOut', activity.bytesOut)
          .hIncrBy(key, 'connections', activity.connections)
          .expire(key, ACTIVITY_TTL_SECONDS)
          .exec(),
      )
      .catch(() => {});
  }

  stats(): Record<string, unknown> {
    return { redisUp: this.#link.up, lookups: this.#lookups, found: this.#found, passedWhileDown: this.#passedDown, tracked: this.#tracked };
  }
}
