/**
 * One route's replicas as a listener's read/write split sees them: which
 * are up, how far behind the primary each is (a protocol-specific probe,
 * every `lagProbeIntervalMs`), and which one the next read goes to.
 *
 * `pick` is synchronous and allocation-free: it reads the state the last
 * probe round left. A replica is a candidate only when its last probe
 * succeeded, its lag is known and at most `maxReplicaLagMs`, and no session
 * reported it failing since (`markDown`). No candidate: the read goes to
 * the primary (the caller's decision, `pick` returns undefined).
 */
import type { Logger } from '../logger.ts';
import type { ReadWriteSplitSettings } from './config.ts';
import { replicaLagMs, replicaUp } from './metrics.ts';

/**
 * Measures a replica's replay lag in ms; throws (or rejects) when it is down.
 * Must give up when `signal` aborts. A probe that keeps connections open
 * has a `close` method: the set calls it when it closes.
 */
export type LagProbe = ((endpoint: string, signal: AbortSignal) => Promise<number>) & { close?: () => void };

export interface ReplicaSetOptions {
  readonly listener: string;
  readonly route: string;
  readonly replicas: readonly string[];
  readonly settings: ReadWriteSplitSettings;
  readonly probe: LagProbe;
  readonly log: Logger;
  /** Start probing at once (default); false: only `probeNow` probes (unit tests). */
  readonly autoProbe?: boolean;
}

export interface ReplicaStats {
  readonly endpoint: string;
  readonly up: boolean;
  readonly lagMs: number | undefined;
  readonly sessions: number;
}

interface Replica {
  readonly endpoint: string;
  up: boolean;
  lagMs: number | undefined;
  sessions: number;
  /** performance.now() of the last markDown: a probe that started before it does not bring the replica back. */
  downAt: number;
  /** Why it is down (logged once per transition). */
  reason: string;
}

export class ReplicaSet {
  readonly listener: string;
  readonly route: string;
  private readonly replicas: Replica[];
  private readonly byEndpoint = new Map<string, Replica>();
  private readonly settings: ReadWriteSplitSettings;
  private readonly probe: LagProbe;
  private readonly log: Logger;
  private cursor = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private round: Promise<void> | undefined;
  /** Settles after the first probe round (or at once with autoProbe false). */
  readonly ready: Promise<void>;

  constructor(opts: ReplicaSetOptions) {
    this.listener = opts.listener;
    this.route = opts.route;
    this.settings = opts.settings;
    this.probe = opts.probe;
    this.log = opts.log;
    this.replicas = opts.replicas.map((endpoint) => ({ endpoint, up: false, lagMs: undefined, sessions: 0, downAt: -Infinity, reason: 'not probed yet' }));
    for (const r of this.replicas) {
      this.byEndpoint.set(r.endpoint, r);
      this.publish(r);
    }
    this.ready = opts.autoProbe === false ? Promise.resolve() : this.probeNow().then(() => this.schedule());
  }

  /** A healthy replica within maxReplicaLagMs, by the balance policy; undefined = use the primary. */
  pick(): string | undefined {
    const list = this.replicas;
    const n = list.length;
    const max = this.settings.maxReplicaLagMs;
    const least = this.settings.balance === 'least-connections';
    let best: Replica | undefined;
    for (let i = 0; i < n; i++) {
      const r = list[(this.cursor + i) % n]!;
      if (!r.up || r.lagMs === undefined || r.lagMs > max) continue;
      if (!least) {
        best = r;
        this.cursor = (this.cursor + i + 1) % n;
        break;
      }
      if (best === undefined || r.sessions < best.sessions) best = r;
    }
    if (least && best !== undefined) this.cursor = (this.replicas.indexOf(best) + 1) % n;
    return best?.endpoint;
  }

  /** A session started reading from this replica (least-connections, stats). */
  acquire(endpoint: string): void {
    const r = this.byEndpoint.get(endpoint);
    if (r !== undefined) r.sessions++;
  }

  /** ... and stopped. */
  release(endpoint: string): void {
    const r = this.byEndpoint.get(endpoint);
    if (r !== undefined && r.sessions > 0) r.sessions--;
  }

  /** A session saw this replica fail (connect, login, an error no replica should give): skip it until a probe started after now succeeds. */
  markDown(endpoint: string, reason: string): void {
    const r = this.byEndpoint.get(endpoint);
    if (r === undefined) return;
    r.downAt = performance.now();
    if (r.up) this.log.warn({ listener: this.listener, route: this.route, endpoint, reason }, 'replica marked down: reads go elsewhere until a probe succeeds');
    r.up = false;
    r.reason = reason;
    this.publish(r);
  }

  /** Replica state for /api/stats and the dashboard. */
  stats(): ReplicaStats[] {
    return this.replicas.map((r) => ({ endpoint: r.endpoint, up: r.up, lagMs: r.up ? r.lagMs : undefined, sessions: r.sessions }));
  }

  /** Probes every replica once (concurrently); a round already running is joined, not doubled. */
  probeNow(): Promise<void> {
    this.round ??= this.probeAll().finally(() => {
      this.round = undefined;
    });
    return this.round;
  }

  /** Stops probing; the set answers `pick` with undefined from now on. */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.probe.close?.();
    for (const r of this.replicas) {
      r.up = false;
      replicaLagMs.remove(this.listener, r.endpoint);
      replicaUp.remove(this.listener, r.endpoint);
    }
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.probeNow().then(() => this.schedule());
    }, this.settings.lagProbeIntervalMs);
    this.timer.unref();
  }

  private async probeAll(): Promise<void> {
    // A probe gets at least a second, and no more than the interval when that is longer.
    const timeoutMs = Math.max(1000, this.settings.lagProbeIntervalMs);
    await Promise.all(this.replicas.map((r) => this.probeOne(r, timeoutMs)));
  }

  private async probeOne(r: Replica, timeoutMs: number): Promise<void> {
    const started = performance.now();
    let lag: number;
    try {
      lag = await this.probe(r.endpoint, AbortSignal.timeout(timeoutMs));
      if (!Number.isFinite(lag)) throw new Error(`probe answered ${lag}`);
    } catch (err) {
      if (this.closed) return;
      const reason = err instanceof Error ? err.message : String(err);
      if (r.up) this.log.warn({ listener: this.listener, route: this.route, endpoint: r.endpoint, reason }, 'replica lag probe failed: replica skipped');
      r.up = false;
      r.lagMs = undefined;
      r.reason = reason;
      this.publish(r);
      return;
    }
    if (this.closed) return;
    r.lagMs = Math.max(0, lag);
    if (started < r.downAt) return; // a session saw it fail after this probe began
    if (!r.up) this.log.info({ listener: this.listener, route: this.route, endpoint: r.endpoint, lagMs: r.lagMs }, 'replica up');
    r.up = true;
    this.publish(r);
  }

  private publish(r: Replica): void {
    if (this.closed) return;
    replicaUp.set({ listener: this.listener, endpoint: r.endpoint }, r.up ? 1 : 0);
    replicaLagMs.set({ listener: this.listener, endpoint: r.endpoint }, r.up && r.lagMs !== undefined ? r.lagMs : -1);
  }
}
