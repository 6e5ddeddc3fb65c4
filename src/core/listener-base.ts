/**
 * What every listener keeps, whether it runs core's pipeline (listener.ts)
 * or serves its protocol on its own server (server-listener.ts: ws-bridge,
 * fastcgi): the counters a scrape reads, failures counted by kind into
 * `polyproxy_errors_total`, and the drain bookkeeping (draining flag, idle
 * waiters).
 */
import type { AddressInfo } from 'node:net';
import type { TlsServerSettings } from './client-connection.ts';
import type { PolyproxyError } from './errors.ts';
import type { Router } from './router.ts';
import { errorsTotal } from './metrics.ts';

/**
 * What the supervisor needs from any listener. Drain: stopAccepting → idle
 * (or destroyAll at the deadline).
 */
export interface ProxyListener {
  readonly name: string;
  /** The config's protocol name: postgres, http, ws-bridge... */
  readonly protocolName: string;
  readonly counters: ListenerCounters;
  /** Open sessions (connections in their opening or relayed). */
  readonly sessions: number;
  /** Bytes [in, out] of sessions still open (the counters hold finished ones). */
  liveBytes?(): [number, number];
  listen(): Promise<AddressInfo>;
  stopAccepting(): Promise<void>;
  idle(): Promise<void>;
  destroyAll(reason: string): void;
  /**
   * Applies a reload's router and certificates to new connections; open
   * sessions keep theirs. A listener without it keeps what it started with
   * until a restart.
   */
  reconfigure?(update: ListenerUpdate): void;
}

/** What a reload hands each running listener for its new connections. */
export interface ListenerUpdate {
  readonly router: Router;
  /** The listener's certificates as the new config names them (null without `tls`). */
  readonly tls: TlsServerSettings | null;
}

/** Read at scrape time (metrics.ts perListener); updated only on rare events, never per chunk. */
export interface ListenerCounters {
  /** Sessions open now. */
  open: number;
  /** Connections accepted (refused ones included). */
  total: number;
  /** Refused at accept: the listener's maxConnections. */
  refused: number;
  /** Failures for a reason other than the client (unroutable, forbidden, backend down...). */
  failed: number;
  bytesIn: number;
  bytesOut: number;
}

export abstract class ListenerBase {
  readonly name: string;
  readonly protocolName: string;
  readonly counters: ListenerCounters = { open: 0, total: 0, refused: 0, failed: 0, bytesIn: 0, bytesOut: 0 };
  #draining = false;
  #idleWaiters: Array<() => void> = [];

  constructor(name: string, protocolName: string) {
    this.name = name;
    this.protocolName = protocolName;
  }

  /** Whatever idle() waits for: connections, upgrades, requests in flight... */
  abstract get sessions(): number;

  get draining(): boolean {
    return this.#draining;
  }

  /** Resolves when no session is left. */
  idle(): Promise<void> {
    if (this.sessions === 0) {
      if (this.#draining) this.drained();
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Metrics for a failure answered to a client: errors by kind, and `failed` unless the client caused it. */
  countFailure(error: PolyproxyError): void {
    errorsTotal.inc({ listener: this.name, protocol: this.protocolName, kind: error.kind });
    if (error.source !== 'client') this.counters.failed++;
  }

  /** stopAccepting() calls it first. */
  protected startDraining(): void {
    this.#draining = true;
  }

  /** Call when a session may have ended: wakes idle() once none is left. */
  protected settle(): void {
    if (this.sessions !== 0) return;
    if (this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
    if (this.#draining) this.drained();
  }

  /** Draining and no session left (may run more than once): release what only sessions needed (backend pools, timers). */
  protected drained(): void {}
}
