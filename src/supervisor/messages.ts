/** IPC between the supervisor and its workers. */
import type { Config } from '../config/schema.ts';
import type { BoundListener } from './proxy.ts';

export type SupervisorMessage = { readonly type: 'start'; readonly config: Config; readonly ports: Array<[string, number]> } | { readonly type: 'drain' };

export type WorkerMessage = { readonly type: 'ready'; readonly bound: BoundListener[] } | { readonly type: 'failed'; readonly error: string };

/*
 * The supervisor's questions to every worker go over core/cluster.ts ask
 * (answered by onAsk handlers in worker.ts, relayed by ask-relay.ts).
 */
/** Admin queries (metrics scrape, stats, purge); the payload is an AdminQuery. */
export const ADMIN_TOPIC = 'supervisor:admin';
/** SIGHUP: the payload is the validated Config; the answer's result the worker's warnings. */
export const RELOAD_TOPIC = 'supervisor:reload';

export type AdminQuery = { readonly op: 'metrics' } | { readonly op: 'stats' } | { readonly op: 'purge'; readonly resourceId: string };

/** A worker's answer: its result, or why it failed. */
export interface WorkerAnswer<T = unknown> {
  readonly result?: T;
  readonly error?: string;
}
