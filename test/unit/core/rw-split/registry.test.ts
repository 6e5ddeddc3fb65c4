import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { readWriteSplitSchema, mysqlReadWriteSplitSchema } from '../../../../src/core/rw-split/config.ts';
import { countPinnedSession, countStatement, splitCounts } from '../../../../src/core/rw-split/metrics.ts';
import { registry } from '../../../../src/core/metrics.ts';
import { closeReplicaSets, replicaSetFor, replicaSetStats } from '../../../../src/core/rw-split/registry.ts';
import { ReplicaSet } from '../../../../src/core/rw-split/replica-set.ts';

const log = pino({ level: 'silent' });
const settings = readWriteSplitSchema.parse({});

function make(listener: string, replicas: string[]): () => ReplicaSet {
  return () => new ReplicaSet({ listener, route: 'shop', replicas, settings, probe: () => Promise.resolve(0), log, autoProbe: false });
}

test('replicaSetFor: one set per (listener, route, replicas); a changed list replaces and closes the old set', async () => {
  const a = replicaSetFor({ listener: 'l1', route: 'shop', replicas: ['r1', 'r2'] }, make('l1', ['r1', 'r2']));
  assert.equal(replicaSetFor({ listener: 'l1', route: 'shop', replicas: ['r1', 'r2'] }, () => assert.fail('made twice')), a);
  const other = replicaSetFor({ listener: 'l2', route: 'shop', replicas: ['r1', 'r2'] }, make('l2', ['r1', 'r2']));
  assert.notEqual(other, a);
  await a.probeNow();
  assert.equal(a.pick(), 'r1');
  const b = replicaSetFor({ listener: 'l1', route: 'shop', replicas: ['r3'] }, make('l1', ['r3']));
  assert.notEqual(b, a);
  assert.equal(a.pick(), undefined, 'the replaced set is closed');
  assert.deepEqual(
    replicaSetStats().filter((s) => s.listener === 'l1'),
    [{ listener: 'l1', route: 'shop', replicas: [{ endpoint: 'r3', up: false, lagMs: undefined, sessions: 0 }] }],
  );
  closeReplicaSets('l1');
  closeReplicaSets('l2');
  assert.deepEqual(replicaSetStats().filter((s) => s.listener === 'l1' || s.listener === 'l2'), []);
});

test('config: defaults; mysql form refuses readOnlyFunctions', () => {
  assert.deepEqual(readWriteSplitSchema.parse({}), { maxReplicaLagMs: 1000, readAfterWriteMs: 0, readOnlyFunctions: [], lagProbeIntervalMs: 1000, balance: 'round-robin' });
  assert.equal(readWriteSplitSchema.safeParse({ nope: 1 }).success, false);
  assert.equal(mysqlReadWriteSplitSchema.safeParse({ readOnlyFunctions: ['f'] }).success, false);
  assert.equal(mysqlReadWriteSplitSchema.safeParse({ maxReplicaLagMs: 5 }).success, true);
});

test('metrics: statements and pinned sessions are counted per listener, in Prometheus and for /api/stats', async () => {
  countStatement('m1', 'replica', 'read');
  countStatement('m1', 'replica', 'read');
  countStatement('m1', 'primary', 'write');
  countPinnedSession('m1', 1);
  countPinnedSession('m1', 1);
  countPinnedSession('m1', -1);
  const mine = splitCounts().find((c) => c.listener === 'm1')!;
  assert.equal(mine.pinnedSessions, 1);
  assert.deepEqual(
    [...mine.statements].sort((x, y) => x.reason.localeCompare(y.reason)),
    [
      { target: 'replica', reason: 'read', count: 2 },
      { target: 'primary', reason: 'write', count: 1 },
    ],
  );
  const text = await registry.metrics();
  assert.match(text, /polyproxy_rw_statements_total\{listener="m1",target="replica",reason="read"\} 2/);
  assert.match(text, /polyproxy_rw_pinned_sessions\{listener="m1"\} 1/);
});

test('close: the probe\'s own close runs (kept probe connections end)', () => {
  let closed = 0;
  const probe = Object.assign(() => Promise.resolve(0), { close: () => closed++ });
  const set = new ReplicaSet({ listener: 'c1', route: 'shop', replicas: ['r1'], settings, probe, log, autoProbe: false });
  set.close();
  assert.equal(closed, 1);
});
