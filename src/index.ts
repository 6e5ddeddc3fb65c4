/** Public API for embedding polyproxy and writing resolvers. */
export { PolyproxyError, ResolveError } from './core/errors.ts';
export type { FailureKind, FailureSource, ResolveErrorCode } from './core/errors.ts';
export type { Activity, ColdStart, ConnectionInfo, ConnectionSummary, ResolveContext, Resolver, ResolverModuleExport, Route, TlsInfo } from './core/resolver.ts';
export { parseEndpoint } from './core/endpoint.ts';
export type { Endpoint } from './core/endpoint.ts';
export { StaticRoutes } from './core/static-routes.ts';
export { SsrfGuard, classifyAddress } from './core/ssrf-guard.ts';
export { ConfigError, loadConfigFile, parseConfig } from './config/load.ts';
export type { Config, ConfigInput, ListenerConfig } from './config/schema.ts';
export { startProxy } from './supervisor/proxy.ts';
export type { RunningProxy, BoundListener } from './supervisor/proxy.ts';
export { startPgDemoServer } from './demo/pg-demo-server.ts';
