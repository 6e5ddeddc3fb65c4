/**
 * The router turns a resource id into an ordered list of checked endpoints,
 * in named phases: cache → resolve (sources in order) → guard → pick.
 *
 * - Concurrent lookups of one id share a single resolve (200 clients arriving
 *   at once cost one resolver call).
 * - The SSRF guard resolves hostnames once per cached answer and the cached
 *   endpoints hold the checked IP, so a connection always goes to an address
 *   that was checked.
 * - Balancing returns every candidate, first choice first: the connect loop
 *   falls back to the others before any byte reaches a backend.
 * - A resolver is tenant code (tenant-code.ts): whatever it throws, rejects
 *   or returns fails only the lookup; every awaited answer (promise,
 *   thenable) gets the same deadline; its Route is checked and copied once
 *   (route-check.ts) and the copy is what the cache holds.
 * - Health: endpoints whose circuit breaker is open are left out of the
 *   candidates; when none is left the route fails fast with UNAVAILABLE.
 *   Routes with a cold start skip that filter: their backend is expected
 *   to be down until woken, and `connect` waits for it instead.
 */
import { LRUCache } from 'lru-cache';
import { roundRobin } from './balance.ts';
import type { Rotation } from './balance.ts';
import type { ColdStarts } from './cold-start.ts';
import { connectFirst } from './connect.ts';
import type { Connected, DialAbort, DialOptions } from './connect.ts';
import type { Endpoint } from './endpoint.ts';
import { formatHostPort, parseEndpoint } from './endpoint.ts';
import { PolyproxyError, ResolveError, toPolyproxyError } from './errors.ts';
import type { EndpointHealth, ProbeKind } from './health.ts';
import type { EffectiveLimits } from './limits/config.ts';
import type { TenantLimits } from './limits/tenant-limits.ts';
import { resolveDuration } from './metrics.ts';
import type { ResolveContext, Resolver, Route } from './resolver.ts';
import { effectiveLimits } from './limits/config.ts';
import { checkRoute } from './route-check.ts';
import type { SsrfGuard } from './ssrf-guard.ts';
import { adopt, callHook, describeError, hookFailed, thenOf } from './tenant-code.ts';

export interface ResolverSource {
  /** Shown in logs and errors: "module", "routes", "backend"... */
  readonly name: string;
  readonly resolver: Resolver;
}

export interface RouterOptions {
  readonly sources: readonly ResolverSource[];
  readonly guard: SsrfGuard;
  readonly cacheTtlMs: number;
  readonly cacheMaxEntries: number;
  /** A resolver call that takes longer fails with TIMEOUT. */
  readonly resolveTimeoutMs: number;
  /** Circuit breakers and probes shared by every router of the process; none = every endpoint is usable. */
  readonly health?: EndpointHealth;
  /** Cold-start gate shared by every router of the process; none = routes' coldStart is ignored. */
  readonly coldStarts?: ColdStarts;
  /** How `health` probes a routed endpoint, by the protocol that routed it (the protocol descriptors' healthProbe); unlisted: a TCP connect. */
  readonly probeKinds?: ReadonlyMap<string, ProbeKind>;
  /** The config's tenant limits (`limits`); none = only routes' own `limits` apply, with no fair share. */
  readonly limits?: TenantLimits;
}

/** A cached, checked answer for one resource id. */
export interface RouteEntry {
  readonly resourceId: string;
  /** The checked copy of the resolver's answer. */
  readonly route: Route;
  /** The object the resolver returned: round-robin state is kept per answer, so ids sharing one static route share a rotation. */
  readonly answer: object;
  readonly source: ResolverSource;
  /** Checked endpoints, in the route's order. */
  readonly endpoints: readonly Endpoint[];
  /** The tenant's limits (config default ← tenants ← route), worked out once per answer; null = unlimited. */
  readonly limits?: EffectiveLimits | null;
}

export interface RouteDecision {
  readonly entry: RouteEntry;
  /** Every endpoint, the balanced first choice first. */
  readonly candidates: readonly Endpoint[];
  readonly cacheHit: boolean;
}

/**
 * lru-cache reads the clock at most this often (it keeps a cached `now`
 * refreshed by a timer): its default of 1 ms fires a timer every
 * millisecond under load; route TTLs are seconds.
 */
const TTL_RESOLUTION_MS = 50;

/** Round-robin positions, keyed by the resolver's answer so every id sharing a static route shares its rotation. */
const rotation = new WeakMap<object, Rotation>();

export class Router {
  readonly #options: RouterOptions;
  readonly #cache: LRUCache<string, RouteEntry>;
  readonly #inflight = new Map<string, Promise<RouteEntry>>();
  #hits = 0;
  #misses = 0;
  /** Bumped by every purge: an answer looked up before a purge must not be cached after it. */
  #generation = 0;

  constructor(options: RouterOptions) {
    this.#options = options;
    this.#cache = new LRUCache<string, RouteEntry>({ max: Math.max(1, options.cacheMaxEntries), ttl: Math.max(1, options.cacheTtlMs), ttlAutopurge: false, ttlResolution: TTL_RESOLUTION_MS });
  }

  get sources(): readonly ResolverSource[] {
    return this.#options.sources;
  }

  /** The limits of the config this router was built from (fair share is on only with a `limits` section). */
  get limits(): TenantLimits | undefined {
    return this.#options.limits;
  }

  get health(): EndpointHealth | undefined {
    return this.#options.health;
  }

  stats(): { entries: number; hits: number; misses: number } {
    return { entries: this.#cache.size, hits: this.#hits, misses: this.#misses };
  }

  /**
   * The decision for a cached resource id, without a promise: undefined on a
   * miss (or for lookups routed by first bytes, which are never cached) — then
   * call `route`. A hit counts and rotates like one through `route`.
   */
  cached(resourceId: string, ctx: ResolveContext): RouteDecision | undefined {
    if (ctx.firstBytes !== undefined) return undefined;
    return this.#cachedEntry(this.#cache.get(cacheKey(ctx.protocol, resourceId)));
  }

  /**
   * `cached` for a caller that built the key once (routeCacheKey) and only
   * dials (a listener whose every connection has the same resource id asks
   * this per connection: no context object, no string building). Also
   * undefined when the route has a cold start to wait for: that needs
   * `connect`.
   */
  cachedDial(key: string): RouteDecision | undefined {
    const entry = this.#cache.get(key);
    if (entry === undefined || (entry.route.coldStart !== undefined && this.#options.coldStarts !== undefined)) return undefined;
    return this.#cachedEntry(entry);
  }

  #cachedEntry(entry: RouteEntry | undefined): RouteDecision | undefined {
    if (entry === undefined) return undefined;
    const candidates = this.#usable(entry);
    // Every endpoint down: let `route` fail with the error.
    if (candidates.length === 0) return undefined;
    this.#hits++;
    return { entry, candidates, cacheHit: true };
  }

  /** Pick phase, then health: the rotated candidates minus open circuits. */
  #usable(entry: RouteEntry): readonly Endpoint[] {
    const candidates = pick(entry);
    const health = this.#options.health;
    if (health === undefined || entry.route.coldStart !== undefined) return candidates;
    return health.usable(candidates);
  }

  #decide(entry: RouteEntry, cacheHit: boolean): RouteDecision {
    const candidates = this.#usable(entry);
    if (candidates.length === 0) {
      const list = entry.endpoints.map((e) => e.label).join(', ');
      throw new PolyproxyError('UNAVAILABLE', `every backend of "${entry.resourceId}" is down (${list}); circuit open`, { source: 'backend', resourceId: entry.resourceId });
    }
    return { entry, candidates, cacheHit };
  }

  /**
   * Connect phase for a decision: dials the candidates in order (feeding the
   * breakers) and, for a route with a cold start whose dial failed, wakes the
   * backend once and waits for it within the cold-start deadline.
   * `options`: keepalive, and whether the caller reports the backend's first answer to health (DialOptions).
   */
  async connect(decision: RouteDecision, timeoutMs: number, options?: DialOptions, abort?: DialAbort): Promise<Connected> {
    const { entry } = decision;
    const coldStart = entry.route.coldStart;
    const gate = this.#options.coldStarts;
    const health = this.#options.health;
    if (coldStart === undefined || gate === undefined) return connectFirst(decision.candidates, timeoutMs, health, options, abort);
    if (!gate.waking(entry.resourceId)) {
      try {
        return await connectFirst(decision.candidates, timeoutMs, health, options, abort);
      } catch (err) {
        if (!(err instanceof PolyproxyError) || err.kind !== 'BACKEND_UNREACHABLE') throw err;
      }
    }
    await gate.wait(entry.resourceId, coldStart, entry.endpoints);
    return connectFirst(entry.endpoints, timeoutMs, health, options, abort);
  }

  /** Resolves, checks and orders the endpoints for one resource id. Throws PolyproxyError. */
  async route(resourceId: string, ctx: ResolveContext): Promise<RouteDecision> {
    if (ctx.firstBytes !== undefined) {
      // Routed by what this client sent (raw TCP): one lookup per connection,
      // neither cached nor shared, or every client would get the first one's answer.
      this.#misses++;
      const entry = await this.#lookup(resourceId, ctx);
      return this.#decide(entry, false);
    }
    const key = cacheKey(ctx.protocol, resourceId);
    let entry = this.#cache.get(key);
    const cacheHit = entry !== undefined;
    if (entry === undefined) {
      this.#misses++;
      let pending = this.#inflight.get(key);
      if (pending === undefined) {
        const generation = this.#generation;
        pending = this.#lookup(resourceId, ctx).finally(() => this.#inflight.delete(key));
        this.#inflight.set(key, pending);
        pending.then(
          (found) => {
            const ttl = found.route.ttlMs ?? this.#options.cacheTtlMs;
            if (ttl > 0 && generation === this.#generation) this.#cache.set(key, found, { ttl });
          },
          () => {},
        );
      }
      entry = await pending;
    } else {
      this.#hits++;
    }
    return this.#decide(entry, cacheHit);
  }

  /** Drops cached answers for one id (every protocol), or for all ids when none is given. */
  purge(resourceId?: string): number {
    this.#generation++;
    if (resourceId === undefined) {
      const n = this.#cache.size;
      this.#cache.clear();
      return n;
    }
    let n = 0;
    const suffix = `\0${resourceId}`;
    for (const key of [...this.#cache.keys()]) {
      if (key.endsWith(suffix) && this.#cache.delete(key)) n++;
    }
    // A lookup in flight started before this purge: its answer is stale.
    for (const key of [...this.#inflight.keys()]) if (key.endsWith(suffix)) this.#inflight.delete(key);
    // A resolver's purge hook failing must not stop the purge.
    for (const { resolver } of this.#options.sources) if (resolver.purge !== undefined) callHook('purge', () => resolver.purge?.(resourceId));
    return n;
  }

  async #lookup(resourceId: string, ctx: ResolveContext): Promise<RouteEntry> {
    let lastNotFound: PolyproxyError | undefined;
    for (const source of this.#options.sources) {
      let answer: unknown;
      const started = performance.now();
      try {
        answer = source.resolver.resolve(resourceId, ctx);
        const then = thenOf(answer);
        if (then !== undefined) answer = await withDeadline(adopt('resolve', answer as object, then), this.#options.resolveTimeoutMs, source.name);
      } catch (err) {
        const error = resolveFailure(err, source.name);
        resolveDuration.observe({ source: source.name, outcome: error.kind.toLowerCase() }, (performance.now() - started) / 1000);
        if (error.kind === 'NOT_FOUND') {
          lastNotFound = error;
          continue;
        }
        throw error;
      }
      resolveDuration.observe({ source: source.name, outcome: answer === null || answer === undefined ? 'pass' : 'found' }, (performance.now() - started) / 1000);
      if (answer === null || answer === undefined) continue;
      let route: Route;
      try {
        route = checkRoute(answer, source.name, resourceId);
      } catch (err) {
        hookFailed('resolve', err);
        throw err;
      }
      const endpoints = await this.#check(resourceId, route, source);
      this.#options.health?.watch(endpoints, this.#options.probeKinds?.get(ctx.protocol) ?? 'tcp');
      const limits = this.#options.limits?.resolve(resourceId, route.limits) ?? (route.limits === undefined ? null : effectiveLimits(route.limits));
      return { resourceId, route, answer: answer as object, source, endpoints, limits };
    }
    throw lastNotFound ?? new ResolveError('NOT_FOUND', `no route for "${resourceId}"`);
  }

  /** Guard phase: parse and SSRF-check every endpoint of the (checked) route. */
  async #check(resourceId: string, route: Route, source: ResolverSource): Promise<Endpoint[]> {
    const raw = typeof route.endpoint === 'string' ? [route.endpoint] : route.endpoint;
    const checked: Endpoint[] = [];
    for (const text of raw) {
      let endpoint: Endpoint;
      try {
        endpoint = parseEndpoint(text);
      } catch (err) {
        throw new PolyproxyError('INTERNAL', `resolver "${source.name}" returned a bad endpoint for "${resourceId}": ${(err as Error).message}`);
      }
      checked.push(await this.#options.guard.check(endpoint));
    }
    if (route.replicas !== undefined && route.replicas.length > 0) {
      // Replicas are dialed by the read/write split: the same guard, and the
      // address it vouched for (not the name again, which could rebind).
      const replicas: string[] = [];
      for (const text of route.replicas) {
        let endpoint: Endpoint;
        try {
          endpoint = parseEndpoint(text);
        } catch (err) {
          throw new PolyproxyError('INTERNAL', `resolver "${source.name}" returned a bad replica for "${resourceId}": ${(err as Error).message}`);
        }
        const safe = await this.#options.guard.check(endpoint);
        replicas.push(safe.type === 'unix' ? `unix:${safe.path}` : formatHostPort(safe.host, safe.port));
      }
      route.replicas = replicas;
    }
    return checked;
  }
}

/** The cache key of a resource id for a protocol, for Router.cachedDial. */
export function routeCacheKey(protocol: string, resourceId: string): string {
  return cacheKey(protocol, resourceId);
}

function cacheKey(protocol: string, resourceId: string): string {
  return `${protocol}\0${resourceId}`;
}

/** Pick phase: round-robin first choice, the rest as ordered fallbacks (one rotation per Route). */
function pick(entry: RouteEntry): readonly Endpoint[] {
  const list = entry.endpoints;
  if (list.length < 2) return list;
  let state = rotation.get(entry.answer);
  if (state === undefined) {
    state = { next: 0 };
    rotation.set(entry.answer, state);
  }
  return roundRobin(list, state);
}

/**
 * A resolver's awaited answer, whatever kind of thenable it was, fails with
 * TIMEOUT after `ms` (0 = no deadline). The tenant's promise may settle
 * later or never: only our own promise is raced.
 */
async function withDeadline(answer: Promise<unknown>, ms: number, name: string): Promise<unknown> {
  if (ms <= 0) return answer;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ResolveError('TIMEOUT', `resolver "${name}" did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([answer, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * What a failed resolve means for the client: a ResolveError (or a
 * look-alike with a contract code) as thrown; anything else — a bug, a
 * hostile value — is INTERNAL, counted as a hook error.
 */
function resolveFailure(err: unknown, name: string): PolyproxyError {
  let error: PolyproxyError;
  try {
    // instanceof and toPolyproxyError read the value: a proxy or getter may throw.
    if (err instanceof PolyproxyError) return err;
    error = toPolyproxyError(err);
  } catch {
    error = new PolyproxyError('INTERNAL', `resolver "${name}" threw ${describeError(err)}`);
  }
  if (!(error instanceof ResolveError)) hookFailed('resolve', err);
  return error;
}
