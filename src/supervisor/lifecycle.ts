/**
 * Graceful drain on SIGTERM/SIGINT for a process that runs listeners:
 * stop accepting, let sessions finish up to the deadline, then exit.
 * A second signal exits at once.
 */
import { log } from '../core/logger.ts';
import type { RunningProxy } from './proxy.ts';

let draining: Promise<void> | null = null;

export function drainAndExit(proxy: RunningProxy, timeoutMs: number, why: string): Promise<void> {
  if (draining !== null) return draining;
  log.info({ why, timeoutMs }, 'shutting down: no longer accepting connections');
  draining = proxy.drain(timeoutMs).then(
    () => {
      log.info('shutdown complete');
      process.exit(0);
    },
    (err: unknown) => {
      log.error({ err }, 'shutdown failed');
      process.exit(1);
    },
  );
  return draining;
}

export function exitOnSignals(proxy: RunningProxy, timeoutMs: number): void {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (draining !== null) {
        log.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      void drainAndExit(proxy, timeoutMs, signal);
    });
  }
}

/**
 * SIGHUP's default action would kill the process (a closing terminal sends
 * it). Reload is not built yet, so keep running with the current config.
 */
export function ignoreHangup(): void {
  process.on('SIGHUP', () => log.warn('SIGHUP received: reloading is not implemented yet; the running configuration is unchanged'));
}
