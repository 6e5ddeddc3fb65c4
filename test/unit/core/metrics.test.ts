/**
 * src/core/metrics.ts: a scrape reads the registered StatsProvider (no
 * counter sits in the relay): per-listener, cache, breaker, probe,
 * cold-start and per-resource series, each value as the provider had it,
 * and nothing from a provider that was removed.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { AggregatorRegistry } from 'prom-client';
import type { StatsProvider } from '../../../src/core/metrics.ts';
import { registry, setStatsProvider } from '../../../src/core/metrics.ts';
import { parsePrometheus, sample } from '../../helpers/prometheus.ts';

function provider(): StatsProvider {
  return {
    listeners: () => [{ name: 'web', protocol: 'http', host: '0.0.0.0', port: 80, open: 3, total: 40, refused: 2, failed: 5, bytesIn: 1000, bytesOut: 9000 }],
    cache: () => ({ entries: 7, hits: 30, misses: 10 }),
    endpoints: () => [
      { endpoint: '10.0.0.1:80', state: 'open', healthy: false, failures: 4, lastProbeAt: 1 },
      { endpoint: '10.0.0.2:80', state: 'half-open', healthy: null, failures: 1, lastProbeAt: null },
      { endpoint: '10.0.0.3:80', state: 'closed', healthy: true, failures: 0, lastProbeAt: 2 },
    ],
    coldStarts: () => ({ wakes: 1, waits: 6, timeouts: 2, waiting: 3 }),
    resources: () => [{ resourceId: 'shop', open: 1, total: 12, bytesIn: 100, bytesOut: 200 }],
  };
}

async function scrape(): Promise<Map<string, number>> {
  return parsePrometheus(await registry.metrics());
}

afterEach(() => setStatsProvider(null));

describe('metrics', () => {
  it('reads the listeners\' counters at scrape time', async () => {
    setStatsProvider(provider());
    const s = await scrape();
    const labels = { listener: 'web', protocol: 'http' };
    assert.equal(sample(s, 'polyproxy_connections_open', labels), 3);
    assert.equal(sample(s, 'polyproxy_connections_total', labels), 40);
    assert.equal(sample(s, 'polyproxy_connections_refused_total', labels), 2);
    assert.equal(sample(s, 'polyproxy_connections_failed_total', labels), 5);
    assert.equal(sample(s, 'polyproxy_bytes_in_total', labels), 1000);
    assert.equal(sample(s, 'polyproxy_bytes_out_total', labels), 9000);
  });

  it('cache, breaker (0 closed, 1 half-open, 2 open), probe results, cold starts and resources', async () => {
    setStatsProvider(provider());
    const s = await scrape();
    assert.equal(sample(s, 'polyproxy_route_cache_hits_total'), 30);
    assert.equal(sample(s, 'polyproxy_route_cache_misses_total'), 10);
    assert.equal(sample(s, 'polyproxy_route_cache_entries'), 7);
    assert.equal(sample(s, 'polyproxy_endpoint_breaker_state', { endpoint: '10.0.0.1:80' }), 2);
    assert.equal(sample(s, 'polyproxy_endpoint_breaker_state', { endpoint: '10.0.0.2:80' }), 1);
    assert.equal(sample(s, 'polyproxy_endpoint_breaker_state', { endpoint: '10.0.0.3:80' }), 0);
    assert.equal(s.get('polyproxy_endpoint_up{endpoint="10.0.0.1:80"}'), 0);
    assert.equal(s.has('polyproxy_endpoint_up{endpoint="10.0.0.2:80"}'), false, 'never probed: no sample');
    assert.equal(s.get('polyproxy_endpoint_up{endpoint="10.0.0.3:80"}'), 1);
    assert.equal(sample(s, 'polyproxy_cold_start_wakes_total'), 1);
    assert.equal(sample(s, 'polyproxy_cold_start_waits_total'), 6);
    assert.equal(sample(s, 'polyproxy_cold_start_timeouts_total'), 2);
    assert.equal(sample(s, 'polyproxy_cold_start_waiting'), 3);
    assert.equal(sample(s, 'polyproxy_resource_connections_open', { resource: 'shop' }), 1);
    assert.equal(sample(s, 'polyproxy_resource_connections_total', { resource: 'shop' }), 12);
    assert.equal(sample(s, 'polyproxy_resource_bytes_total', { resource: 'shop', direction: 'in' }), 100);
    assert.equal(sample(s, 'polyproxy_resource_bytes_total', { resource: 'shop', direction: 'out' }), 200);
  });

  it('a scrape after the provider is gone reports no listener, endpoint or resource series', async () => {
    setStatsProvider(provider());
    await scrape();
    setStatsProvider(null);
    const s = await scrape();
    assert.equal(s.has('polyproxy_connections_total{listener="web",protocol="http"}'), false);
    assert.equal(s.has('polyproxy_endpoint_breaker_state{endpoint="10.0.0.1:80"}'), false);
    assert.equal(s.has('polyproxy_resource_connections_total{resource="shop"}'), false);
    assert.equal(sample(s, 'polyproxy_route_cache_entries'), 0);
  });

  it('across workers counters add up and the breaker takes the worst worker', async () => {
    setStatsProvider(provider());
    const one = await registry.getMetricsAsJSON();
    const other = provider();
    setStatsProvider({ ...other, endpoints: () => [{ endpoint: '10.0.0.1:80', state: 'closed', healthy: true, failures: 0, lastProbeAt: 3 }] });
    const two = await registry.getMetricsAsJSON();
    const merged = parsePrometheus(await AggregatorRegistry.aggregate([one, two]).metrics());
    assert.equal(sample(merged, 'polyproxy_connections_total', { listener: 'web', protocol: 'http' }), 80);
    assert.equal(sample(merged, 'polyproxy_endpoint_breaker_state', { endpoint: '10.0.0.1:80' }), 2);
    assert.equal(merged.get('polyproxy_endpoint_up{endpoint="10.0.0.1:80"}'), 0);
  });
});
