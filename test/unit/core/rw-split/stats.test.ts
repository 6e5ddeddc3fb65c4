import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mergeSplitStats } from '../../../../src/core/rw-split/stats.ts';
import type { SplitStatsRow } from '../../../../src/core/rw-split/stats.ts';

test('mergeSplitStats: counts add up; a replica is up only if every worker sees it up; the worst lag wins', () => {
  const a: SplitStatsRow[] = [
    {
      listener: 'pg',
      pinnedSessions: 1,
      statements: [{ target: 'replica', reason: 'read', count: 5 }],
      routes: [{ route: 'shop', replicas: [{ endpoint: 'r1', up: true, lagMs: 10, sessions: 1 }] }],
    },
  ];
  const b: SplitStatsRow[] = [
    {
      listener: 'pg',
      pinnedSessions: 2,
      statements: [
        { target: 'replica', reason: 'read', count: 3 },
        { target: 'primary', reason: 'write', count: 4 },
      ],
      routes: [{ route: 'shop', replicas: [{ endpoint: 'r1', up: false, lagMs: null, sessions: 0 }] }],
    },
    { listener: 'my', pinnedSessions: 0, statements: [], routes: [] },
  ];
  assert.deepEqual(mergeSplitStats([a, b]), [
    { listener: 'my', pinnedSessions: 0, statements: [], routes: [] },
    {
      listener: 'pg',
      pinnedSessions: 3,
      statements: [
        { target: 'replica', reason: 'read', count: 8 },
        { target: 'primary', reason: 'write', count: 4 },
      ],
      routes: [{ route: 'shop', replicas: [{ endpoint: 'r1', up: false, lagMs: 10, sessions: 1 }] }],
    },
  ]);
});
