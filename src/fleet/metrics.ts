/**
 * The fleet's metrics (in the process's one registry, core/metrics.ts).
 * Updated on rare events (a state flip, a cross-instance message), never
 * per chunk.
 */
import { Counter, Gauge } from 'prom-client';
import { registry } from '../core/metrics.ts';

export const redisUp = new Gauge({
  name: 'polyproxy_redis_up',
  help: 'Redis link state: 1 connected, 0 down (the proxy serves from local state meanwhile), by link (cluster, resolver). Across workers: the worst.',
  labelNames: ['link'] as const,
  aggregator: 'min',
  registers: [registry],
});

export const fleetMessages = new Counter({
  name: 'polyproxy_fleet_messages_total',
  help: 'Messages between fleet instances through Redis, by kind (purge, push, cancel, replace) and direction (sent, received).',
  labelNames: ['kind', 'direction'] as const,
  registers: [registry],
});

export const fleetFallbacks = new Counter({
  name: 'polyproxy_fleet_fallbacks_total',
  help: 'Fleet operations that fell back to local state because Redis was down or slow, by feature.',
  labelNames: ['feature'] as const,
  registers: [registry],
});
