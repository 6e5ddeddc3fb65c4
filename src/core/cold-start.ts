/**
 * Cold starts (DESIGN.md §2, §4). A route may carry `coldStart.wake()`: its
 * backend may be asleep. Connections first dial as usual; when the dial
 * fails, they wait here. The first waiter of a resource calls wake() — once,
 * however many connections arrive — and the gate polls the endpoints until
 * one accepts, then lets every waiter through (each dials its own
 * connection). A waiter past its deadline, or past the bounded queue, fails
 * with UNAVAILABLE, which every protocol answers natively.
 */
import { connectEndpoint } from './connect.ts';
import type { Endpoint } from './endpoint.ts';
import { PolyproxyError } from './errors.ts';
import type { Logger } from './logger.ts';
import type { ColdStart } from './resolver.ts';

export interface ColdStartSettings {
  /** How long a connection waits for a sleeping backend before UNAVAILABLE. */
  readonly timeoutMs: number;
  /** Connections waiting per resource; more get UNAVAILABLE at once. */
  readonly maxWaiting: number;
  /** Delay between dial attempts while the backend wakes. */
  readonly pollIntervalMs: number;
}

/**
 * The fleet's cold-start lock (fleet/fleet.ts): across instances, only the
 * one that takes it calls wake(); the others poll the endpoints like any
 * waiter. `acquire` resolves true when this process should wake (it took
 * the lock, or there is no way to know: Redis down).
 */
export interface WakeLock {
  acquire(resourceId: string, ttlMs: number): Promise<boolean>;
  /** `keepMs` > 0: keep the lock that much longer (the backend just came up: an instance whose dial failed a moment ago must not wake it again). */
  release(resourceId: string, keepMs?: number): void;
}

export const DEFAULT_COLD_START: ColdStartSettings = { timeoutMs: 30000, maxWaiting: 1000, pollIntervalMs: 100 };

/** After a wake, stragglers whose dial failed just before the backend came up go straight through for this long. */
const AWAKE_GRACE_MS = 5000;

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (err: PolyproxyError) => void;
  readonly timer: NodeJS.Timeout;
}

interface Wake {
  readonly resourceId: string;
  readonly waiters: Set<Waiter>;
  readonly endpoints: readonly Endpoint[];
  awakeAt: number;
  poll: NodeJS.Timeout | null;
  dialing: boolean;
  /** This process holds the fleet's wake lock for the resource. */
  locked: boolean;
}

export interface ColdStartCounters {
  /** wake() calls made. */
  wakes: number;
  /** Connections that waited for a wake. */
  waits: number;
  /** Waiters that hit their deadline (or the queue bound). */
  timeouts: number;
  /** Waiting now. */
  waiting: number;
}

export class ColdStarts {
  #settings: ColdStartSettings;
  readonly #log: Logger | undefined;
  readonly #wakes = new Map<string, Wake>();
  readonly #lock: WakeLock | undefined;
  readonly counters: ColdStartCounters = { wakes: 0, waits: 0, timeouts: 0, waiting: 0 };

  constructor(settings: Partial<ColdStartSettings> = {}, log?: Logger, lock?: WakeLock) {
    this.#settings = { ...DEFAULT_COLD_START, ...settings };
    this.#log = log;
    this.#lock = lock;
  }

  configure(settings: Partial<ColdStartSettings>): void {
    this.#settings = { ...DEFAULT_COLD_START, ...settings };
  }

  /** True while a wake for this resource is in progress: new connections should wait instead of dialling. */
  waking(resourceId: string): boolean {
    const wake = this.#wakes.get(resourceId);
    return wake !== undefined && wake.awakeAt === 0;
  }

  /**
   * Waits until one of `endpoints` accepts a connection, waking the backend
   * first if nobody has yet. Rejects with UNAVAILABLE at the deadline.
   */
  wait(resourceId: string, coldStart: ColdStart, endpoints: readonly Endpoint[]): Promise<void> {
    let wake = this.#wakes.get(resourceId);
    if (wake !== undefined && wake.awakeAt !== 0) {
      if (Date.now() - wake.awakeAt < AWAKE_GRACE_MS) return Promise.resolve();
      this.#wakes.delete(resourceId);
      wake = undefined;
    }
    if (wake !== undefined && wake.waiters.size >= this.#settings.maxWaiting) {
      this.counters.timeouts++;
      return Promise.reject(new PolyproxyError('UNAVAILABLE', `backend for "${resourceId}" is starting and ${wake.waiters.size} connections already wait for it`, { source: 'backend', resourceId }));
    }
    if (wake === undefined) {
      wake = { resourceId, waiters: new Set(), endpoints, awakeAt: 0, poll: null, dialing: false, locked: false };
      this.#wakes.set(resourceId, wake);
      this.#start(wake, coldStart);
    }
    const current = wake;
    this.counters.waits++;
    this.counters.waiting++;
    return new Promise<void>((resolve, reject) => {
      const timeoutMs = this.#settings.timeoutMs;
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          if (!current.waiters.delete(waiter)) return;
          this.counters.waiting--;
          this.counters.timeouts++;
          if (current.waiters.size === 0) this.#stopPolling(current);
          reject(new PolyproxyError('UNAVAILABLE', `backend for "${resourceId}" did not wake within ${timeoutMs} ms`, { source: 'backend', resourceId }));
        }, timeoutMs),
      };
      current.waiters.add(waiter);
    });
  }

  #start(wake: Wake, coldStart: ColdStart): void {
    const lock = this.#lock;
    if (lock === undefined) {
      this.#wake(wake, coldStart);
      return;
    }
    // The lock lives as long as a waiter may: an instance that dies mid-wake frees it by expiry.
    lock.acquire(wake.resourceId, this.#settings.timeoutMs).then(
      (mine) => {
        if (this.#wakes.get(wake.resourceId) !== wake) {
          if (mine) lock.release(wake.resourceId);
          return;
        }
        if (mine) {
          wake.locked = true;
          this.#wake(wake, coldStart);
        } else {
          this.#log?.info({ resource: wake.resourceId }, 'cold start: another instance is waking the backend; waiting for it');
          this.#schedule(wake);
        }
      },
      () => this.#wake(wake, coldStart),
    );
  }

  #wake(wake: Wake, coldStart: ColdStart): void {
    this.counters.wakes++;
    this.#log?.info({ resource: wake.resourceId }, 'cold start: waking backend');
    let woken: Promise<void>;
    try {
      woken = Promise.resolve(coldStart.wake());
    } catch (err) {
      woken = Promise.reject(err as Error);
    }
    woken.then(
      () => this.#dial(wake),
      (err: unknown) => {
        const message = err instanceof Error ? err.message : String(err);
        this.#log?.warn({ resource: wake.resourceId, err: message }, 'cold start: wake failed');
        this.#settle(wake, new PolyproxyError('UNAVAILABLE', `backend for "${wake.resourceId}" could not be woken: ${message}`, { source: 'backend', resourceId: wake.resourceId }));
      },
    );
    // Poll while wake() runs too: some wakers return before the backend listens, some after.
    this.#schedule(wake);
  }

  #schedule(wake: Wake): void {
    if (wake.poll !== null || wake.awakeAt !== 0 || !this.#wakes.has(wake.resourceId)) return;
    wake.poll = setTimeout(() => {
      wake.poll = null;
      this.#dial(wake);
    }, this.#settings.pollIntervalMs);
  }

  #stopPolling(wake: Wake): void {
    if (wake.poll !== null) clearTimeout(wake.poll);
    wake.poll = null;
    // Nobody waits any more: the next connection starts afresh (and wakes again).
    if (wake.awakeAt === 0) this.#wakes.delete(wake.resourceId);
  }

  /** One round of dials to every endpoint; the first that accepts wakes everyone. */
  #dial(wake: Wake): void {
    if (wake.dialing || wake.awakeAt !== 0 || this.#wakes.get(wake.resourceId) !== wake) return;
    wake.dialing = true;
    const attempts = wake.endpoints.map((endpoint) =>
      connectEndpoint(endpoint, Math.max(this.#settings.pollIntervalMs, 1000)).then((socket) => {
        socket.destroy();
        return true;
      }, () => false),
    );
    void Promise.all(attempts).then((results) => {
      wake.dialing = false;
      if (results.includes(true)) this.#settle(wake, null);
      else this.#schedule(wake);
    });
  }

  #settle(wake: Wake, error: PolyproxyError | null): void {
    if (wake.poll !== null) clearTimeout(wake.poll);
    wake.poll = null;
    if (wake.locked) {
      wake.locked = false;
      this.#lock?.release(wake.resourceId, error === null ? AWAKE_GRACE_MS : 0);
    }
    if (error === null) {
      wake.awakeAt = Date.now();
      this.#log?.info({ resource: wake.resourceId, released: wake.waiters.size }, 'cold start: backend is up');
    } else {
      this.#wakes.delete(wake.resourceId);
    }
    for (const waiter of wake.waiters) {
      clearTimeout(waiter.timer);
      this.counters.waiting--;
      if (error === null) waiter.resolve();
      else waiter.reject(error);
    }
    wake.waiters.clear();
  }
}
