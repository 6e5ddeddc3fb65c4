/**
 * One process's membership in the fleet: N polyproxy instances behind an
 * L4 load balancer, sharing state through Redis (`cluster.redis`).
 *
 * Channels and keys (all under `cluster.redis.prefix`, default "polyproxy:"):
 * - `<prefix>purge` (pub/sub): a resource id to drop from every instance's
 *   routing cache. The admin API's purge publishes it; so may a control
 *   plane (`PUBLISH polyproxy:purge shop`).
 * - `<prefix>inbox:<node>` (pub/sub): messages to one instance (a ws-bridge
 *   push for a client it holds, a PostgreSQL cancel for a key it issued, "a
 *   newer connection took your ClientId"), with replies on the asker's
 *   inbox. In a Redis Cluster the inbox is a sharded channel (SPUBLISH /
 *   SSUBSCRIBE): a plain PUBLISH there counts only the receiving node's
 *   subscribers, and `request` needs the true count to answer `nobody`.
 *   Pub/sub rather than dialling the owner's address: instances need
 *   no port of their own open to each other, nor an address that is
 *   reachable from the others (NAT, pod networks), nor credentials between
 *   them — Redis is already the one place every instance reaches.
 * - `<prefix>instances` (hash): node → heartbeat (fleet view).
 * - `<prefix>wake:<id>`: the cold-start lock (SET NX PX).
 * - `<prefix>ws:<listener>:<ClientId>`, `<prefix>pgcancel:<key>`, and the
 *   shared counters (counters.ts).
 *
 * Every call on a client's path is bounded (RedisLink) and has a local
 * fallback: when Redis is down or slow, purges stay local, cold starts wake
 * once per instance, pushes and cancels reach only this instance's clients
 * and sessions, and the fleet view shows the last heartbeat read.
 */
import os from 'node:os';
import type { Logger } from '../core/logger.ts';
import { reapNode } from './counters.ts';
import { fleetHandler } from './index.ts';
import { fleetFallbacks, fleetMessages } from './metrics.ts';
import { RedisDownError, RedisLink } from './redis-link.ts';
import type { ClusterTarget, SentinelTarget } from './redis-link.ts';

export interface FleetOptions {
  readonly url: string;
  readonly sentinel?: SentinelTarget | undefined;
  readonly cluster?: ClusterTarget | undefined;
  readonly prefix: string;
  /** This instance's name in the fleet; worker processes add `/<pid>`. */
  readonly nodeId: string;
  readonly instanceId: string;
  readonly heartbeatMs: number;
  readonly commandTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly version: string;
  /** What other instances see as this one's address (the fleet view). */
  readonly address: string;
  readonly log: Logger;
}

/** One instance in the fleet view (its last heartbeat). */
export interface InstanceView {
  readonly id: string;
  readonly instanceId: string;
  readonly address: string;
  readonly version: string;
  readonly startedAt: number;
  readonly connections: number;
  /** Date.now() of the last heartbeat. */
  readonly seenAt: number;
  /** No heartbeat for 3 intervals. */
  readonly stale: boolean;
  readonly self: boolean;
}

export type FleetAnswer = { readonly status: 'answered'; readonly value: unknown } | { readonly status: 'nobody' } | { readonly status: 'timeout' };

interface Envelope {
  /** Kind: a request's name, or "reply". */
  readonly k: string;
  /** Request id (0: no reply wanted). */
  readonly r: number;
  /** Sender's node id. */
  readonly f: string;
  readonly p: Record<string, unknown>;
}

/** A heartbeat older than this many intervals marks an instance stale; older than REAP, it is removed. */
const STALE_INTERVALS = 3;
const REAP_INTERVALS = 20;

/** ARGV: owner, keep ms (0: delete now). */
const RELEASE_IF_OWNER = "if redis.call('GET', KEYS[1]) == ARGV[1] then if tonumber(ARGV[2]) > 0 then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return redis.call('DEL', KEYS[1]) end return 0";

export class Fleet {
  readonly id: string;
  readonly instanceId: string;
  readonly prefix: string;
  readonly link: RedisLink;
  readonly #options: FleetOptions;
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; timer: NodeJS.Timeout }>();
  #nextRequest = 1;
  #purgeHandler: ((resourceId: string) => void) | null = null;
  #connections: () => number = () => 0;
  #heartbeat: NodeJS.Timeout | null = null;
  #instances: InstanceView[] = [];
  readonly #startedAt = Date.now();
  #stopped = false;
  readonly #onBeat: Array<() => Promise<void>> = [];

  constructor(options: FleetOptions) {
    this.#options = options;
    this.id = options.nodeId;
    this.instanceId = options.instanceId;
    this.prefix = options.prefix;
    this.link = new RedisLink({ url: options.url, sentinel: options.sentinel, cluster: options.cluster, name: 'cluster', commandTimeoutMs: options.commandTimeoutMs, connectTimeoutMs: options.connectTimeoutMs, log: options.log });
  }

  get up(): boolean {
    return this.link.up;
  }

  key(suffix: string): string {
    return this.prefix + suffix;
  }

  /** Subscribes to the purge channel and this node's inbox, heartbeats. Never fails on Redis being down: it connects later. */
  async start(): Promise<void> {
    await this.link.ready();
    await this.link.subscribe(this.key('purge'), (message) => {
      fleetMessages.inc({ kind: 'purge', direction: 'received' });
      this.#purgeHandler?.(message);
    });
    await this.link.subscribe(this.key(`inbox:${this.id}`), (message) => this.#onMessage(message), true);
    void this.#beat();
    this.#heartbeat = setInterval(() => void this.#beat(), this.#options.heartbeatMs);
    this.#heartbeat.unref();
  }

  /** What a purge received from the fleet does here (the running proxy's local purge). */
  onPurge(handler: (resourceId: string) => void): void {
    this.#purgeHandler = handler;
  }

  /** Work to do at every heartbeat while Redis is up (the shared counters' sync). */
  onHeartbeat(work: () => Promise<void>): void {
    this.#onBeat.push(work);
  }

  /** Counts this instance's open connections for its heartbeat. */
  countConnections(count: () => number): void {
    this.#connections = count;
  }

  /** Tells every instance (this one too) to drop `resourceId` from its cache. False when Redis is down (the purge stayed local). */
  async publishPurge(resourceId: string): Promise<boolean> {
    const sent = await this.link.publish(this.key('purge'), resourceId).catch(() => false);
    if (sent) fleetMessages.inc({ kind: 'purge', direction: 'sent' });
    else fleetFallbacks.inc({ feature: 'purge' });
    return sent;
  }

  /**
   * Sends a request to one instance and waits for its answer: `answered`
   * with the handler's value; `nobody` when no instance listens on that
   * inbox (it is gone) or Redis is down; `timeout` when it did not answer
   * within `timeoutMs`.
   */
  async request(node: string, kind: string, payload: Record<string, unknown>, timeoutMs: number): Promise<FleetAnswer> {
    const id = this.#nextRequest++;
    const answer = new Promise<FleetAnswer>((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        resolve({ status: 'timeout' });
      }, timeoutMs);
      timer.unref();
      this.#pending.set(id, { resolve: (value) => resolve({ status: 'answered', value }), timer });
    });
    const envelope: Envelope = { k: kind, r: id, f: this.id, p: payload };
    let receivers: number;
    try {
      receivers = await this.link.send(this.key(`inbox:${node}`), JSON.stringify(envelope));
    } catch {
      receivers = 0;
    }
    if (receivers === 0) {
      const pending = this.#pending.get(id);
      if (pending !== undefined) clearTimeout(pending.timer);
      this.#pending.delete(id);
      return { status: 'nobody' };
    }
    fleetMessages.inc({ kind, direction: 'sent' });
    return answer;
  }

  /** Sends a message to one instance without waiting for an answer. False when it did not reach anyone. */
  async notify(node: string, kind: string, payload: Record<string, unknown>): Promise<boolean> {
    const envelope: Envelope = { k: kind, r: 0, f: this.id, p: payload };
    try {
      const receivers = await this.link.send(this.key(`inbox:${node}`), JSON.stringify(envelope));
      if (receivers > 0) fleetMessages.inc({ kind, direction: 'sent' });
      return receivers > 0;
    } catch {
      return false;
    }
  }

  #settle(id: number, value: unknown): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    pending.resolve(value);
  }

  #onMessage(text: string): void {
    let envelope: Envelope;
    try {
      envelope = JSON.parse(text) as Envelope;
    } catch {
      return;
    }
    if (typeof envelope !== 'object' || envelope === null || typeof envelope.k !== 'string') return;
    if (envelope.k === 'reply') {
      this.#settle(envelope.r, envelope.p?.value);
      return;
    }
    fleetMessages.inc({ kind: envelope.k, direction: 'received' });
    const handler = fleetHandler(envelope.k);
    const reply = (value: unknown): void => {
      if (envelope.r === 0 || typeof envelope.f !== 'string') return;
      const answer: Envelope = { k: 'reply', r: envelope.r, f: this.id, p: { value } };
      this.link.send(this.key(`inbox:${envelope.f}`), JSON.stringify(answer)).catch(() => {});
    };
    if (handler === undefined) {
      reply(undefined);
      return;
    }
    try {
      Promise.resolve(handler(envelope.p ?? {}, envelope.f)).then(reply, () => reply(undefined));
    } catch {
      reply(undefined);
    }
  }

  // ── cold-start lock ──────────────────────────────────────────────────

  /**
   * The fleet-wide right to call wake() for `resourceId`, for up to `ttlMs`
   * (`SET NX PX`: expires if this instance dies mid-wake). True when this
   * instance took it, or when Redis is down (then each instance wakes its
   * own: a second wake is better than none).
   */
  async acquireWake(resourceId: string, ttlMs: number): Promise<boolean> {
    try {
      const set = await this.link.run((c) => c.set(this.key(`wake:${resourceId}`), this.id, { condition: 'NX', expiration: { type: 'PX', value: Math.max(1, Math.round(ttlMs)) } }));
      return set === 'OK';
    } catch (err) {
      if (!(err instanceof RedisDownError)) this.#options.log.debug({ err: (err as Error).message }, 'cold-start lock failed');
      fleetFallbacks.inc({ feature: 'cold-start' });
      return true;
    }
  }

  /** Gives the lock back (only if still ours): now when the wake failed, after `keepMs` once the backend answered. */
  releaseWake(resourceId: string, keepMs = 0): void {
    this.link.run((c) => c.eval(RELEASE_IF_OWNER, { keys: [this.key(`wake:${resourceId}`)], arguments: [this.id, String(Math.max(0, Math.round(keepMs)))] })).catch(() => {});
  }

  // ── heartbeat and fleet view ─────────────────────────────────────────

  async #beat(): Promise<void> {
    if (this.#stopped) return;
    const me = {
      id: this.id,
      instanceId: this.instanceId,
      address: this.#options.address,
      version: this.#options.version,
      startedAt: this.#startedAt,
      connections: this.#connections(),
      seenAt: Date.now(),
    };
    try {
      const all = await this.link.run(async (c) => {
        await c.hSet(this.key('instances'), this.id, JSON.stringify(me));
        return c.hGetAll(this.key('instances'));
      });
      this.#instances = this.#view(all);
      for (const work of this.#onBeat) await work().catch(() => {});
    } catch {
      // Keep the last view: the dashboard shows it with the Redis state.
      this.#instances = this.#instances.map((i) => (i.self ? { ...i, ...me } : i));
      if (this.#instances.length === 0) this.#instances = [{ ...me, stale: false, self: true }];
    }
  }

  #view(all: Record<string, string>): InstanceView[] {
    const now = Date.now();
    const staleMs = this.#options.heartbeatMs * STALE_INTERVALS;
    const reapMs = this.#options.heartbeatMs * REAP_INTERVALS;
    const out: InstanceView[] = [];
    for (const [field, text] of Object.entries(all)) {
      let beat: Omit<InstanceView, 'stale' | 'self'>;
      try {
        beat = JSON.parse(text) as Omit<InstanceView, 'stale' | 'self'>;
      } catch {
        continue;
      }
      const age = now - Number(beat.seenAt);
      if (age > reapMs) {
        // Long gone: forget it (any instance may do it; HDEL is idempotent).
        this.link.run((c) => c.hDel(this.key('instances'), field)).catch(() => {});
        reapNode(this, field).catch(() => {});
        continue;
      }
      out.push({ ...beat, id: field, stale: age > staleMs, self: field === this.id });
    }
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  /** The fleet as of the last heartbeat (this instance included). */
  instances(): InstanceView[] {
    return this.#instances;
  }

  /** Refreshes the view now (tests, and the admin API after a change). */
  async refresh(): Promise<InstanceView[]> {
    await this.#beat();
    return this.#instances;
  }

  stats(): { instanceId: string; node: string; redisUp: boolean; instances: InstanceView[] } {
    return { instanceId: this.instanceId, node: this.id, redisUp: this.up, instances: this.#instances };
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#heartbeat !== null) clearInterval(this.#heartbeat);
    for (const id of [...this.#pending.keys()]) this.#settle(id, undefined);
    // Leave the fleet view at once rather than after REAP_INTERVALS.
    await this.link.run((c) => c.hDel(this.key('instances'), this.id)).catch(() => {});
    await this.link.close();
  }
}

/** `hostname-pid`: unique per process on a machine, readable in the fleet view. */
export function defaultInstanceId(): string {
  return `${os.hostname()}-${process.pid}`;
}
