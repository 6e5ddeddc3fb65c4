/**
 * Builds one process's proxy from a validated config: resolver sources, the
 * router, and a Listener per configured listener. Used directly when
 * `workers: 1` and inside each worker otherwise.
 */
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { Config, ListenerConfig } from '../config/schema.ts';
import type { TlsServerSettings } from '../core/client-connection.ts';
import { Listener } from '../core/listener.ts';
import type { ProxyListener } from '../core/listener.ts';
import { log, setLogLevel } from '../core/logger.ts';
import type { Route } from '../core/resolver.ts';
import { Router } from '../core/router.ts';
import type { ResolverSource } from '../core/router.ts';
import { SniMatcher, sniCallback } from '../core/sni.ts';
import { SsrfGuard } from '../core/ssrf-guard.ts';
import { StaticRoutes } from '../core/static-routes.ts';
import { createProtocol, maxOpeningBytes } from '../protocols/index.ts';
import { loadResolverModule } from '../resolvers/module.ts';

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

export interface RunningProxy {
  readonly listeners: readonly ProxyListener[];
  readonly bound: readonly BoundListener[];
  readonly router: Router;
  /** Stops accepting, lets sessions finish for up to `timeoutMs`, then closes the rest. */
  drain(timeoutMs: number): Promise<void>;
}

export function listenerName(listener: ListenerConfig): string {
  return listener.name;
}

export async function startProxy(config: Config, options: StartOptions = {}): Promise<RunningProxy> {
  setLogLevel(config.logLevel);
  const guard = new SsrfGuard({ allowPrivateBackends: config.security.allowPrivateBackends, allowBackends: config.security.allowBackends });
  const sources: ResolverSource[] = [];
  if (config.resolver.module !== undefined) sources.push({ name: 'module', resolver: await loadResolverModule(config.resolver.module, config) });
  sources.push({ name: 'routes', resolver: new StaticRoutes(config.routes) });
  const routerOptions = { guard, cacheTtlMs: config.cache.ttlSeconds * 1000, cacheMaxEntries: config.cache.maxEntries, resolveTimeoutMs: config.resolver.timeoutMs };
  const router = new Router({ ...routerOptions, sources });
  // A listener's fixed backend is written by the operator, not chosen by a
  // resolver from tenant input, so it skips the SSRF guard.
  const trusted = new SsrfGuard({ allowPrivateBackends: true, allowBackends: [] });

  const listeners: ProxyListener[] = [];
  const bound: BoundListener[] = [];
  try {
    for (const listenerConfig of config.listeners) {
      const name = listenerName(listenerConfig);
      let listenerRouter = router;
      if (listenerConfig.backend !== undefined) {
        const route: Route = { endpoint: listenerConfig.backend };
        listenerRouter = new Router({ ...routerOptions, guard: trusted, sources: [{ name: 'backend', resolver: { resolve: () => route } }] });
      }
      const listener = new Listener(
        {
          name,
          protocol: listenerConfig.protocol,
          host: listenerConfig.host,
          port: options.ports?.get(name) ?? listenerConfig.port,
          connectTimeoutMs: listenerConfig.connectTimeoutMs,
          // SMTP: an idle relayed session ends at the RFC 5321 command timeout unless idleTimeoutMs is set.
          idleTimeoutMs: listenerConfig.protocol === 'smtp' && listenerConfig.idleTimeoutMs === 0 ? listenerConfig.commandTimeoutMs : listenerConfig.idleTimeoutMs,
          handshakeTimeoutMs: listenerConfig.handshakeTimeoutMs,
          maxConnections: listenerConfig.maxConnections,
          maxOpeningBytes: maxOpeningBytes(listenerConfig),
          reusePort: options.reusePort ?? false,
        },
        createProtocol(listenerConfig, name),
        listenerRouter,
        tlsSettings(listenerConfig),
        log,
      );
      const address = await listener.listen();
      listeners.push(listener);
      bound.push({ name, protocol: listenerConfig.protocol, host: address.address, port: address.port });
    }
  } catch (err) {
    await Promise.all(listeners.map((l) => l.stopAccepting()));
    throw err;
  }

  return {
    listeners,
    bound,
    router,
    async drain(timeoutMs: number) {
      await Promise.all(listeners.map((l) => l.stopAccepting()));
      const open = listeners.reduce((n, l) => n + l.sessions, 0);
      if (open > 0) log.info({ sessions: open, timeoutMs }, 'draining: waiting for open sessions');
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'deadline'>((resolve) => {
        timer = setTimeout(resolve, timeoutMs, 'deadline');
      });
      const outcome = await Promise.race([Promise.all(listeners.map((l) => l.idle())).then(() => 'idle' as const), deadline]);
      clearTimeout(timer);
      if (outcome === 'deadline') {
        const left = listeners.reduce((n, l) => n + l.sessions, 0);
        log.warn({ sessions: left }, 'drain deadline passed: closing remaining sessions');
        for (const l of listeners) l.destroyAll('shutdown');
        await Promise.all(listeners.map((l) => l.idle()));
      }
    },
  };
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
    ...(listener.protocol === 'http' ? { alpnProtocols: HTTP_ALPN } : {}),
  };
}

/** ALPN the http listener offers: HTTP/1.1 only (no HTTP/2 yet), so h2-capable clients fall back. */
const HTTP_ALPN = ['http/1.1'] as const;
