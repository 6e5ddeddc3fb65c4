/** Tenant-limit refusals by limit (per tenant: polyproxy_resource_limited_total, resource-stats.ts). Counted per refusal, never per chunk. */
import { Counter } from 'prom-client';
import { registry } from '../metrics.ts';

export const limitedTotal = new Counter({
  name: 'polyproxy_limited_total',
  help: 'Sessions and requests refused by a tenant limit, by limit (connections, connection-rate, request-rate, fair-share).',
  labelNames: ['limit'] as const,
  registers: [registry],
});
