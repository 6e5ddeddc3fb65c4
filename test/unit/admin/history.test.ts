/** src/admin/history.ts: the ring keeps the newest samples in order; samples read stats and the resolve histogram. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { resolveTotals, SampleRing, startHistory, takeSample, TOP_TENANTS } from '../../../src/admin/history.ts';
import type { HistorySample } from '../../../src/admin/history.ts';
import type { ProxyStats } from '../../../src/admin/source.ts';

const sample = (at: number): HistorySample => ({ at, listeners: {}, tenants: {}, resolve: { count: 0, sumSeconds: 0 } });

const STATS: ProxyStats = {
  version: '0',
  startedAt: 0,
  uptimeSeconds: 1,
  workers: 1,
  ready: true,
  listeners: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 1, open: 2, total: 9, refused: 1, failed: 3, bytesIn: 10, bytesOut: 20 }],
  routes: [],
  cache: { entries: 0, hits: 0, misses: 0 },
  endpoints: [],
  resources: Array.from({ length: 8 }, (_, i) => ({ resourceId: `t${i}`, open: i, total: i, bytesIn: i, bytesOut: i })),
  coldStarts: { waiting: 0, wakes: 0, timeouts: 0 },
  pools: [],
};

const METRICS = [
  '# HELP polyproxy_resolve_duration_seconds x',
  'polyproxy_resolve_duration_seconds_bucket{le="0.001",source="routes",outcome="found"} 3',
  'polyproxy_resolve_duration_seconds_sum{source="routes",outcome="found"} 0.25',
  'polyproxy_resolve_duration_seconds_count{source="routes",outcome="found"} 3',
  'polyproxy_resolve_duration_seconds_sum{source="module",outcome="error"} 0.75',
  'polyproxy_resolve_duration_seconds_count{source="module",outcome="error"} 1',
  'polyproxy_connections_total{listener="pg"} 9',
].join('\n');

describe('SampleRing', () => {
  it('keeps the newest `capacity` samples, oldest first', () => {
    const ring = new SampleRing(3);
    assert.deepEqual(ring.toArray(), []);
    for (let i = 1; i <= 5; i++) ring.push(sample(i));
    assert.deepEqual(ring.toArray().map((s) => s.at), [3, 4, 5]);
    ring.push(sample(6));
    assert.deepEqual(ring.toArray().map((s) => s.at), [4, 5, 6]);
  });
});

describe('samples', () => {
  it('resolveTotals sums the histogram over its labels, buckets ignored', () => {
    assert.deepEqual(resolveTotals(METRICS), { count: 4, sumSeconds: 1 });
    assert.deepEqual(resolveTotals(''), { count: 0, sumSeconds: 0 });
  });

  it('takeSample: listeners with errors = failed + refused, the top tenants only', async () => {
    const s = await takeSample({ stats: async () => STATS, metrics: async () => METRICS }, 1234);
    assert.equal(s.at, 1234);
    assert.deepEqual(s.listeners.pg, { open: 2, total: 9, errors: 4, bytesIn: 10, bytesOut: 20 });
    assert.equal(Object.keys(s.tenants).length, TOP_TENANTS);
    assert.deepEqual(s.resolve, { count: 4, sumSeconds: 1 });
  });

  it('startHistory samples every interval, skipping a source that is not up yet', async () => {
    let up = false;
    let calls = 0;
    const history = startHistory({ stats: async () => (calls++, up ? STATS : Promise.reject(new Error('starting'))), metrics: async () => METRICS }, 100);
    try {
      assert.equal(history.snapshot().intervalMs, 100);
      while (calls === 0) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(history.snapshot().samples.length, 0, 'the failed sample is skipped');
      up = true;
      while (history.snapshot().samples.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual(history.snapshot().samples[0]?.listeners.pg?.errors, 4);
    } finally {
      history.stop();
    }
  });
});
