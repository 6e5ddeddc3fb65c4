/**
 * What `polyproxy check` (and a start, before it binds anything) verifies
 * beyond the schema: everything a start would otherwise die on with a stack
 * trace — certificate files readable, parseable and matching their keys,
 * the resolver module loading — and ports two listeners (or a listener and
 * the admin server) would both bind. Warnings are what runs but will not
 * work: static routes the SSRF guard refuses at run time.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import tls from 'node:tls';
import type { Endpoint } from '../core/endpoint.ts';
import { parseEndpoint } from '../core/endpoint.ts';
import { SsrfGuard } from '../core/ssrf-guard.ts';
import type { HostLookup } from '../core/ssrf-guard.ts';
import { loadResolverModule } from '../resolvers/module.ts';
import type { Config, TlsConfig } from './schema.ts';

export interface CheckResult {
  /** One line each, naming the field: a start would fail on these. */
  readonly problems: string[];
  /** One line each, naming the field: runs, but will not work as written. */
  readonly warnings: string[];
}

export interface CheckOptions {
  /** Resolve route host names to check them against the guard (`check`); a start skips the lookups (the guard checks at run time). */
  readonly lookup?: HostLookup | null;
}

export async function checkConfig(config: Config, options: CheckOptions = {}): Promise<CheckResult> {
  const problems: string[] = [];
  const warnings: string[] = [];
  await Promise.all(config.listeners.map((listener, i) => (listener.tls === undefined ? null : checkTls(listener.tls, `listeners.${i}.tls`, problems))));
  if (config.resolver.module !== undefined) {
    try {
      await loadResolverModule(config.resolver.module, config);
    } catch (err) {
      problems.push((err as Error).message.startsWith('resolver.module') ? (err as Error).message : `resolver.module: ${(err as Error).message}`);
    }
  }
  problems.push(...portClashes(config));
  problems.push(...unsplitReplicas(config));
  warnings.push(...(await refusedRoutes(config, options.lookup === undefined ? undefined : options.lookup)));
  return { problems, warnings };
}

async function readable(file: string, field: string, problems: string[]): Promise<Buffer | null> {
  try {
    return await readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    problems.push(`${field}: cannot read ${file}${code === undefined ? '' : ` (${code})`}`);
    return null;
  }
}

/** Every cert/key pair (the default and each SNI entry) read, parsed and matched, as a start builds them. */
async function checkTls(config: TlsConfig, field: string, problems: string[]): Promise<void> {
  const ca = config.ca === undefined ? undefined : await readable(config.ca, `${field}.ca`, problems);
  const pairs = [{ cert: config.cert, key: config.key, at: field }, ...(config.certificates ?? []).map((entry, i) => ({ cert: entry.cert, key: entry.key, at: `${field}.certificates.${i}` }))];
  for (const pair of pairs) {
    const cert = await readable(pair.cert, `${pair.at}.cert`, problems);
    const key = await readable(pair.key, `${pair.at}.key`, problems);
    if (cert === null || key === null || ca === null) continue;
    try {
      tls.createSecureContext({ cert, key, ...(ca === undefined ? {} : { ca }) });
    } catch (err) {
      problems.push(`${pair.at}.cert: ${pair.cert} with key ${pair.key}: ${describeTlsError(err as Error)}`);
    }
  }
}

function describeTlsError(err: Error): string {
  const text = err.message;
  if (/key values mismatch/i.test(text)) return 'the key does not belong to this certificate (key values mismatch)';
  if (/no start line|PEM|asn1|bad base64|DECODER/i.test(text)) return `not a PEM certificate/key pair (${text})`;
  return text;
}

const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '']);

/** Same port on overlapping addresses (a wildcard overlaps everything); the schema already refuses identical host:port pairs. */
function portClashes(config: Config): string[] {
  const binds = config.listeners.map((listener, i) => ({ field: `listeners.${i}.port`, host: listener.host, port: listener.port }));
  if (config.admin !== undefined) binds.push({ field: 'admin.port', host: config.admin.host, port: config.admin.port });
  const clashes: string[] = [];
  binds.forEach((a, i) => {
    if (a.port === 0) return;
    const b = binds.slice(0, i).find((other) => other.port === a.port && other.host !== a.host && (WILDCARD_HOSTS.has(other.host) || WILDCARD_HOSTS.has(a.host)));
    if (b !== undefined) clashes.push(`${a.field}: port ${a.port} on ${a.host} overlaps ${b.field} (${b.host}:${b.port}); both cannot bind it`);
    else if (a.field === 'admin.port') {
      const same = binds.slice(0, i).find((other) => other.port === a.port && other.host === a.host);
      if (same !== undefined) clashes.push(`admin.port: port ${a.port} on ${a.host} is also ${same.field}`);
    }
  });
  return clashes;
}

/** Static routes whose backends the SSRF guard will refuse when a client asks for them (listener `backend`s skip the guard). */
async function refusedRoutes(config: Config, lookup: HostLookup | null | undefined): Promise<string[]> {
  if (config.security.allowPrivateBackends) return [];
  const guard = lookup === undefined ? new SsrfGuard(config.security) : lookup === null ? null : new SsrfGuard(config.security, lookup);
  const literalGuard = new SsrfGuard(config.security);
  const warnings: string[] = [];
  for (const [key, value] of Object.entries(config.routes)) {
    const endpoints = typeof value === 'string' ? [value] : Array.isArray(value) ? value : 'primary' in value ? [value.primary, ...(value.replicas ?? [])] : typeof value.endpoint === 'string' ? [value.endpoint] : value.endpoint;
    for (const text of endpoints) {
      const endpoint: Endpoint = parseEndpoint(text);
      // IP literals and unix paths are checked without a lookup, always.
      const use = endpoint.type === 'unix' || isIP(endpoint.host) !== 0 ? literalGuard : guard;
      if (use === null) continue;
      try {
        await use.check(endpoint);
      } catch (err) {
        const e = err as { code?: string; message: string };
        warnings.push(`routes.${key}: ${e.message}${e.code === 'PP_ERR_FORBIDDEN' ? ' (refused at run time)' : ''}`);
      }
    }
  }
  return warnings;
}

/**
 * Static routes with replicas that a postgres or mysql listener would send
 * wholly to the primary: replicas are used only by the read/write split,
 * which needs proxy-side auth (the proxy opens the primary and replica
 * connections itself) and `readWriteSplit`. Refused rather than ignored
 * (issue 17). Listeners with a fixed `backend` do not route.
 */
function unsplitReplicas(config: Config): string[] {
  const problems: string[] = [];
  for (const [key, value] of Object.entries(config.routes)) {
    if (typeof value !== 'object' || Array.isArray(value) || !('primary' in value) || (value.replicas ?? []).length === 0) continue;
    config.listeners.forEach((listener, i) => {
      if ((listener.protocol !== 'postgres' && listener.protocol !== 'mysql') || listener.backend !== undefined) return;
      const fields = listener as { auth?: unknown; readWriteSplit?: unknown };
      const which = `listeners.${i}${listener.name === undefined ? '' : ` (${listener.name})`}`;
      if (fields.auth === undefined) {
        problems.push(`routes.${key}: has replicas, but ${which} has no proxy-side auth: only the read/write split uses replicas, and it needs the proxy to log in to the primary and the replicas itself (add auth, ${listener.protocol === 'postgres' ? 'pool and ' : ''}readWriteSplit to the listener, or drop the replicas)`);
      } else if (fields.readWriteSplit === undefined) {
        problems.push(`routes.${key}: has replicas, but ${which} has no readWriteSplit: its clients would use the primary only (add readWriteSplit to the listener, or drop the replicas)`);
      }
    });
  }
  return problems;
}
