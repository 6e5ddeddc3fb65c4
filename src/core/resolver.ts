/**
 * The Resolver contract (DESIGN.md §2): how a resource id becomes a route.
 * A resolver implements only `resolve`; every other hook is optional.
 */

export interface TlsInfo {
  /** SNI name the client asked for, if any. */
  readonly servername: string | undefined;
  /** True when the client presented a certificate signed by the listener's CA. */
  readonly authorized: boolean;
  /** Subject common name of the client certificate, if one was presented. */
  readonly clientCertCN: string | undefined;
}

export interface ResolveContext {
  readonly protocol: string;
  readonly listener: string;
  readonly clientAddress: string;
  readonly clientPort: number;
  readonly tls: TlsInfo | undefined;
  /**
   * Raw TCP listeners routed without a fixed backend: the bytes the client
   * sent first (up to the listener's `firstBytesMax`, within
   * `firstBytesTimeoutMs`), empty when it sent nothing in time (e.g. a
   * server-speaks-first protocol). They are replayed to the backend; do not
   * modify them. Absent for every other protocol and for SNI routing.
   *
   * When present the lookup is per connection: the router neither caches the
   * answer nor shares it with concurrent lookups of the same id (the id is
   * the listener name, the bytes are what tell connections apart).
   */
  readonly firstBytes?: Buffer;
}

export interface ColdStart {
  /** Wakes the sleeping backend; called once per resource however many connections wait. */
  wake(): Promise<void>;
}

import type { TenantLimitsInput } from './limits/config.ts';

export interface Route {
  /** `host:port`, `[v6]:port`, `unix:/path`, or a list balanced round-robin. */
  endpoint: string | readonly string[];
  metadata?: Record<string, unknown>;
  /** Connect timeout for this route, overriding the listener's. */
  timeoutMs?: number;
  /** How long the router may cache this answer, overriding `cache.ttlSeconds`. 0 = do not cache. */
  ttlMs?: number;
  replicas?: readonly string[];
  coldStart?: ColdStart;
  /**
   * The tenant's users and their secrets, for listeners that authenticate
   * clients themselves (postgres `auth`): user name → `{ password }` or
   * `{ scramSecret: "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>" }`,
   * optionally with `backendPassword`. Asked before the listener's own
   * `auth.users` and auth query; other listeners ignore it.
   */
  credentials?: Readonly<Record<string, RouteCredential>>;
  /**
   * How the http listener speaks to this route's backends: 'h1' (default,
   * HTTP/1.1) or 'h2' (HTTP/2: cleartext with prior knowledge, or over TLS
   * with `tls`). gRPC requests use HTTP/2 whatever this says. Other
   * protocols ignore it.
   */
  protocol?: BackendProtocol;
  /**
   * HTTP/2 over TLS to this route's backends (needs `protocol: 'h2'`):
   * ALPN `h2`, SNI, and the backend's certificate verified. `true` or `{}`:
   * system CAs, the endpoint's host as the name. Other protocols ignore it.
   */
  tls?: true | BackendTls;
  /** This tenant's limits (same shape as `limits.tenants.<id>` in the config), over the config's field by field. */
  limits?: TenantLimitsInput;
}

/** One user's secret in Route.credentials: exactly one of password / scramSecret. */
export interface RouteCredential {
  readonly password?: string;
  readonly scramSecret?: string;
  /** Log in to the backend with this password instead of what the client proved. */
  readonly backendPassword?: string;
}

/** How the proxy speaks TLS to a route's backends (Route.tls). */
export interface BackendTls {
  /** SNI server name, and the name the certificate must carry; default: the endpoint's host (no SNI for an IP address). */
  readonly servername?: string;
  /** PEM CA certificate(s) the backend's certificate must chain to, instead of the system's. */
  readonly ca?: string;
  /** false: accept any certificate (tests, never production). Default true. */
  readonly rejectUnauthorized?: boolean;
}

/** A backend's HTTP version (Route.protocol). */
export type BackendProtocol = 'h1' | 'h2';

export interface ConnectionInfo {
  readonly protocol: string;
  readonly listener: string;
  readonly clientAddress: string;
  readonly endpoint: string;
}

export interface ConnectionSummary extends ConnectionInfo {
  readonly bytesIn: number; //  client -> backend
  readonly bytesOut: number; // backend -> client
  readonly durationMs: number;
}

export interface Activity {
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly connections: number;
}

export type ResolveResult = Route | null | undefined;

export interface Resolver {
  /**
   * Called when a resource id is not in the routing cache. Return a Route, or
   * null/undefined (or throw ResolveError('NOT_FOUND')) to let the next source
   * answer. Throw ResolveError with FORBIDDEN / UNAVAILABLE / TIMEOUT to fail
   * the connection with that error.
   */
  resolve(resourceId: string, ctx: ResolveContext): ResolveResult | Promise<ResolveResult>;
  /** Called after the backend connection is established (not awaited). */
  onConnect?(resourceId: string, info: ConnectionInfo): void;
  /** Called once when a proxied session ends, with its byte counts and duration (not awaited). */
  onDisconnect?(resourceId: string, info: ConnectionSummary): void;
  track?(resourceId: string, activity: Activity): void;
  /** Called when the id is purged from the routing cache. */
  purge?(resourceId: string): void;
  stats?(): Record<string, unknown>;
}

/** What a resolver module may default-export. */
export type ResolverModuleExport = Resolver | ((config: unknown) => Resolver | Promise<Resolver>);
