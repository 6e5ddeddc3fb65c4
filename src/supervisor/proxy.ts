/**
 * Builds one process's proxy from a validated config: resolver sources, the
 * router, and one listener per configured listener, made by its protocol's
 * descriptor (src/protocols/index.ts). Used directly when `workers: 1` and
 * inside each worker otherwise.
 */
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { Config, ListenerConfig } from '../config/schema.ts';
import type { TlsServerSettings } from '../core/client-connection.ts';
import type { ProxyListener } from '../core/listener.ts';
import type { ListenerStats, ProxyStats } from '../admin/source.ts';
import { ColdStarts } from '../core/cold-start.ts';
import { PROXIED_SESSION, defaultMaxConnections, openFilesLimit } from '../core/fd-limit.ts';
import { EndpointHealth } from '../core/health.ts';
import type { HealthSettings } from '../core/health.ts';
import { log, setLogLevel } from '../core/logger.ts';
import { setStatsProvider } from '../core/metrics.ts';
import type { StatsProvider } from '../core/metrics.ts';
import { resources } from '../core/resource-stats.ts';
import { poolRows } from '../protocols/postgres/pool/stats.ts';
import type { Route } from '../core/resolver.ts';
import { localLimitStore } from '../core/limits/store.ts';
import { TenantLimits } from '../core/limits/tenant-limits.ts';
import { Router } from '../core/router.ts';
import type { ResolverSource } from '../core/router.ts';
import { SniMatcher, sniCallback } from '../core/sni.ts';
import { SsrfGuard } from '../core/ssrf-guard.ts';
import { StaticRoutes } from '../core/static-routes.ts';
import { HEALTH_PROBES, protocolOf } from '../protocols/index.ts';
import { loadResolverModule } from '../resolvers/module.ts';
import { HttpResolver } from '../resolvers/http.ts';
import { RedisResolver } from '../resolvers/redis.ts';
import { ActivityTracker } from '../core/activity.ts';
import { packageVersion } from '../core/version.ts';
import { FleetCounters, fleetLimitStore, setSharedCounters } from '../fleet/counters.ts';
import { Fleet, defaultInstanceId } from '../fleet/fleet.ts';
import type { InstanceView } from '../fleet/fleet.ts';
import { setFleet } from '../fleet/index.ts';
import { closeSharedLinks, sharedLink } from '../fleet/redis-link.ts';
import os from 'node:os';
import { splitStats } from '../core/rw-split/stats.ts';

export interface BoundListener {
  readonly name: string;
  readonly protocol: string;
  readonly host: string;
  readonly port: number;
}

export interface StartOptions {
  /** Listening ports to use instead of the config's (the supervisor fills in port-0 listeners). */
  readonly ports?: ReadonlyMap<string, number>;
  /** Bind with SO_REUSEPORT so sibling workers share the ports. */
  readonly reusePort?: boolean;
}

/** One process's share of ProxyStats (the admin source merges workers'). */
export type WorkerStats = Pick<ProxyStats, 'startedAt' | 'ready' | 'listeners' | 'routes' | 'cache' | 'endpoints' | 'resources' | 'coldStarts' | 'pools' | 'resolvers' | 'fleet' | 'readWriteSplit'>;

export interface RunningProxy {
  readonly listeners: readonly ProxyListener[];
  readonly bound: readonly BoundListener[];
  /** The shared router of the current config (a reload replaces it). */
  readonly router: Router;
  readonly health: EndpointHealth;
  readonly coldStarts: ColdStarts;
  stats(): WorkerStats;
  /** Drops a resource id from every router's cache, and from every instance's when the fleet is on (`cluster`). */
  purge(resourceId: string): number;
  /** The fleet membership (`cluster`), or null. */
  readonly fleet: Fleet | null;
  /**
   * Applies a validated config to new sessions: routes, resolver, certificates,
   * health, cold-start and log settings. Established sessions are untouched.
   * Listener changes (added, removed, other port or protocol) need a restart:
   * they come back as warnings. Throws, changing nothing, when the new
   * resolver module or a certificate cannot be loaded.
   */
  reload(config: Config): Promise<string[]>;
  /** Stops accepting, lets sessions finish for up to `timeoutMs`, then closes the rest. */
  drain(timeoutMs: number): Promise<void>;
}

export function listenerName(listener: ListenerConfig): string {
  return listener.name;
}

/** Routers built from one config: the shared one, and one per listener with a fixed backend. */
interface Routing {
  readonly router: Router;
  readonly routers: ReadonlyMap<string, Router>;
}

/**
 * Resolver sources and routers for a config. Health and the cold-start gate
 * outlive it (a reload keeps breaker states and waiting connections).
 */
async function buildRouting(config: Config, health: EndpointHealth, coldStarts: ColdStarts, version: number): Promise<Routing> {
  const guard = new SsrfGuard({ allowPrivateBackends: config.security.allowPrivateBackends, allowBackends: config.security.allowBackends });
  const sources: ResolverSource[] = [];
  if (config.resolver.module !== undefined) sources.push({ name: 'module', resolver: await loadResolverModule(config.resolver.module, config, version) });
  const { redis, http } = config.resolver;
  if (redis !== undefined) {
    // One connection per URL for the process, kept across reloads.
    const link = sharedLink({ url: redis.url ?? '', sentinel: redis.sentinel, cluster: redis.cluster, name: 'resolver', commandTimeoutMs: Math.min(config.resolver.timeoutMs, config.cluster?.commandTimeoutMs ?? 500), connectTimeoutMs: config.cluster?.connectTimeoutMs ?? 2000, log });
    sources.push({ name: 'redis', resolver: new RedisResolver(link, redis.prefix) });
  }
  if (http !== undefined) sources.push({ name: 'http', resolver: new HttpResolver({ url: http.url, timeoutMs: http.timeoutMs, track: http.track }) });
  sources.push({ name: 'routes', resolver: new StaticRoutes(config.routes) });
  // With a fleet, concurrent counts and connection rates are the fleet's (Redis), not this process's.
  const limits = config.limits === undefined ? undefined : new TenantLimits(config.limits, config.cluster === undefined ? localLimitStore : fleetLimitStore);
  const routerOptions = { limits, guard, cacheTtlMs: config.cache.ttlSeconds * 1000, cacheMaxEntries: config.cache.maxEntries, resolveTimeoutMs: config.resolver.timeoutMs, health, probeKinds: HEALTH_PROBES, coldStarts };
  const router = new Router({ ...routerOptions, sources });
  // A listener's fixed backend is written by the operator, not chosen by a
  // resolver from tenant input, so it skips the SSRF guard.
  const trusted = new SsrfGuard({ allowPrivateBackends: true, allowBackends: [] });
  const routers = new Map<string, Router>();
  for (const listenerConfig of config.listeners) {
    if (listenerConfig.backend === undefined) {
      routers.set(listenerConfig.name, router);
      continue;
    }
    const route: Route = { endpoint: listenerConfig.backend };
    routers.set(listenerConfig.name, new Router({ ...routerOptions, guard: trusted, sources: [{ name: 'backend', resolver: { resolve: () => route } }] }));
  }
  return { router, routers };
}

function healthSettings(config: Config): Partial<HealthSettings> {
  return { ...config.health };
}

/** The fleet membership for `cluster`: connects (bounded by connectTimeoutMs; Redis down is not a startup failure), subscribes, heartbeats. */
async function startFleet(config: Config): Promise<Fleet | null> {
  const cluster = config.cluster;
  if (cluster === undefined) return null;
  const instanceId = cluster.instanceId ?? defaultInstanceId();
  // Worker processes of one instance are separate members (each holds its own clients and sessions).
  const nodeId = process.env.POLYPROXY_WORKER === undefined ? instanceId : `${instanceId}/${process.pid}`;
  const fleet = new Fleet({
    url: cluster.redis.url ?? '',
    sentinel: cluster.redis.sentinel,
    cluster: cluster.redis.cluster,
    prefix: cluster.redis.prefix,
    nodeId,
    instanceId,
    heartbeatMs: cluster.heartbeatMs,
    commandTimeoutMs: cluster.commandTimeoutMs,
    connectTimeoutMs: cluster.connectTimeoutMs,
    version: packageVersion(),
    address: cluster.address ?? os.hostname(),
    log,
  });
  const counters = new FleetCounters(fleet);
  fleet.onHeartbeat(() => counters.sync());
  setSharedCounters(counters);
  setFleet(fleet);
  await fleet.start();
  return fleet;
}

export async function startProxy(config: Config, options: StartOptions = {}): Promise<RunningProxy> {
  setLogLevel(config.logLevel);
  const fleet = await startFleet(config);
  const health = new EndpointHealth(healthSettings(config), log);
  const coldStarts = new ColdStarts(config.coldStart, log, fleet === null ? undefined : { acquire: (id, ttlMs) => fleet.acquireWake(id, ttlMs), release: (id, keepMs) => fleet.releaseWake(id, keepMs) });
  resources.maxResources = config.metrics.maxResources;
  let version = 0;
  let routing = await buildRouting(config, health, coldStarts, version);
  let current = config;

  const listeners: ProxyListener[] = [];
  const bound: BoundListener[] = [];
  // maxConnections 0: a share of the open-files limit (core/fd-limit.ts), so the process refuses in its protocols' words before accept() runs out of descriptors.
  const fdLimit = openFilesLimit();
  const fdShares = defaultMaxConnections(
    fdLimit,
    config.listeners.map((l) => protocolOf(l).descriptors?.(l) ?? PROXIED_SESSION),
  );
  if (fdLimit !== null && config.listeners.some((l) => l.maxConnections === 0)) {
    const shares = Object.fromEntries(config.listeners.flatMap((l, i) => (l.maxConnections === 0 ? [[listenerName(l), fdShares[i]]] : [])));
    log.info({ openFilesLimit: fdLimit, maxConnections: shares }, 'listeners without maxConnections take a share of the open-files limit');
  }
  try {
    for (const [index, configured] of config.listeners.entries()) {
      const listenerConfig = configured.maxConnections === 0 ? { ...configured, maxConnections: fdShares[index] as number } : configured;
      const name = listenerName(listenerConfig);
      const listener = protocolOf(listenerConfig).create(listenerConfig, {
        port: options.ports?.get(name) ?? listenerConfig.port,
        reusePort: options.reusePort ?? false,
        workers: options.reusePort === true ? config.workers : 1,
        log,
        router: routing.routers.get(name) ?? routing.router,
        tls: tlsSettings(listenerConfig),
      });
      const address = await listener.listen();
      listeners.push(listener);
      bound.push({ name, protocol: listenerConfig.protocol, host: address.address, port: address.port });
    }
  } catch (err) {
    await Promise.all(listeners.map((l) => l.stopAccepting()));
    throw err;
  }

  health.start();
  const tracker = new ActivityTracker(resources, config.resolver.trackIntervalMs, () => routing.router.sources.map((source) => source.resolver));
  tracker.start();
  const localPurge = (resourceId: string): number => {
    let n = 0;
    for (const r of new Set([routing.router, ...routing.routers.values()])) n += r.purge(resourceId);
    return n;
  };
  if (fleet !== null) {
    fleet.onPurge(localPurge);
    fleet.countConnections(() => listeners.reduce((n, l) => n + l.counters.open, 0));
  }
  const resolverStats = (): Record<string, Record<string, unknown>> => {
    const out: Record<string, Record<string, unknown>> = {};
    for (const { name, resolver } of routing.router.sources) {
      if (resolver.stats === undefined) continue;
      try {
        const value = resolver.stats();
        if (value !== null && typeof value === 'object') out[name] = { ...value };
      } catch {
        out[name] = { error: 'stats() threw' };
      }
    }
    out.track = { intervalMs: current.resolver.trackIntervalMs, calls: tracker.calls };
    return out;
  };
  const started = Date.now();
  let draining = false;
  const listenerStats = (): ListenerStats[] =>
    listeners.map((l, i) => {
      const [liveIn, liveOut] = l.liveBytes?.() ?? [0, 0];
      const where = bound[i] as BoundListener;
      const c = l.counters;
      return { name: l.name, protocol: l.protocolName, host: where.host, port: where.port, open: c.open, total: c.total, refused: c.refused, failed: c.failed, bytesIn: c.bytesIn + liveIn, bytesOut: c.bytesOut + liveOut };
    });
  const cacheStats = (): { entries: number; hits: number; misses: number } => {
    const total = { entries: 0, hits: 0, misses: 0 };
    for (const r of new Set([routing.router, ...routing.routers.values()])) {
      const s = r.stats();
      total.entries += s.entries;
      total.hits += s.hits;
      total.misses += s.misses;
    }
    return total;
  };
  const provider: StatsProvider = {
    listeners: listenerStats,
    cache: cacheStats,
    endpoints: () => health.stats(),
    coldStarts: () => ({ ...coldStarts.counters }),
    resources: () => resources.all(),
  };
  setStatsProvider(provider);

  return {
    listeners,
    bound,
    get router() {
      return routing.router;
    },
    health,
    coldStarts,
    stats(): WorkerStats {
      return {
        startedAt: started,
        ready: !draining,
        listeners: listenerStats(),
        routes: Object.keys(current.routes),
        cache: cacheStats(),
        endpoints: health.stats(),
        resources: resources.all(),
        coldStarts: { waiting: coldStarts.counters.waiting, wakes: coldStarts.counters.wakes, timeouts: coldStarts.counters.timeouts },
        pools: poolRows(),
        readWriteSplit: splitStats(),
        resolvers: resolverStats(),
        fleet: fleet === null ? null : fleetStats(fleet),
      };
    },
    fleet,
    purge(resourceId: string): number {
      if (fleet !== null) void fleet.publishPurge(resourceId);
      return localPurge(resourceId);
    },
    async reload(next: Config): Promise<string[]> {
      const warnings = listenerChanges(current, next);
      version++;
      const nextRouting = await buildRouting(next, health, coldStarts, version);
      // Every certificate is read before anything is swapped: a bad file leaves the running config whole.
      const nextTls = new Map(next.listeners.map((l) => [l.name, tlsSettings(l)] as const));
      for (const listener of listeners) {
        const router = nextRouting.routers.get(listener.name);
        if (router === undefined) continue; // removed from the file: keeps running until a restart
        listener.reconfigure?.({ router, tls: nextTls.get(listener.name) ?? null });
      }
      routing = nextRouting;
      current = next;
      setLogLevel(next.logLevel);
      health.configure(healthSettings(next));
      coldStarts.configure(next.coldStart);
      tracker.configure(next.resolver.trackIntervalMs);
      resources.maxResources = next.metrics.maxResources;
      return warnings;
    },
    async drain(timeoutMs: number) {
      draining = true;
      tracker.stop();
      await Promise.all(listeners.map((l) => l.stopAccepting()));
      const open = listeners.reduce((n, l) => n + l.sessions, 0);
      if (open > 0) log.info({ sessions: open, timeoutMs }, 'draining: waiting for open sessions');
      if ((await idleWithin(listeners, timeoutMs)) === 'deadline') {
        const left = listeners.reduce((n, l) => n + l.sessions, 0);
        log.warn({ sessions: left }, 'drain deadline passed: closing remaining sessions');
        for (const l of listeners) l.destroyAll('shutdown');
        // A hard deadline: a session whose pipeline still awaits tenant code
        // (a resolve, a wake) is closed to its client but cannot hold the exit.
        if ((await idleWithin(listeners, DESTROY_GRACE_MS)) === 'deadline') {
          log.warn({ sessions: listeners.reduce((n, l) => n + l.sessions, 0) }, 'drain: sessions still pending after closing them; exiting anyway');
        }
      }
      tracker.tick();
      if (fleet !== null) {
        setFleet(null);
        setSharedCounters(null);
        await fleet.stop();
      }
      await closeSharedLinks();
    },
  };
}

function fleetStats(fleet: Fleet): { instanceId: string; node: string; redisUp: boolean; instances: InstanceView[] } {
  return fleet.stats();
}

function tlsSettings(listener: ListenerConfig): TlsServerSettings | null {
  const config = listener.tls;
  if (config === undefined) return null;
  const read = (file: string, field: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(`listeners.${listenerName(listener)}.tls.${field}: cannot read ${file}: ${(err as Error).message}`, { cause: err });
    }
  };
  const ca = config.ca === undefined ? undefined : read(config.ca, 'ca');
  // Every context carries the CA, so client certificates verify whichever certificate SNI picked.
  const context = (cert: string, key: string, field: string): tls.SecureContext => {
    try {
      return tls.createSecureContext({ cert: read(cert, `${field}cert`), key: read(key, `${field}key`), ...(ca === undefined ? {} : { ca }) });
    } catch (err) {
      if ((err as Error).message.startsWith('listeners.')) throw err;
      throw new Error(`listeners.${listenerName(listener)}.tls.${field}cert: ${(err as Error).message}`, { cause: err });
    }
  };
  const secureContext = context(config.cert, config.key, '');
  const certificates = config.certificates ?? [];
  // Built once per listener; each handshake only looks a name up.
  const matcher = new SniMatcher(certificates.map((entry, i) => ({ names: entry.names, value: context(entry.cert, entry.key, `certificates.${i}.`) })));
  return {
    secureContext,
    requestCert: config.ca !== undefined,
    requireClientCert: config.requireClientCert,
    ...(matcher.size === 0 ? {} : { sniCallback: sniCallback(matcher) }),
  };
}

/** What a reload cannot apply to running listeners. */
function listenerChanges(from: Config, to: Config): string[] {
  const warnings: string[] = [];
  const before = new Map(from.listeners.map((l) => [l.name, l]));
  for (const l of to.listeners) {
    const old = before.get(l.name);
    if (old === undefined) warnings.push(`listener ${l.name} is new: it starts at the next restart`);
    else if (old.protocol !== l.protocol || old.port !== l.port || old.host !== l.host) warnings.push(`listener ${l.name} changed protocol, host or port: that applies at the next restart`);
    before.delete(l.name);
  }
  for (const name of before.keys()) warnings.push(`listener ${name} was removed from the file: it keeps running until the next restart`);
  // The fleet membership (its Redis, prefix, name) is made once per process.
  if (JSON.stringify(from.cluster ?? null) !== JSON.stringify(to.cluster ?? null)) warnings.push('cluster changed: the fleet settings apply at the next restart');
  return warnings;
}

/** How long closed sessions get to unwind after the drain deadline before the drain returns regardless. */
const DESTROY_GRACE_MS = 1000;

/** 'idle' once no listener has a session left, or 'deadline' after `ms`, whichever comes first. */
async function idleWithin(listeners: readonly ProxyListener[], ms: number): Promise<'idle' | 'deadline'> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'deadline'>((resolve) => {
    timer = setTimeout(resolve, ms, 'deadline');
  });
  try {
    return await Promise.race([Promise.all(listeners.map((l) => l.idle())).then(() => 'idle' as const), deadline]);
  } finally {
    clearTimeout(timer);
  }
}
