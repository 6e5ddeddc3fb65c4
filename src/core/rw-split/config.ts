/**
 * `readWriteSplit` on a postgres or mysql listener: how reads outside a
 * transaction are sent to a route's replicas. Both listener schemas use
 * this one (mysql without `readOnlyFunctions`, which names PostgreSQL
 * functions).
 */
import { z } from 'zod';

export const readWriteSplitSchema = z.strictObject({
  /** A replica whose last probed lag is over this (or not known yet, or down) gets no reads. */
  maxReplicaLagMs: z.number().int().min(0).default(1000),
  /** After a client's transaction that wrote commits, its reads go to the primary for this long. 0 = off. */
  readAfterWriteMs: z.number().int().min(0).default(0),
  /** PostgreSQL: functions (besides the built-in read-only ones) a read may call and still go to a replica. */
  readOnlyFunctions: z.array(z.string().min(1)).default([]),
  /** How often each replica's lag is probed. */
  lagProbeIntervalMs: z.number().int().min(100).default(1000),
  /** Among healthy replicas: each in turn, or the one with the fewest sessions reading from it. */
  balance: z.enum(['round-robin', 'least-connections']).default('round-robin'),
});

export type ReadWriteSplitSettings = z.output<typeof readWriteSplitSchema>;

/** MySQL's form: no readOnlyFunctions (the MySQL classifier has its own list). */
export const mysqlReadWriteSplitSchema = readWriteSplitSchema.omit({ readOnlyFunctions: true });
