/**
 * HTTP/2 backends (routes with `protocol: h2`, every gRPC request): per
 * endpoint, a few long-lived h2c sessions, or h2 over TLS for routes with
 * `tls` (backend-tls.ts; pooled apart per TLS settings) (node:http2 ClientHttp2Session),
 * each carrying many concurrent streams. A stream goes on the first open
 * session with room under the backend's SETTINGS_MAX_CONCURRENT_STREAMS;
 * a new session is opened when all are full (at most `maxSessions` per
 * endpoint, then streams share the least loaded one and nghttp2 queues
 * them). Concurrent first requests wait for one dial instead of each
 * opening its own. Idle sessions close after `idleTimeoutMs`.
 */
import http2 from 'node:http2';
import type { ClientHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { Route } from '../../../core/resolver.ts';
import type { Endpoint } from '../../../core/endpoint.ts';
import type { RouteDecision } from '../../../core/router.ts';
import type { Router } from '../../../core/router.ts';
import { dialFirst } from './dial.ts';
import { tlsKey, upgradeToTls } from './backend-tls.ts';

const kActive = Symbol('polyproxy.h2.active');
const kLabel = Symbol('polyproxy.h2.label');
type PooledSession = ClientHttp2Session & { [kActive]: number; [kLabel]: string };

export interface H2BackendOptions {
  /** Sessions per endpoint before streams share the least loaded one. */
  readonly maxSessions: number;
  readonly idleTimeoutMs: number;
}

export interface Leased {
  readonly session: ClientHttp2Session;
  readonly endpoint: string;
  /** The session carried earlier streams (telemetry's x-proxy-pool). */
  readonly reused: boolean;
}

export class H2Backends {
  readonly #options: H2BackendOptions;
  readonly #sessions = new Map<string, PooledSession[]>();
  readonly #dialing = new Map<string, Promise<PooledSession>>();
  #closed = false;

  constructor(options: H2BackendOptions) {
    this.#options = options;
  }

  /** A session for the decision's endpoints (first candidate with a session, else a dial through the candidates). */
  async lease(decision: RouteDecision, router: Router, timeoutMs: number, keepAliveMs: number): Promise<Leased> {
    const first = decision.candidates[0] as Endpoint;
    const tls = decision.entry.route.tls;
    const suffix = tlsKey(tls);
    const key = suffix === '' ? first.label : first.label + suffix;
    const found = this.#pick(key);
    if (found !== null) return this.#take(found, true);
    let pending = this.#dialing.get(key);
    if (pending === undefined) {
      pending = this.#open(decision.candidates, router, timeoutMs, keepAliveMs, tls, suffix).finally(() => this.#dialing.delete(key));
      this.#dialing.set(key, pending);
      return this.#take(await pending, false);
    }
    const session = await pending;
    return this.#take(this.#pick(session[kLabel]) ?? session, true);
  }

  /** The stream leased on `session` ended. */
  release(session: ClientHttp2Session): void {
    const pooled = session as PooledSession;
    pooled[kActive]--;
    if (pooled[kActive] === 0 && !pooled.closed && !pooled.destroyed) pooled.setTimeout(this.#options.idleTimeoutMs);
  }

  /** Closes every session (the listener closed). */
  close(): void {
    this.#closed = true;
    for (const list of this.#sessions.values()) for (const s of list) s.destroy();
    this.#sessions.clear();
  }

  #take(session: PooledSession, reused: boolean): Leased {
    if (session[kActive] === 0) session.setTimeout(0);
    session[kActive]++;
    return { session, endpoint: session[kLabel], reused };
  }

  /** An open session to `label` with room for a stream; when all are full and no more may be opened, the least loaded. */
  #pick(label: string): PooledSession | null {
    const list = this.#sessions.get(label);
    if (list === undefined) return null;
    let least: PooledSession | null = null;
    for (const s of list) {
      if (s.closed || s.destroyed) continue;
      const max = s.remoteSettings.maxConcurrentStreams ?? 100;
      if (s[kActive] < max) return s;
      if (least === null || s[kActive] < least[kActive]) least = s;
    }
    return list.length >= this.#options.maxSessions ? least : null;
  }

  async #open(candidates: readonly Endpoint[], router: Router, timeoutMs: number, keepAliveMs: number, tls: Route['tls'], suffix: string): Promise<PooledSession> {
    const dialed = await dialFirst(candidates, timeoutMs, keepAliveMs, router.health);
    const endpoint = dialed.endpoint;
    let socket: Socket = dialed.socket;
    // A certificate or ALPN the proxy refuses fails this stream (502 / UNAVAILABLE) but not the
    // endpoint's breaker: it is the route's TLS settings against this server, and another route
    // may reach the same endpoint with other settings.
    if (tls !== undefined) socket = await upgradeToTls(socket, endpoint, tls, timeoutMs);
    const scheme = tls === undefined ? 'http' : 'https';
    const authority = endpoint.type === 'unix' ? `${scheme}://localhost` : `${scheme}://${endpoint.label}`;
    const session = http2.connect(authority, { createConnection: () => socket, settings: { enablePush: false }, peerMaxConcurrentStreams: 1000 }) as PooledSession;
    session[kActive] = 0;
    session[kLabel] = endpoint.label + suffix;
    session.on('error', noop);
    session.on('timeout', sessionOnIdle);
    session.once('close', () => this.#forget(session));
    session.once('goaway', () => this.#forget(session));
    if (this.#closed) session.destroy();
    else {
      let list = this.#sessions.get(session[kLabel]);
      if (list === undefined) {
        list = [];
        this.#sessions.set(session[kLabel], list);
      }
      list.push(session);
    }
    return session;
  }

  #forget(session: PooledSession): void {
    const list = this.#sessions.get(session[kLabel]);
    if (list === undefined) return;
    const at = list.indexOf(session);
    if (at >= 0) list.splice(at, 1);
    if (list.length === 0) this.#sessions.delete(session[kLabel]);
  }
}

function sessionOnIdle(this: PooledSession): void {
  if (this[kActive] === 0) this.close();
}

function noop(): void {}
