/**
 * The order in which the gateway tries its backends: round-robin from a
 * rotating start, or shuffled, leaving out those core's circuit breaker
 * (src/core/health.ts) holds open.
 */
import type { Endpoint } from '../../core/endpoint.ts';
import type { EndpointHealth } from '../../core/health.ts';

export class Balancer {
  readonly #endpoints: readonly Endpoint[];
  readonly #health: EndpointHealth;
  readonly #random: boolean;
  #next = 0;

  constructor(endpoints: readonly Endpoint[], health: EndpointHealth, balance: 'round-robin' | 'random') {
    this.#endpoints = endpoints;
    this.#health = health;
    this.#random = balance === 'random';
  }

  /** Backend indexes to try, in order; empty when every backend is down. */
  candidates(): number[] {
    const n = this.#endpoints.length;
    const order: number[] = [];
    if (this.#random) {
      for (let i = 0; i < n; i++) order.push(i);
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        const t = order[i] as number;
        order[i] = order[j] as number;
        order[j] = t;
      }
    } else {
      const start = this.#next;
      this.#next = (this.#next + 1) % n;
      for (let k = 0; k < n; k++) order.push((start + k) % n);
    }
    const ordered = order.map((i) => this.#endpoints[i] as Endpoint);
    const usable = this.#health.usable(ordered);
    if (usable === ordered) return order;
    const up = new Set(usable);
    return order.filter((i) => up.has(this.#endpoints[i] as Endpoint));
  }
}
