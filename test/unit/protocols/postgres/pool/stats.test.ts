/** Pool figures: rows for /api/stats, labels bounded (later pools share "_other"), rows added across workers. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_POOL_LABELS, addRows, forgetPools, newPoolStats, observeWait, poolRows } from '../../../../../src/protocols/postgres/pool/stats.ts';
import { registry } from '../../../../../src/core/metrics.ts';

describe('pool stats', () => {
  it('rows carry the live counts; pools past the label bound share "_other"', async () => {
    const listener = 'stats-test';
    const made = Array.from({ length: MAX_POOL_LABELS + 3 }, (_, i) => newPoolStats(listener, { database: `db${i}`, user: 'u', endpoint: 'h:1' }, 'transaction'));
    (made[0] as (typeof made)[number]).read = () => ({ waiting: 2, active: 3, idle: 1, opening: 0 });
    (made[0] as (typeof made)[number]).transactions = 5;
    observeWait(made[0] as (typeof made)[number], 250);
    const rows = poolRows().filter((r) => r.listener === listener);
    const first = rows.find((r) => r.pool === 'db0/u@h:1');
    assert.deepEqual([first?.clientsWaiting, first?.serversActive, first?.serversIdle, first?.transactions, first?.waitSecondsTotal], [2, 3, 1, 5, 0.25]);
    assert.ok(rows.length <= MAX_POOL_LABELS + 1);
    assert.ok(rows.some((r) => r.pool === '_other'));
    const metrics = await registry.getSingleMetricAsString('polyproxy_pg_pool_wait_seconds');
    assert.match(metrics, /polyproxy_pg_pool_wait_seconds_count\{listener="stats-test",pool="db0\/u@h:1"\} 1/);
    forgetPools(listener);
    assert.equal(poolRows().filter((r) => r.listener === listener).length, 0);
  });

  it('addRows sums every figure', () => {
    const row = { listener: 'l', pool: 'p', mode: 'session', clientsActive: 1, clientsWaiting: 2, clients: 3, serversActive: 4, serversIdle: 5, serversLoggingIn: 6, serversOpened: 7, transactions: 8, queries: 9, queueTimeouts: 10, waitSecondsTotal: 11 };
    const sum = addRows(row, row);
    assert.deepEqual(sum, { ...row, clientsActive: 2, clientsWaiting: 4, clients: 6, serversActive: 8, serversIdle: 10, serversLoggingIn: 12, serversOpened: 14, transactions: 16, queries: 18, queueTimeouts: 20, waitSecondsTotal: 22 });
  });
});
