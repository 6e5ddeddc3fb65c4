/** The read/write split's protocol-independent part (docs/ARCHITECTURE.md, "Read/write split"). */
export { readWriteSplitSchema, mysqlReadWriteSplitSchema, type ReadWriteSplitSettings } from './config.ts';
export { ReplicaSet, type LagProbe, type ReplicaSetOptions, type ReplicaStats } from './replica-set.ts';
export { replicaSetFor, closeReplicaSets, replicaSetStats, type ReplicaSetKey, type RouteReplicaStats } from './registry.ts';
export { ReadAfterWrite } from './read-after-write.ts';
export { countStatement, countPinnedSession, splitCounts, type SplitTarget, type SplitReason, type SplitListenerCounts } from './metrics.ts';
export { splitStats, mergeSplitStats, type SplitStatsRow, type SplitReplicaRow } from './stats.ts';
