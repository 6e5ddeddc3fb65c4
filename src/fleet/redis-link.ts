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
 *   a reconnect.
 *
 * Callers treat a rejected `run` as "Redis is not there": they fall back to
 * local behaviour (fleet/index.ts says what each feature does).
 */
import { createClient, createSentinel } from 'redis';
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

export interface RedisLinkOptions {
  /** One server (`redis://`, `rediss://`); ignored when `sentinel` is given. */
  readonly url: string;
  readonly sentinel?: SentinelTarget | undefined;
  /** Names the link in logs and in the gauge: "cluster", "resolver". */
  readonly name: string;
  /** Per-command bound; a slower answer counts as Redis being down. */
  readonly commandTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly log: Logger;
}

export type MessageHandler = (message: string, channel: string) => void;

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

  constructor(options: RedisLinkOptions) {
    this.name = options.name;
    this.#options = options;
    this.client = this.#make('commands');
    redisUp.set({ link: this.name }, 0);
    // node-redis keeps retrying a first connection that fails: startup waits for it at most connectTimeoutMs.
    const connecting = this.client.connect().then(
      () => undefined,
      (err: unknown) => this.#down(err),
    );
    this.#ready = Promise.race([connecting, new Promise<void>((resolve) => setTimeout(resolve, options.connectTimeoutMs).unref())]);
  }

  #make(role: 'commands' | 'subscriber'): RedisClientType {
    const sentinel = this.#options.sentinel;
    const socket = { connectTimeout: this.#options.connectTimeoutMs, reconnectStrategy: reconnectDelay };
    // A Sentinel-managed master: node-redis follows failovers itself and keeps pub/sub on its own connection.
    // It exposes the commands used here with the same signatures, hence the cast.
    const client = (
      sentinel !== undefined
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
    client.on('error', (err: unknown) => {
      if (role === 'commands') this.#down(err);
    });
    if (role === 'commands') {
      client.on('ready', () => this.#onReady());
      client.on('end', () => this.#down(new Error('connection closed')));
    }
    return client;
  }

  get up(): boolean {
    return this.#up;
  }

  /** Resolves once the first connection attempt ended (up or not): startup does not wait longer than connectTimeoutMs. */
  ready(): Promise<void> {
    return this.#ready;
  }

  #onReady(): void {
    if (this.#probe !== null) clearInterval(this.#probe);
    this.#probe = null;
    if (this.#up || this.#closed) return;
    this.#up = true;
    redisUp.set({ link: this.name }, 1);
    if (this.#warned) this.#options.log.info({ link: this.name }, 'redis is back: fleet state shared again');
    else this.#options.log.info({ link: this.name }, 'redis connected');
    this.#warned = false;
  }

  #down(err: unknown): void {
    if (this.#closed) return;
    this.#up = false;
    redisUp.set({ link: this.name }, 0);
    if (this.#probe === null) {
      this.#probe = setInterval(() => {
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
    this.#options.log.warn({ link: this.name, url: redactUrl(this.#options.url), err: message }, 'redis unavailable: serving from local state (caches, static routes, local push and cancel) until it returns');
  }

  /**
   * Runs commands within the bounds. Rejects with RedisDownError at once
   * while the link is down, and when a command times out or the connection
   * breaks (which also flips the state).
   */
  async run<T>(work: (client: RedisClientType) => Promise<T>): Promise<T> {
    if (!this.#up || !this.client.isReady) throw new RedisDownError(this.name, 'not connected');
    // node-redis's command timeout bounds the wait to be written, not the reply: bound the whole call here.
    let timer: NodeJS.Timeout | undefined;
    const ms = this.#options.commandTimeoutMs;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RedisTimeoutError(ms)), ms);
    });
    const pending = work(this.client);
    try {
      return await Promise.race([pending, late]);
    } catch (err) {
      if (err instanceof RedisTimeoutError) pending.catch(() => {});
      if (isConnectionFailure(err)) {
        this.#down(err);
        throw new RedisDownError(this.name, (err as Error).message);
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Subscribes on the link's subscriber connection (made on first use). Resolves once subscribed, or at once when Redis is down (node-redis subscribes when it connects). */
  async subscribe(channel: string, handler: MessageHandler): Promise<void> {
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
  const key = options.sentinel === undefined ? options.url : `sentinel:${options.sentinel.name}@${options.sentinel.nodes.join(',')}`;
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
