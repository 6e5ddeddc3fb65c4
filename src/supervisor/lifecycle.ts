/**
 * Graceful drain on SIGTERM/SIGINT for a process that runs listeners:
 * stop accepting, let sessions finish up to the deadline, then exit.
 * A second signal exits at once.
 */
import { log } from '../core/logger.ts';
import { exitWhenIdle } from './exit.ts';
import type { RunningProxy } from './proxy.ts';

let draining: Promise<void> | null = null;

/** A drain has started (the worker's own exit closes its IPC channel: that 'disconnect' is not the supervisor going). */
export function isDraining(): boolean {
  return draining !== null;
}

/** Something that closes after the drain, e.g. the admin server (it answers "not ready" meanwhile). */
export interface ClosesAfterDrain {
  close(): Promise<void>;
}

export function drainAndExit(proxy: RunningProxy, timeoutMs: number, why: string, after: ClosesAfterDrain | null = null): Promise<void> {
  if (draining !== null) return draining;
  log.info({ why, timeoutMs }, 'shutting down: no longer accepting connections');
  draining = proxy.drain(timeoutMs).then(async () => {
    await after?.close();
  }).then(
    () => {
      log.info('shutdown complete');
      exitWhenIdle(0);
    },
    (err: unknown) => {
      log.error({ err }, 'shutdown failed');
      exitWhenIdle(1);
    },
  );
  return draining;
}


/**
 * Workers: SIGHUP's default action would kill the process (a closing
 * terminal sends it to the whole group). The supervisor reloads the file
 * and sends the new config to its workers.
 */
export function ignoreHangup(): void {
  process.on('SIGHUP', noop);
}

function noop(): void {}
