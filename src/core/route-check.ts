/**
 * A resolver's answer is tenant input (DESIGN.md §2): the router checks
 * every field of a Route once, when it receives it, and keeps a plain copy.
 * Each field is read exactly once (a getter or proxy trap runs here, inside
 * the router's try, not later in the listener or a timer), so what was
 * checked is what is used. A cache hit reuses the copy without a check.
 *
 * A hand check, not zod: it runs on every cache miss, copies as it reads,
 * and costs a few property reads.
 */
import { PolyproxyError } from './errors.ts';
import { checkRouteLimits } from './limits/config.ts';
import type { BackendTls, ColdStart, Route, RouteCredential } from './resolver.ts';
import { adopt, describeError, thenOf } from './tenant-code.ts';

/** More endpoints than this in one route (or its replicas) is a resolver bug, not a pool. */
export const MAX_ROUTE_ENDPOINTS = 256;
/** Longer than any host:port, [v6]:port or unix socket path (sun_path is 108 bytes). */
export const MAX_ENDPOINT_LENGTH = 512;
/** setTimeout's ceiling: a longer connect timeout would fire at once. */
const MAX_TIMEOUT_MS = 2_147_483_647;

/** The checked copy of a resolver's answer. Throws INTERNAL naming the field when a field is bad. */
export function checkRoute(answer: unknown, source: string, resourceId: string): Route {
  let field = 'route';
  const bad = (why: string): PolyproxyError => new PolyproxyError('INTERNAL', `resolver "${source}" returned a bad route for "${resourceId}": ${field} ${why}`, { resourceId });
  try {
    if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) throw bad(`must be an object, got ${kindOf(answer)}`);
    const raw = answer as Record<string, unknown>;
    field = 'endpoint';
    const endpointValue = raw.endpoint;
    const endpoint = typeof endpointValue === 'string' ? checkEndpoint(endpointValue, bad) : checkEndpoints(endpointValue, bad, true);
    const route: Route = { endpoint };
    field = 'replicas';
    const replicas = raw.replicas;
    if (replicas !== undefined && replicas !== null) route.replicas = checkEndpoints(replicas, bad, false);
    field = 'timeoutMs';
    const timeoutMs = raw.timeoutMs;
    if (timeoutMs !== undefined && timeoutMs !== null) {
      if (typeof timeoutMs !== 'number' || !(timeoutMs > 0 && timeoutMs <= MAX_TIMEOUT_MS)) throw bad(`must be a number of milliseconds in (0, ${MAX_TIMEOUT_MS}], got ${kindOf(timeoutMs)}`);
      route.timeoutMs = timeoutMs;
    }
    field = 'ttlMs';
    const ttlMs = raw.ttlMs;
    if (ttlMs !== undefined && ttlMs !== null) {
      if (typeof ttlMs !== 'number' || !(ttlMs >= 0 && ttlMs < Infinity)) throw bad(`must be a finite number of milliseconds >= 0, got ${kindOf(ttlMs)}`);
      route.ttlMs = ttlMs;
    }
    field = 'metadata';
    const metadata = raw.metadata;
    if (metadata !== undefined && metadata !== null) {
      const proto = typeof metadata === 'object' ? (Object.getPrototypeOf(metadata) as unknown) : undefined;
      if (proto !== Object.prototype && proto !== null) throw bad(`must be a plain object, got ${kindOf(metadata)}`);
      route.metadata = { ...(metadata as Record<string, unknown>) };
    }
    field = 'credentials';
    const credentials = raw.credentials;
    if (credentials !== undefined && credentials !== null) route.credentials = checkCredentials(credentials, (at, why) => {
      field = `credentials${at}`;
      return bad(why);
    });
    field = 'protocol';
    const protocol = raw.protocol;
    if (protocol !== undefined && protocol !== null) {
      if (protocol !== 'h1' && protocol !== 'h2') throw bad(`must be "h1" or "h2", got ${kindOf(protocol)}`);
      route.protocol = protocol;
    }
    field = 'tls';
    const tls = raw.tls;
    if (tls !== undefined && tls !== null && tls !== false) {
      if (route.protocol !== 'h2') throw bad('needs protocol "h2" (TLS to backends is HTTP/2 only)');
      route.tls = checkBackendTls(tls, (at, why) => {
        field = `tls${at}`;
        return bad(why);
      });
    }
    field = 'limits';
    const limits = raw.limits;
    if (limits !== undefined && limits !== null) {
      try {
        route.limits = checkRouteLimits(limits);
      } catch (err) {
        throw bad(`are invalid: ${(err as Error).message}`);
      }
    }
    field = 'coldStart';
    const coldStart = raw.coldStart;
    if (coldStart !== undefined && coldStart !== null) {
      if (typeof coldStart !== 'object') throw bad(`must be an object with wake(), got ${kindOf(coldStart)}`);
      field = 'coldStart.wake';
      const wake = (coldStart as { wake?: unknown }).wake;
      if (typeof wake !== 'function') throw bad(`must be a function, got ${kindOf(wake)}`);
      route.coldStart = tenantWake(coldStart, wake as () => unknown);
    }
    return route;
  } catch (err) {
    if (err instanceof PolyproxyError) throw err;
    // A getter or proxy trap threw while the field was read.
    throw bad(`could not be read: ${describeError(err)}`);
  }
}

/** Route.tls: `true` or `{ servername?, ca?, rejectUnauthorized? }`, copied. */
function checkBackendTls(value: unknown, bad: (at: string, why: string) => PolyproxyError): true | BackendTls {
  if (value === true) return true;
  const proto = typeof value === 'object' && value !== null ? (Object.getPrototypeOf(value) as unknown) : undefined;
  if (proto !== Object.prototype && proto !== null) throw bad('', `must be true or an object, got ${kindOf(value)}`);
  const raw = value as Record<string, unknown>;
  const out: { servername?: string; ca?: string; rejectUnauthorized?: boolean } = {};
  for (const key of Object.keys(raw)) if (key !== 'servername' && key !== 'ca' && key !== 'rejectUnauthorized') throw bad(`.${key}`, 'is not a field of tls (servername, ca, rejectUnauthorized)');
  const servername = raw.servername;
  if (servername !== undefined) {
    if (typeof servername !== 'string' || servername === '' || servername.length > 253) throw bad('.servername', `must be a host name, got ${kindOf(servername)}`);
    out.servername = servername;
  }
  const ca = raw.ca;
  if (ca !== undefined) {
    if (typeof ca !== 'string' || !ca.includes('-----BEGIN CERTIFICATE-----')) throw bad('.ca', `must be PEM certificate text, got ${kindOf(ca)}`);
    out.ca = ca;
  }
  const reject = raw.rejectUnauthorized;
  if (reject !== undefined) {
    if (typeof reject !== 'boolean') throw bad('.rejectUnauthorized', `must be a boolean, got ${kindOf(reject)}`);
    out.rejectUnauthorized = reject;
  }
  return out;
}

/** More users than this in one route's credentials is a resolver bug. */
export const MAX_ROUTE_CREDENTIALS = 10_000;
const SECRET_FIELDS = ['password', 'scramSecret', 'backendPassword'] as const;

/** `bad(at, why)`: `at` is the path under `credentials` ('' or '.user' or '.user.field'). */
function checkCredentials(value: unknown, bad: (at: string, why: string) => PolyproxyError): Record<string, RouteCredential> {
  const proto = typeof value === 'object' && value !== null ? (Object.getPrototypeOf(value) as unknown) : undefined;
  if (proto !== Object.prototype && proto !== null) throw bad('', `must be a plain object of user name to { password } or { scramSecret }, got ${kindOf(value)}`);
  const names = Object.keys(value as object);
  if (names.length > MAX_ROUTE_CREDENTIALS) throw bad('', `must list at most ${MAX_ROUTE_CREDENTIALS} users, got ${names.length}`);
  const copy: Record<string, RouteCredential> = Object.create(null) as Record<string, RouteCredential>;
  for (const name of names) {
    const entry = (value as Record<string, unknown>)[name];
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw bad(`.${name}`, `must be an object, got ${kindOf(entry)}`);
    const out: { password?: string; scramSecret?: string; backendPassword?: string } = {};
    for (const field of SECRET_FIELDS) {
      const secret = (entry as Record<string, unknown>)[field];
      if (secret === undefined || secret === null) continue;
      if (typeof secret !== 'string' || secret.length === 0) throw bad(`.${name}.${field}`, `must be a non-empty string, got ${typeof secret === 'string' ? 'an empty string' : kindOf(secret)}`);
      out[field] = secret;
    }
    if ((out.password === undefined) === (out.scramSecret === undefined)) throw bad(`.${name}`, `must have exactly one of password and scramSecret`);
    copy[name] = out;
  }
  return copy;
}

function checkEndpoint(value: unknown, bad: (why: string) => PolyproxyError): string {
  if (typeof value !== 'string') throw bad(`must be a string or a list of strings, got ${kindOf(value)} in it`);
  if (value.length === 0 || value.length > MAX_ENDPOINT_LENGTH) throw bad(`must be 1 to ${MAX_ENDPOINT_LENGTH} characters long, got ${value.length}`);
  return value;
}

function checkEndpoints(value: unknown, bad: (why: string) => PolyproxyError, required: boolean): string[] {
  if (!Array.isArray(value)) throw bad(`must be ${required ? 'a string or ' : ''}a list of strings, got ${kindOf(value)}`);
  const length = (value as unknown[]).length;
  if ((required && length === 0) || length > MAX_ROUTE_ENDPOINTS) throw bad(`must list ${required ? 1 : 0} to ${MAX_ROUTE_ENDPOINTS} endpoints, got ${length}`);
  const copy: string[] = [];
  for (let i = 0; i < length; i++) copy.push(checkEndpoint((value as unknown[])[i], bad));
  return copy;
}

/** wake() called on the user's object, as a native promise that rejects with a readable Error (cold-start.ts logs its message). */
function tenantWake(owner: object, wake: () => unknown): ColdStart {
  return {
    wake: () => {
      let woken: unknown;
      try {
        woken = wake.call(owner);
        const then = thenOf(woken);
        if (then === undefined) return Promise.resolve();
        return adopt('wake', woken as object, then).then(undefined, (err: unknown) => {
          throw new Error(describeError(err));
        }) as Promise<void>;
      } catch (err) {
        return Promise.reject(new Error(describeError(err)));
      }
    },
  };
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
    case 'number':
      return String(value);
    case 'object':
      return 'an object';
    default:
      return `a ${typeof value}`;
  }
}
