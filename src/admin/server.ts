/**
 * The admin HTTP server (issue #8): liveness, readiness, Prometheus metrics,
 * the stats API, route-cache purge and the live dashboard, all served from
 * an `AdminSource` (the proxy itself, or the supervisor aggregating every
 * worker). It never touches the data path: each request asks the source.
 *
 *   GET  /                      dashboard (HTML, polls /api/stats every second)
 *   GET  /healthz               200 `ok` while the process serves HTTP
 *   GET  /readyz                200 `ready` once every listener is bound, else 503
 *   GET  /metrics               Prometheus text exposition
 *   GET  /api/stats             ProxyStats as JSON
 *   GET  /api/history           the last 15 minutes of samples (admin/history.ts) as JSON
 *   POST /api/purge/<id>        drops <id> (URL-decoded) from the routing caches → {"purged": n}
 *
 * HEAD works wherever GET does. Nothing is cacheable (`Cache-Control:
 * no-store`). Unknown paths get 404 JSON, a known path with another method
 * 405 with `Allow`. A source that throws gets 500 JSON and a log line; the
 * server stays up.
 *
 * Safety. The server binds where it is configured (127.0.0.1 by default)
 * and has no authentication, so whoever reaches the port may read stats and
 * purge. What it must also stop is a web page in the operator's browser
 * purging through it (CSRF: an HTML form or a no-cors fetch can POST to
 * 127.0.0.1 from any site). A purge is therefore refused unless
 *   - its `Content-Type` is `application/json` (415 otherwise): a cross-site
 *     page cannot send that without a CORS preflight, and this server answers
 *     every OPTIONS with 405 and no `Access-Control-Allow-*`, so the browser
 *     never sends the POST; and
 *   - `Sec-Fetch-Site`, when present, is `same-origin` or `none`, and
 *     `Origin`, when present, names this server's own `Host` (403
 *     otherwise): modern browsers label every request, and another service
 *     on a different port of 127.0.0.1 is "same-site", not "same-origin".
 * Scripts and curl send no Origin or Sec-Fetch-Site, only the content type:
 * `curl -X POST -H 'Content-Type: application/json' http://127.0.0.1:9900/api/purge/shop`.
 * The dashboard page forbids framing and anything but its own inline script
 * (Content-Security-Policy), so its purge form cannot be clickjacked either.
 */
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { log as rootLog } from '../core/logger.ts';
import type { Logger } from '../core/logger.ts';
import { DASHBOARD_CSP, DASHBOARD_HTML } from './dashboard.ts';
import { DEFAULT_HISTORY_INTERVAL_MS, HISTORY_WINDOW_MS, startHistory } from './history.ts';
import type { History } from './history.ts';
import type { AdminSource } from './source.ts';

export interface AdminServerOptions {
  /** Address to bind; default 127.0.0.1 (loopback only). */
  readonly host?: string;
  /** Port to bind; 0 picks a free one (see the address `listen()` resolves with). */
  readonly port: number;
  /**
   * Host names (the Host header, port stripped) requests may carry besides IP
   * literals and `localhost`. Unset: any name when bound to a non-loopback
   * address (a scraper may use a service name), none when bound to loopback —
   * so a DNS-rebinding page cannot reach a loopback admin server.
   */
  readonly allowedHosts?: readonly string[];
  readonly log?: Logger;
  /** How often the 15-minute history behind GET /api/history samples the source (admin/history.ts); default 5000. */
  readonly historyIntervalMs?: number;
}

export interface AdminServer {
  /** Binds host:port; resolves with the bound address, rejects on a bind error (EADDRINUSE...). */
  listen(): Promise<AddressInfo>;
  /**
   * Stops accepting, closes idle keep-alive connections (dashboards hold
   * some) and resolves once the in-flight requests ended — or after
   * CLOSE_GRACE_MS, when the rest are cut.
   */
  close(): Promise<void>;
  /** The bound address, null before `listen()` resolved and after `close()`. */
  readonly address: AddressInfo | null;
}

export const DEFAULT_ADMIN_HOST = '127.0.0.1';
const CLOSE_GRACE_MS = 1000;
const PURGE_PREFIX = '/api/purge/';
const GET_ALLOW = 'GET, HEAD';
const TEXT = 'text/plain; charset=utf-8';
const JSON_TYPE = 'application/json; charset=utf-8';
const HTML = 'text/html; charset=utf-8';

type GetRoute = (source: AdminSource) => Promise<Reply> | Reply;

interface Reply {
  readonly status: number;
  readonly type: string;
  readonly body: string;
  readonly headers?: Readonly<Record<string, string>>;
}

function json(status: number, value: unknown, headers?: Readonly<Record<string, string>>): Reply {
  return { status, type: JSON_TYPE, body: JSON.stringify(value), headers };
}

const GET_ROUTES: ReadonlyMap<string, GetRoute> = new Map<string, GetRoute>([
  ['/', () => ({ status: 200, type: HTML, body: DASHBOARD_HTML, headers: { 'Content-Security-Policy': DASHBOARD_CSP, 'X-Frame-Options': 'DENY', 'Referrer-Policy': 'no-referrer' } })],
  ['/healthz', () => ({ status: 200, type: TEXT, body: 'ok' })],
  ['/readyz', (source) => (source.ready() ? { status: 200, type: TEXT, body: 'ready' } : { status: 503, type: TEXT, body: 'not ready' })],
  ['/metrics', async (source) => ({ status: 200, type: Registry.PROMETHEUS_CONTENT_TYPE, body: await source.metrics() })],
  ['/api/stats', async (source) => json(200, await source.stats())],
]);

/**
 * Why a purge request is refused (status and message), or null when it may
 * proceed. See the module comment for the rule.
 */
export function purgeRefusal(req: IncomingMessage): { status: number; error: string } | null {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') {
    return { status: 403, error: `cross-site purge refused (Sec-Fetch-Site: ${site})` };
  }
  const origin = req.headers.origin;
  if (origin !== undefined && !originIsHost(origin, req.headers.host)) {
    return { status: 403, error: 'cross-origin purge refused (Origin does not match Host)' };
  }
  const type = (req.headers['content-type'] ?? '').split(';', 1)[0]?.trim().toLowerCase();
  if (type !== 'application/json') {
    return { status: 415, error: 'a purge must be sent with Content-Type: application/json' };
  }
  return null;
}

function originIsHost(origin: string, host: string | undefined): boolean {
  if (host === undefined || origin === 'null') return false;
  try {
    const url = new URL(origin);
    return url.protocol === 'http:' && url.host === new URL(`http://${host}`).host;
  } catch {
    return false;
  }
}

function send(res: ServerResponse, reply: Reply): void {
  const body = Buffer.from(reply.body, 'utf8');
  res.writeHead(reply.status, {
    'Content-Type': reply.type,
    'Content-Length': String(body.length),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    ...reply.headers,
  });
  // For HEAD, node:http sends the headers (Content-Length included) and drops the body.
  res.end(body);
}

/** The request path without query or fragment. */
function pathOf(url: string | undefined): string {
  const raw = url ?? '/';
  const end = raw.search(/[?#]/);
  return end === -1 ? raw : raw.slice(0, end);
}

async function route(req: IncomingMessage, source: AdminSource, log: Logger, history: History): Promise<Reply> {
  const method = req.method ?? 'GET';
  const path = pathOf(req.url);
  if (path === '/api/history') {
    if (method !== 'GET' && method !== 'HEAD') return json(405, { error: 'method not allowed' }, { Allow: GET_ALLOW });
    return json(200, history.snapshot());
  }

  if (path.startsWith(PURGE_PREFIX)) {
    if (method !== 'POST') return json(405, { error: 'method not allowed' }, { Allow: 'POST' });
    const refusal = purgeRefusal(req);
    if (refusal !== null) {
      log.warn({ origin: req.headers.origin, secFetchSite: req.headers['sec-fetch-site'], contentType: req.headers['content-type'], remote: req.socket.remoteAddress }, 'admin purge refused');
      return json(refusal.status, { error: refusal.error });
    }
    let resourceId: string;
    try {
      resourceId = decodeURIComponent(path.slice(PURGE_PREFIX.length));
    } catch {
      return json(400, { error: 'malformed percent-encoding in the resource id' });
    }
    if (resourceId === '') return json(400, { error: 'missing resource id: POST /api/purge/<resourceId>' });
    const purged = await source.purge(resourceId);
    log.info({ resourceId, purged }, 'admin purge');
    return json(200, { purged });
  }

  const get = GET_ROUTES.get(path);
  if (get === undefined) return json(404, { error: 'not found' });
  if (method !== 'GET' && method !== 'HEAD') return json(405, { error: 'method not allowed' }, { Allow: GET_ALLOW });
  return get(source);
}

/** Decides whether a request's Host header names this server (DNS-rebinding guard). */
type HostCheck = (host: string | undefined) => boolean;

export function hostCheck(bindHost: string, allowedHosts: readonly string[] | undefined): HostCheck {
  const listed = new Set((allowedHosts ?? []).map((h) => h.toLowerCase()));
  const loopbackOnly = bindHost === 'localhost' || bindHost === '::1' || bindHost.startsWith('127.');
  if (allowedHosts === undefined && !loopbackOnly) return () => true;
  return (header) => {
    if (header === undefined) return true; // HTTP/1.0 without Host: not a browser
    const name = hostName(header);
    return isIP(name) !== 0 || name === 'localhost' || listed.has(name);
  };
}

function hostName(header: string): string {
  const text = header.trim().toLowerCase();
  if (text.startsWith('[')) return text.slice(1, text.indexOf(']') < 0 ? undefined : text.indexOf(']'));
  const colon = text.lastIndexOf(':');
  return colon < 0 ? text : text.slice(0, colon);
}

async function handle(req: IncomingMessage, res: ServerResponse, source: AdminSource, log: Logger, hostAllowed: HostCheck, history: History): Promise<void> {
  // No route reads a body: discard it so keep-alive connections stay usable.
  req.resume();
  let reply: Reply;
  if (!hostAllowed(req.headers.host)) {
    log.warn({ host: req.headers.host, url: req.url }, 'admin request refused: unknown Host (see admin.allowedHosts)');
    send(res, json(421, { error: 'unknown Host: add it to admin.allowedHosts' }));
    return;
  }
  try {
    reply = await route(req, source, log, history);
  } catch (err) {
    log.error({ err, method: req.method, url: req.url }, 'admin request failed');
    reply = json(500, { error: 'internal error' });
  }
  if (res.headersSent || res.destroyed) return;
  send(res, reply);
}

export function createAdminServer(source: AdminSource, options: AdminServerOptions): AdminServer {
  const host = options.host ?? DEFAULT_ADMIN_HOST;
  const log = options.log ?? rootLog.child({ component: 'admin' });
  let bound: AddressInfo | null = null;

  const hostAllowed = hostCheck(host, options.allowedHosts);
  // Sampled from listen() to close(); until then an empty history.
  let history: History = { snapshot: () => ({ intervalMs: options.historyIntervalMs ?? DEFAULT_HISTORY_INTERVAL_MS, windowMs: HISTORY_WINDOW_MS, samples: [] }), stop: () => {} };
  const server = http.createServer((req, res) => {
    void handle(req, res, source, log, hostAllowed, history);
  });

  return {
    get address() {
      return bound;
    },
    listen() {
      return new Promise<AddressInfo>((resolve, reject) => {
        const onError = (err: Error): void => reject(err);
        server.once('error', onError);
        server.listen(options.port, host, () => {
          server.off('error', onError);
          bound = server.address() as AddressInfo;
          history = startHistory(source, options.historyIntervalMs ?? DEFAULT_HISTORY_INTERVAL_MS);
          log.info({ host: bound.address, port: bound.port }, 'admin server listening');
          resolve(bound);
        });
      });
    },
    close() {
      history.stop();
      if (!server.listening) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const grace = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
        grace.unref();
        server.close(() => {
          clearTimeout(grace);
          bound = null;
          resolve();
        });
        server.closeIdleConnections();
      });
    },
  };
}
