/** IPC between the supervisor and its workers. */
import type { Config } from '../config/schema.ts';
import type { BoundListener } from './proxy.ts';

export type SupervisorMessage =
  | { readonly type: 'start'; readonly config: Config; readonly ports: Array<[string, number]> }
  | { readonly type: 'drain' };

export type WorkerMessage = { readonly type: 'ready'; readonly bound: BoundListener[] } | { readonly type: 'failed'; readonly error: string };
