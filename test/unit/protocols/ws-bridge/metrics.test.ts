import assert from 'node:assert/strict';
import { test } from 'node:test';
import { registry } from '../../../../src/core/metrics.ts';
import { BridgeStats, METRICS, formatMetrics, snapshot, sumSnapshots, trackStats, untrackStats } from '../../../../src/protocols/ws-bridge/metrics.ts';

test('formatMetrics: one series per metric for the listener, Prometheus text', () => {
  const s = new BridgeStats();
  s.connectionsOpened = 3;
  s.requestsInFlight = 2;
  const text = formatMetrics('w"s', snapshot(s));
  assert.match(text, /^# HELP polyproxy_wsbridge_connections_opened_total .+\n# TYPE polyproxy_wsbridge_connections_opened_total counter\npolyproxy_wsbridge_connections_opened_total\{listener="w\\"s"\} 3\n/);
  assert.match(text, /# TYPE polyproxy_wsbridge_requests_in_flight gauge\npolyproxy_wsbridge_requests_in_flight\{listener="w\\"s"\} 2\n/);
  assert.equal(text.split('\n').filter((l) => l.startsWith('polyproxy_')).length, METRICS.length);
  for (const name of ['connections_opened_total', 'connections_closed_total', 'requests_started_total', 'requests_failed_total', 'requests_succeeded_total', 'messages_failed_total', 'connections_open', 'requests_in_flight']) {
    assert.ok(text.includes(`polyproxy_wsbridge_${name}{`), name);
  }
});

test('sumSnapshots adds field by field (workers)', () => {
  const a = new BridgeStats();
  a.requestsStarted = 5;
  a.connectionsOpen = 1;
  const b = new BridgeStats();
  b.requestsStarted = 7;
  b.connectionsOpen = 2;
  const total = sumSnapshots([snapshot(a), snapshot(b)]);
  assert.equal(total.requestsStarted, 12);
  assert.equal(total.connectionsOpen, 3);
  assert.equal(total.requestsFailed, 0);
});

test('the shared registry reads live stats at scrape time, with a listener label', async () => {
  const s = new BridgeStats();
  trackStats('unit-ws', s);
  s.requestsFailed = 4;
  s.connectionsOpen = 9;
  const text = await registry.metrics();
  assert.match(text, /polyproxy_wsbridge_requests_failed_total\{listener="unit-ws"\} 4/);
  assert.match(text, /polyproxy_wsbridge_connections_open\{listener="unit-ws"\} 9/);
  s.requestsFailed = 6;
  assert.match(await registry.metrics(), /polyproxy_wsbridge_requests_failed_total\{listener="unit-ws"\} 6/);
  untrackStats('unit-ws', s);
  assert.doesNotMatch(await registry.metrics(), /listener="unit-ws"/);
});
