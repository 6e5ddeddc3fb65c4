/**
 * The static resolver: the config file's `routes` table. Exact ids win over
 * `*.domain` wildcards; among wildcards the longest suffix wins. Built once
 * per config load and never mutated (reload swaps the whole table).
 */
import { readFileSync } from 'node:fs';
import type { BackendProtocol, BackendTls, Resolver, Route } from './resolver.ts';
import { parseEndpoint } from './endpoint.ts';

export type StaticRouteValue =
  | string
  | readonly string[]
  | { primary: string; replicas?: readonly string[] }
  /** An endpoint (or a balanced list) with the HTTP version its backends speak (Route.protocol) and TLS to them (Route.tls; `ca` is a file here). */
  | { endpoint: string | readonly string[]; protocol?: BackendProtocol; tls?: true | StaticBackendTls };

/** Route.tls as the config file writes it: `ca` names a PEM file, read when the table is built. */
export interface StaticBackendTls {
  readonly servername?: string | undefined;
  readonly ca?: string | undefined;
  readonly rejectUnauthorized?: boolean | undefined;
}

export class StaticRoutes implements Resolver {
  readonly #exact = new Map<string, Route>();
  /** [suffix including the leading dot, route], longest suffix first. */
  readonly #wildcards: Array<[string, Route]> = [];

  constructor(table: Readonly<Record<string, StaticRouteValue>>) {
    for (const [key, value] of Object.entries(table)) {
      const route = toRoute(key, value);
      const id = key.toLowerCase();
      if (id.startsWith('*.')) this.#wildcards.push([id.slice(1), route]);
      else this.#exact.set(id, route);
    }
    this.#wildcards.sort((a, b) => b[0].length - a[0].length);
  }

  get size(): number {
    return this.#exact.size + this.#wildcards.length;
  }

  resolve(resourceId: string): Route | null {
    const id = resourceId.toLowerCase();
    const exact = this.#exact.get(id);
    if (exact !== undefined) return exact;
    for (const [suffix, route] of this.#wildcards) {
      // "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com".
      if (id.length > suffix.length && id.endsWith(suffix)) return route;
    }
    return null;
  }
}

function toRoute(key: string, value: StaticRouteValue): Route {
  const validate = (endpoint: string): string => {
    try {
      parseEndpoint(endpoint);
    } catch (err) {
      throw new TypeError(`routes.${key}: ${(err as Error).message}`, { cause: err });
    }
    return endpoint;
  };
  if (typeof value === 'string') return { endpoint: validate(value) };
  if (Array.isArray(value)) {
    if (value.length === 0) throw new TypeError(`routes.${key}: an endpoint list needs at least one endpoint`);
    return { endpoint: value.map(validate) };
  }
  if ('endpoint' in value) {
    const endpoint = value.endpoint;
    let route: Route;
    if (typeof endpoint === 'string') route = { endpoint: validate(endpoint) };
    else if (endpoint.length === 0) throw new TypeError(`routes.${key}: an endpoint list needs at least one endpoint`);
    else route = { endpoint: endpoint.map(validate) };
    if (value.protocol !== undefined) route.protocol = value.protocol;
    if (value.tls !== undefined) route.tls = backendTls(key, value.tls);
    return route;
  }
  const { primary, replicas } = value as { primary: string; replicas?: readonly string[] };
  return replicas === undefined ? { endpoint: validate(primary) } : { endpoint: validate(primary), replicas: replicas.map(validate) };
}

function backendTls(key: string, tls: true | StaticBackendTls): true | BackendTls {
  if (tls === true) return true;
  const out: { servername?: string; ca?: string; rejectUnauthorized?: boolean } = {};
  if (tls.servername !== undefined) out.servername = tls.servername;
  if (tls.rejectUnauthorized !== undefined) out.rejectUnauthorized = tls.rejectUnauthorized;
  if (tls.ca !== undefined) {
    try {
      out.ca = readFileSync(tls.ca, 'utf8');
    } catch (err) {
      throw new TypeError(`routes.${key}.tls.ca: cannot read ${tls.ca}: ${(err as Error).message}`, { cause: err });
    }
  }
  return out;
}
