/**
 * Per-backend up/down state for the FastCGI gateway, until the shared core
 * health module (circuit breaker) replaces it: a failed connect marks a
 * backend down; while any is down, one timer probes each down backend with
 * a connect every `intervalMs` and readmits it when the connect succeeds.
 * The balancer only offers backends that are up.
 */
import type { Endpoint } from '../../core/endpoint.ts';
import type { Logger } from '../../core/logger.ts';
import { connectSocket } from '../../fastcgi/connection.ts';

export class BackendHealth {
  readonly endpoints: readonly Endpoint[];
  readonly #down: boolean[];
  readonly #intervalMs: number;
  readonly #connectTimeoutMs: number;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | null = null;
  #probing = false;
  #closed = false;

  constructor(endpoints: readonly Endpoint[], options: { intervalMs: number; connectTimeoutMs: number }, log: Logger) {
    this.endpoints = endpoints;
    this.#down = endpoints.map(() => false);
    this.#intervalMs = options.intervalMs;
    this.#connectTimeoutMs = options.connectTimeoutMs;
    this.#log = log;
  }

  isUp(index: number): boolean {
    return this.#down[index] === false;
  }

  get upCount(): number {
    return this.#down.filter((d) => !d).length;
  }

  /** A connect to this backend failed: skip it until a probe succeeds. */
  markDown(index: number, reason: string): void {
    if (this.#closed || this.#down[index] !== false) return;
    this.#down[index] = true;
    this.#log.warn({ backend: this.endpoints[index]?.label, reason, probeEveryMs: this.#intervalMs }, 'fastcgi backend down');
    this.#timer ??= setInterval(() => void this.#probe(), this.#intervalMs).unref();
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  async #probe(): Promise<void> {
    if (this.#probing) return;
    this.#probing = true;
    try {
      await Promise.all(
        this.endpoints.map(async (endpoint, index) => {
          if (!this.#down[index]) return;
          try {
            const socket = await connectSocket(endpoint, { connectTimeoutMs: Math.min(this.#connectTimeoutMs, this.#intervalMs) });
            socket.destroy();
          } catch {
            return;
          }
          if (this.#closed) return;
          this.#down[index] = false;
          this.#log.info({ backend: endpoint.label }, 'fastcgi backend up again');
        }),
      );
    } finally {
      this.#probing = false;
    }
    if (this.#timer !== null && this.#down.every((d) => !d)) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }
}

/** Backend indexes in the order to try them: round-robin from a rotating start, or shuffled; only backends that are up. */
export class Balancer {
  readonly #health: BackendHealth;
  readonly #random: boolean;
  #next = 0;

  constructor(health: BackendHealth, balance: 'round-robin' | 'random') {
    this.#health = health;
    this.#random = balance === 'random';
  }

  candidates(): number[] {
    const n = this.#health.endpoints.length;
    const out: number[] = [];
    if (this.#random) {
      for (let i = 0; i < n; i++) if (this.#health.isUp(i)) out.push(i);
      for (let i = out.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        const t = out[i] as number;
        out[i] = out[j] as number;
        out[j] = t;
      }
      return out;
    }
    const start = this.#next;
    this.#next = (this.#next + 1) % n;
    for (let k = 0; k < n; k++) {
      const i = (start + k) % n;
      if (this.#health.isUp(i)) out.push(i);
    }
    return out;
  }
}
