/**
 * One Redis connection of the fleet (node-redis: its own reconnects, TLS
 * through rediss://; Sentinel and Cluster through its createSentinel /
 * createCluster), with what a proxy on a client's path needs on top:
 *
 * - bounded time: every command carries a timeout, and while the link is
 *   down commands fail at once (no offline queue) instead of waiting;
 * - one state, up or down, in the `polyproxy_redis_up{link}` gauge, with one
 *   warning when it goes down and one info line when it comes back (never
 *   one per request);
 * - a second connection for SUBSCRIBE, made on first use (a subscribed
 *   connection cannot run other commands); node-redis resubscribes it after
 *   a reconnect;
 * - `send`, for a channel one instance listens on: PUBLISH, or in a Redis
 *   Cluster SPUBLISH to a sharded channel (Redis 7). A cluster's PUBLISH is
 *   broadcast over the cluster bus, but its receiver count is only the
 *   receiving node's subscribers, and the inbox request/reply needs a true
 *   count to tell "nobody holds it" from "asked"; a sharded channel lives on
 *   its slot's master, where node-redis also subscribes, so SPUBLISH counts
 *   every subscriber.
 *
 * Callers treat a rejected `run` as "Redis is not there": they fall back to
 * local behaviour (fleet/index.ts says what each feature does).
 */
import { createClient, createCluster, createSentinel } from 'redis';
import type { RedisClientType } from 'redis';
import type { Logger } from '../core/logger.ts';
import { redisUp } from './metrics.ts';

/** Redis Sentinel: the master of `name`, found through these sentinels (`host:port`). */
export interface SentinelTarget {
  readonly name: string;
  readonly nodes: readonly string[];
  /** The data nodes' password (ACL user with `username`), if any. */
  readonly username?: string | undefined;
  readonly password?: string | undefined;
}

/** Redis Cluster: some of its nodes (`host:port`), from which node-redis discovers the rest and follows slot moves and failovers. */
export interface ClusterTarget {
  readonly nodes: readonly string[];
  /** Every node's password (ACL user with `username`), if any. */
  readonly username?: string | undefined;
  readonly password?: string | undefined;
}

export interface RedisLinkOptions {
  /** One server (`redis://`, `rediss://`); ignored when `sentinel` or `cluster` is given. */
  readonly url: string;
  readonly sentinel?: SentinelTarget | undefined;
  readonly cluster?: ClusterTarget | undefined;
  /** Names the link in logs and in the gauge: "cluster", "resolver". */
  readonly name: string;
  /** Per-command bound; a slower answer counts as Redis being down. */
  readonly commandTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly log: Logger;
}

export type MessageHandler = (message: string, channel: string) => void;

interface Subscription {
  readonly channel: string;
  readonly handler: MessageHandler;
  readonly sharded: boolean;
}

/** Thrown by `run` while the link is down: the caller falls back. */
export class RedisDownError extends Error {
  constructor(link: string, why: string) {
    super(`redis (${link}) unavailable: ${why}`);
    this.name = 'RedisDownError';
  }
}

/** A command that got no answer within commandTimeoutMs: Redis is slow, treated as down. */
class RedisTimeoutError extends Error {
  constructor(ms: number) {
    super(`no answer within ${ms} ms`);
    this.name = 'TimeoutError';
  }
}

/** Reconnect every 100 ms at first, backing off to 2 s: Redis coming back is noticed within ~2 s. */
function reconnectDelay(retries: number): number {
  return Math.min(100 * 2 ** Math.min(retries, 5), 2000);
}

export class RedisLink {
  readonly name: string;
  readonly #options: RedisLinkOptions;
  readonly client: RedisClientType;
  #subscriber: RedisClientType | null = null;
  #up = false;
  /** Whether the "down" warning was logged for the current outage. */
  #warned = false;
  #closed = false;
  /** While down: a PING now and then, so a client that reconnected without saying so (or a failover) is noticed. */
  #probe: NodeJS.Timeout | null = null;
  readonly #ready: Promise<void>;
  readonly #onUp: Array<() => void> = [];
  /** A #pingNow is in flight. */
  #pinging = false;
  /** Cluster only: subscriptions asked for before its first topology discovery (node-redis refuses them until then; after, it resubscribes them itself). */
  #deferred: Subscription[] = [];

  constructor(options: RedisLinkOptions) {
    this.name = options.name;
    this.#options = options;
    this.client = this.#make('commands');
    redisUp.set({ link: this.name }, 0);
    // node-redis keeps retrying a first connection that fails: startup waits for it at most connectTimeoutMs.
    const connecting = this.#connect();
    this.#ready = Promise.race([connecting, new Promise<void>((resolve) => setTimeout(resolve, options.connectTimeoutMs).unref())]);
  }

  /** Whether one instance's channel is a sharded one (a Redis Cluster): `send` and `subscribe(…, true)` use SPUBLISH / SSUBSCRIBE. */
  get sharded(): boolean {
    return this.#options.cluster !== undefined;
  }

  #connect(): Promise<void> {
    return this.client.connect().then(
      () => undefined,
      (err: unknown) => this.#down(err),
    );
  }

  #make(role: 'commands' | 'subscriber'): RedisClientType {
    const { sentinel, cluster } = this.#options;
    const socket = { connectTimeout: this.#options.connectTimeoutMs, reconnectStrategy: reconnectDelay };
    // A Sentinel-managed master or a Cluster: node-redis follows failovers (and slot moves) itself and keeps pub/sub on connections of its own.
    // Both expose the commands used here with the same signatures, hence the cast.
    const client = (
      cluster !== undefined
        ? createCluster({
            rootNodes: cluster.nodes.map((node) => ({ socket: { ...parseNode(node), connectTimeout: this.#options.connectTimeoutMs, reconnectStrategy: false as const } })),
            defaults: { disableOfflineQueue: true, socket, ...(cluster.username === undefined ? {} : { username: cluster.username }), ...(cluster.password === undefined ? {} : { password: cluster.password }) },
            commandOptions: { timeout: this.#options.commandTimeoutMs },
          })
        : sentinel !== undefined
          ? createSentinel({
            name: sentinel.name,
            sentinelRootNodes: sentinel.nodes.map(parseNode),
            commandOptions: { timeout: this.#options.commandTimeoutMs },
            nodeClientOptions: { disableOfflineQueue: true, socket, ...(sentinel.username === undefined ? {} : { username: sentinel.username }), ...(sentinel.password === undefined ? {} : { password: sentinel.password }) },
              sentinelClientOptions: { socket },
            })
          : createClient({ url: this.#options.url, disableOfflineQueue: true, commandOptions: { timeout: this.#options.commandTimeoutMs }, socket })
    ) as unknown as RedisClientType;
    // node-redis emits 'error' on every failed reconnect: the state below logs once per outage.
    client.on('error', (err: unknown) => this.#down(err));
    if (role === 'commands' && cluster !== undefined) {
      // A cluster is ready once it knew its topology ('connect'); its nodes reconnect on their own, failed commands flip the state.
      client.on('connect', () => this.#onReady());
      client.on('disconnect', () => this.#down(new Error('cluster disconnected')));
    } else if (role === 'commands') {
      client.on('ready', () => this.#onReady());
      client.on('end', () => this.#down(new Error('connection closed')));
    } else {
      // node-redis resubscribes before 'ready': the link counts as up only once this connection is back too, so "up" means a purge published now reaches this instance.
      client.on('ready', () => this.#onReady());
    }
    return client;
  }

  get up(): boolean {
    return this.#up;
  }

  /** Runs `work` each time the link goes from down to up (the first connection included): state written while it was down can be written again. */
  onUp(work: () => void): void {
    this.#onUp.push(work);
  }

  /** Resolves once the first connection attempt ended (up or not): startup does not wait longer than connectTimeoutMs. */
  ready(): Promise<void> {
    return this.#ready;
  }

  #onReady(): void {
    // Up only when both connections are: whichever of them is ready last brings the link up (onUp work runs commands at once).
    if (this.#closed || (this.#subscriber !== null && (!this.#subscriber.isReady || !this.client.isReady))) return;
    if (this.#probe !== null) clearInterval(this.#probe);
    this.#probe = null;
    if (this.#deferred.length > 0) {
      const deferred = this.#deferred;
      this.#deferred = [];
      for (const s of deferred) this.#clusterSubscribe(s).catch(() => this.#deferred.push(s));
    }
    if (this.#up || this.#closed) return;
    this.#up = true;
    redisUp.set({ link: this.name }, 1);
    if (this.#warned) this.#options.log.info({ link: this.name }, 'redis is back: fleet state shared again');
    else this.#options.log.info({ link: this.name }, 'redis connected');
    this.#warned = false;
    for (const work of this.#onUp) work();
  }

  #down(err: unknown): void {
    if (this.#closed) return;
    this.#up = false;
    redisUp.set({ link: this.name }, 0);
    if (this.#probe === null) {
      this.#probe = setInterval(() => {
        // A cluster whose first discovery failed does not retry by itself.
        if (this.#options.cluster !== undefined && !this.client.isOpen) {
          void this.#connect();
          return;
        }
        if (!this.client.isReady) return;
        this.client.ping().then(
          () => this.#onReady(),
          () => {},
        );
      }, PROBE_INTERVAL_MS);
      this.#probe.unref();
    }
    if (this.#warned) return;
    this.#warned = true;
    const message = err instanceof Error ? err.message : String(err);
    this.#options.log.warn({ link: this.name, redis: describeTarget(this.#options), err: message }, 'redis unavailable: serving from local state (caches, static routes, local push and cancel) until it returns');
  }

  /**
   * Runs commands within the bounds. Rejects with RedisDownError at once
   * while the link is down, and when a command times out or the connection
   * breaks (which also flips the state).
   */
  async run<T>(work: (client: RedisClientType) => Promise<T>): Promise<T> {
    if (!this.#up || !this.client.isReady) throw new RedisDownError(this.name, 'not connected');
    // node-redis's command timeout bounds the wait to be written, not the reply: bound the whole call here.
    // The timer fires late when this process itself was stalled (GC, a starved CPU), and the timers phase
    // runs before the poll phase that reads the socket: a reply that arrived meanwhile would lose the race
    // and count as Redis being down. So the timeout is decided in the check phase (setImmediate), after
    // this loop turn read what the socket holds: only a reply that is really not there is a timeout.
    let timer: NodeJS.Timeout | undefined;
    let decide: NodeJS.Immediate | undefined;
    const ms = this.#options.commandTimeoutMs;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        decide = setImmediate(() => reject(new RedisTimeoutError(ms)));
      }, ms);
    });
    const pending = work(this.client);
    try {
      return await Promise.race([pending, late]);
    } catch (err) {
      if (err instanceof RedisTimeoutError) pending.catch(() => {});
      if (isConnectionFailure(err)) {
        this.#down(err);
        // Slow, not gone (the connection is open): ask again at once rather than at the next probe, so one late
        // answer does not keep every fleet feature local (pushes, replies to other instances) for a probe interval.
        if (err instanceof RedisTimeoutError && this.client.isReady) this.#pingNow();
        throw new RedisDownError(this.name, (err as Error).message);
      }
      throw err;
    } finally {
      clearTimeout(timer);
      if (decide !== undefined) clearImmediate(decide);
    }
  }

  /** One PING now; an answer within commandTimeoutMs brings the link back up. */
  #pingNow(): void {
    if (this.#pinging) return;
    this.#pinging = true;
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RedisTimeoutError(this.#options.commandTimeoutMs)), this.#options.commandTimeoutMs);
    });
    Promise.race([this.client.ping(), bound])
      .then(
        () => this.#onReady(),
        () => {},
      )
      .finally(() => {
        clearTimeout(timer);
        this.#pinging = false;
      });
  }

  /**
   * Subscribes on the link's subscriber connection (made on first use).
   * Resolves once subscribed, or at once when Redis is down (node-redis
   * subscribes when it connects). `sharded`: a channel for `send` (SSUBSCRIBE
   * in a cluster, a plain channel elsewhere).
   */
  async subscribe(channel: string, handler: MessageHandler, sharded = false): Promise<void> {
    if (this.#options.cluster !== undefined) {
      const subscription = { channel, handler, sharded };
      if (!this.client.isReady) {
        this.#deferred.push(subscription);
        return;
      }
      await this.#bounded(this.#clusterSubscribe(subscription).catch(() => {}));
      return;
    }
    if (this.#options.sentinel !== undefined) {
      // The sentinel client subscribes on a connection of its own.
      const subscribing = this.client.subscribe(channel, handler);
      if (!this.#up) {
        subscribing.catch(() => {});
        return;
      }
      await Promise.race([subscribing.catch(() => {}), new Promise<void>((resolve) => setTimeout(resolve, this.#options.connectTimeoutMs).unref())]);
      return;
    }
    if (this.#subscriber === null) {
      this.#subscriber = this.#make('subscriber');
      this.#subscriber.connect().catch(() => {});
    }
    const subscribing = this.#subscriber.subscribe(channel, handler);
    // While disconnected node-redis keeps the subscription for the reconnect; do not wait for it.
    if (!this.#up) {
      subscribing.catch(() => {});
      return;
    }
    await Promise.race([subscribing.catch(() => {}), new Promise<void>((resolve) => setTimeout(resolve, this.#options.connectTimeoutMs).unref())]);
  }

  #clusterSubscribe(s: Subscription): Promise<void> {
    return s.sharded ? this.client.sSubscribe(s.channel, s.handler) : this.client.subscribe(s.channel, s.handler);
  }

  /** Waits for `work` at most connectTimeoutMs. */
  #bounded(work: Promise<void>): Promise<void> {
    return Promise.race([work, new Promise<void>((resolve) => setTimeout(resolve, this.#options.connectTimeoutMs).unref())]);
  }

  /**
   * Sends `message` on a channel subscribed with `sharded` (one instance's
   * inbox), within the bounds. Resolves with how many subscribers got it
   * (0: nobody listens there); rejects like `run`.
   */
  send(channel: string, message: string): Promise<number> {
    return this.sharded ? this.run((c) => c.sPublish(channel, message)) : this.run((c) => c.publish(channel, message));
  }

  /** PUBLISH within the bounds; false when Redis is down. */
  async publish(channel: string, message: string): Promise<boolean> {
    try {
      await this.run((c) => c.publish(channel, message));
      return true;
    } catch (err) {
      if (err instanceof RedisDownError) return false;
      throw err;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#probe !== null) clearInterval(this.#probe);
    this.#probe = null;
    redisUp.set({ link: this.name }, 0);
    const close = (c: RedisClientType | null): Promise<void> => (c === null || !c.isOpen ? Promise.resolve() : c.close().then(() => undefined, () => c.destroy()));
    await Promise.all([close(this.client), close(this.#subscriber)]);
  }
}

const PROBE_INTERVAL_MS = 1000;

function parseNode(text: string): { host: string; port: number } {
  const colon = text.lastIndexOf(':');
  return { host: text.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(text.slice(colon + 1)) };
}

/** A failure that says "Redis is not answering", not "this command is wrong". */
function isConnectionFailure(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const name = err.name;
  if (name === 'TimeoutError' || name === 'ClientClosedError' || name === 'ClientOfflineError' || name === 'SocketClosedUnexpectedlyError' || name === 'ConnectionTimeoutError') return true;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && (code.startsWith('ECONN') || code === 'EPIPE' || code === 'ETIMEDOUT')) return true;
  return /timeout|closed|offline|not connected/i.test(err.message);
}

/** Where the link goes, for logs: the URL without its password, or the sentinels' or cluster nodes' addresses. */
function describeTarget(options: RedisLinkOptions): string {
  if (options.cluster !== undefined) return `cluster ${options.cluster.nodes.join(',')}`;
  if (options.sentinel !== undefined) return `sentinel ${options.sentinel.name}@${options.sentinel.nodes.join(',')}`;
  return redactUrl(options.url);
}

/** The URL without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable url)';
  }
}

/** One link per URL and name in the process: the cluster's and the resolver's share a connection when they name the same Redis. */
const links = new Map<string, RedisLink>();

export function sharedLink(options: RedisLinkOptions): RedisLink {
  const key = options.cluster !== undefined ? `cluster:${options.cluster.nodes.join(',')}` : options.sentinel !== undefined ? `sentinel:${options.sentinel.name}@${options.sentinel.nodes.join(',')}` : options.url;
  let link = links.get(key);
  if (link === undefined) {
    link = new RedisLink(options);
    links.set(key, link);
  }
  return link;
}

export async function closeSharedLinks(): Promise<void> {
  const all = [...links.values()];
  links.clear();
  await Promise.all(all.map((l) => l.close()));
}
