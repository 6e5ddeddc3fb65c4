import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { pino } from 'pino';
import { readWriteSplitSchema } from '../../../../../src/core/rw-split/config.ts';
import { closeReplicaSets, replicaSetFor } from '../../../../../src/core/rw-split/registry.ts';
import { ReplicaSet } from '../../../../../src/core/rw-split/replica-set.ts';
import { splitCounts } from '../../../../../src/core/rw-split/metrics.ts';
import { parseEndpoint } from '../../../../../src/core/endpoint.ts';
import { PoolManager } from '../../../../../src/protocols/postgres/pool/server-pool.ts';
import { ClientStatements, StatementRegistry } from '../../../../../src/protocols/postgres/pool/prepared-statements.ts';
import { newPoolStats } from '../../../../../src/protocols/postgres/pool/stats.ts';
import { loadPostgresParser } from '../../../../../src/protocols/postgres/split/classify.ts';
import { PostgresSplit } from '../../../../../src/protocols/postgres/split/session-split.ts';

const log = pino({ level: 'silent' });
before(() => loadPostgresParser());

function query(sql: string): Buffer {
  const text = Buffer.from(`${sql}\0`);
  const out = Buffer.alloc(5 + text.length);
  out[0] = 0x51;
  out.writeInt32BE(4 + text.length, 1);
  text.copy(out, 5);
  return out;
}

/** The route's replica set, made here with a probe that answers `lag` (the split finds it in the registry). */
async function healthyReplica(listener: string, settings: Record<string, unknown>): Promise<void> {
  const set = replicaSetFor({ listener, route: 'db', replicas: ['127.0.0.1:2'] }, () => new ReplicaSet({ listener, route: 'db', replicas: ['127.0.0.1:2'], settings: readWriteSplitSchema.parse(settings), probe: () => Promise.resolve(0), log, autoProbe: false }));
  await set.probeNow();
}

function setup(listener: string, settings: Record<string, unknown> = {}) {
  const manager = new PoolManager({
    settings: { mode: 'transaction', size: 2, minSize: 0, maxClientConnections: 0, maxServerConnectionsPerBackend: 0, queueTimeoutMs: 1000, serverIdleTimeoutMs: 60000 },
    login: () => Promise.reject(new Error('no login in this test')),
    log,
    connectTimeoutMs: 1000,
    loginTimeoutMs: 1000,
    tcpKeepAliveMs: 0,
    makeStats: (pool) => newPoolStats(listener, pool, 'transaction'),
  });
  const split = new PostgresSplit({ listener, settings: readWriteSplitSchema.parse({ lagProbeIntervalMs: 60000, ...settings }), manager, log });
  const primary = manager.pool(parseEndpoint('127.0.0.1:1'), 'db', 'app', { kind: 'none' });
  const session = split.session('db', ['127.0.0.1:2'], primary);
  const statements = new ClientStatements(new StatementRegistry());
  const choose = (sql: string) => {
    const held = query(sql);
    return session.choose(held, held.length, statements);
  };
  return { manager, split, primary, session, choose };
}

test('choose: reads go to the replica\'s pool (same database and user), the rest to the primary; a failed replica falls back once and is marked down', async () => {
  const cold = setup('u0');
  assert.equal(cold.choose('select 1'), cold.primary, 'a replica not probed yet gets no reads');
  cold.session.end();
  closeReplicaSets('u0');
  await healthyReplica('u1', {});
  const { primary, session, choose } = setup('u1');
  const replica = choose('select 1');
  assert.notEqual(replica, primary);
  assert.equal(replica?.endpoint.label, '127.0.0.1:2');
  assert.deepEqual([replica?.database, replica?.user], ['db', 'app']);
  assert.equal(session.set.stats()[0]?.sessions, 1);
  assert.equal(choose('insert into t values (1)'), primary);
  assert.equal(session.set.stats()[0]?.sessions, 0, 'released when the next choice is made');
  // A busy replica (53300) is not marked down; a refused connect is.
  assert.equal(choose('select 2'), replica);
  assert.equal(session.failed('53300', 'busy'), true);
  assert.equal(session.set.stats()[0]?.up, true);
  assert.equal(choose('select 2'), primary, 'fallback: the same messages go to the primary');
  assert.equal(choose('select 2'), replica);
  assert.equal(session.failed('08001', 'connect ECONNREFUSED'), true);
  assert.equal(session.set.stats()[0]?.up, false);
  assert.equal(choose('select 2'), primary);
  assert.equal(choose('select 2'), primary, 'down until a probe succeeds');
  assert.equal(session.failed('08001', 'the primary\'s own failure'), false);
  const counts = splitCounts().find((c) => c.listener === 'u1');
  assert.equal(counts, undefined, 'statements are counted when forwarded (observe), not when chosen');
  session.end();
  closeReplicaSets('u1');
});

test('choose: a pin holds the primary for the rest of the session; readAfterWriteMs sends reads to the primary after a write', async () => {
  await healthyReplica('u2', { readAfterWriteMs: 60000 });
  const { primary, session, choose } = setup('u2', { readAfterWriteMs: 60000 });
  assert.notEqual(choose('select 1'), primary);
  assert.equal(choose('update t set a = 1'), primary);
  assert.equal(choose('select 1'), primary, 'read-after-write');
  assert.equal(session.holdsServer, false);
  assert.equal(choose('create temp table x (a int)'), primary);
  assert.equal(session.pinned, true);
  assert.equal(session.holdsServer, true);
  assert.equal(splitCounts().find((c) => c.listener === 'u2')?.pinnedSessions, 1);
  session.end();
  assert.equal(splitCounts().find((c) => c.listener === 'u2')?.pinnedSessions, 0);
  closeReplicaSets('u2');
});

test('choose: waits for a whole exchange (null), up to the held limit', () => {
  const { primary, session } = setup('u3');
  const statements = new ClientStatements(new StatementRegistry());
  // A Parse whose body has not all arrived yet.
  const big = Buffer.alloc(64 * 1024);
  big[0] = 0x50;
  big.writeInt32BE(100_000, 1);
  assert.equal(session.choose(big, 1000, statements), null);
  assert.equal(session.choose(big, 61 * 1024, statements), primary, 'past the limit: the primary');
  session.end();
  closeReplicaSets('u3');
});
