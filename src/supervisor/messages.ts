/** IPC between the supervisor and its workers. */
import type { Config } from '../config/schema.ts';
import type { BoundListener } from './proxy.ts';

/** Admin queries the supervisor sends every worker (metrics scrape, stats, purge). */
export type AdminQuery = { readonly op: 'metrics' } | { readonly op: 'stats' } | { readonly op: 'purge'; readonly resourceId: string };

export type SupervisorMessage =
  | { readonly type: 'start'; readonly config: Config; readonly ports: Array<[string, number]> }
  | { readonly type: 'drain' }
  | { readonly type: 'admin'; readonly id: number; readonly query: AdminQuery }
  | { readonly type: 'reload'; readonly id: number; readonly config: Config };

export type WorkerMessage =
  | { readonly type: 'ready'; readonly bound: BoundListener[] }
  | { readonly type: 'failed'; readonly error: string }
  | { readonly type: 'reply'; readonly id: number; readonly result?: unknown; readonly error?: string };
