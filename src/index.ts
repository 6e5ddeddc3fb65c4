/** Public API for embedding polyproxy and writing resolvers. */
export { PolyproxyError, ResolveError } from './core/errors.ts';
export type { FailureKind, FailureSource, ResolveErrorCode } from './core/errors.ts';
export type { Activity, ColdStart, ConnectionInfo, ConnectionSummary, ResolveContext, Resolver, ResolverModuleExport, Route, RouteCredential, TlsInfo } from './core/resolver.ts';
export { parseEndpoint } from './core/endpoint.ts';
export type { Endpoint } from './core/endpoint.ts';
export { StaticRoutes } from './core/static-routes.ts';
export { SsrfGuard, classifyAddress } from './core/ssrf-guard.ts';
export { ConfigError, loadConfigFile, parseConfig } from './config/load.ts';
export type { Config, ConfigInput, ListenerConfig } from './config/schema.ts';
export { startProxy } from './supervisor/proxy.ts';
export type { RunningProxy, BoundListener } from './supervisor/proxy.ts';
export { startPgDemoServer } from './demo/pg-demo-server.ts';
// FastCGI client library (issue #7): `import { fastcgi } from 'polyproxy'` → fastcgi.Proxy, fastcgi.RoundRobin...; main classes also by their prefixed names.
export * as fastcgi from './fastcgi/index.ts';
export { FastCgiClient, FastCgiClusterProxy, FastCgiError, FastCgiProxy, FastCgiResponse, FastCgiServer } from './fastcgi/index.ts';
export type { ClientOptions as FastCgiClientOptions, ClusterResult as FastCgiClusterResult, ClusterStatus as FastCgiClusterStatus, FpmProcessStatus, FpmStatus } from './fastcgi/index.ts';
