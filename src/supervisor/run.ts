/**
 * Runs the proxy in the foreground until a signal: one process for
 * `workers: 1`, else a supervisor with workers. Starts the admin server
 * first (so /readyz answers 503 until every listener is bound), drains on
 * SIGTERM/SIGINT, and reloads the config file on SIGHUP.
 */
import type { AddressInfo } from 'node:net';
import type { AdminServer } from '../admin/server.ts';
import { createAdminServer } from '../admin/server.ts';
import type { AdminSource } from '../admin/source.ts';
import { ConfigError } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { announce, log } from '../core/logger.ts';
import { collectProcessMetrics, registry } from '../core/metrics.ts';
import { clusterAdminSource, localAdminSource } from './admin-source.ts';
import { drainAndExit } from './lifecycle.ts';
import { exitWhenIdle } from './exit.ts';
import { watchParent } from './parent-watch.ts';
import { startProxy } from './proxy.ts';
import type { BoundListener } from './proxy.ts';
import { runSupervisor } from './supervisor.ts';

export interface RunOptions {
  /** Reads and validates the config file again (SIGHUP); null when there is no file to reload. */
  readonly reload: (() => Promise<Config>) | null;
}

export interface Running {
  readonly bound: readonly BoundListener[];
  readonly admin: AddressInfo | null;
}

export async function run(config: Config, options: RunOptions): Promise<Running> {
  const timeoutMs = config.shutdownTimeoutSeconds * 1000;
  // Handlers go in first: a supervising script may signal the moment it
  // reads "polyproxy ready" (and SIGHUP's default action kills).
  const control: Control = { apply: null, drain: null, draining: false };
  onSignals(control, timeoutMs, options, config);
  let source: AdminSource | null = null;
  const ready = (): boolean => source !== null && !control.draining;
  const admin = config.admin === undefined ? null : await startAdmin(config.admin, () => source, ready);

  let bound: readonly BoundListener[];
  if (config.workers === 1) {
    collectProcessMetrics();
    const proxy = await startProxy(config);
    source = localAdminSource(proxy, ready);
    control.apply = (next) => proxy.reload(next);
    control.drain = () => drainAndExit(proxy, timeoutMs, 'signal', admin);
    bound = proxy.bound;
    announce({ listeners: proxy.bound, workers: 1, ...(admin === null ? {} : { admin: admin.address }) }, 'polyproxy ready');
  } else {
    const supervisor = await runSupervisor(config);
    source = clusterAdminSource(supervisor.queries, ready);
    control.apply = (next) => supervisor.reload(next);
    control.drain = () =>
      supervisor
        .drain()
        .then(() => admin?.close())
        .then(() => {
          log.info('shutdown complete');
          exitWhenIdle(0);
        });
    bound = supervisor.bound;
    announce({ listeners: supervisor.bound, workers: config.workers, pids: supervisor.workers(), ...(admin === null ? {} : { admin: admin.address }) }, 'polyproxy ready');
  }

  return { bound, admin: admin?.address ?? null };
}

/**
 * SIGTERM/SIGINT drain (a second one exits at once; before the proxy is up
 * they just exit), SIGHUP reloads the file (ignored before the proxy is up).
 */
/** What the signal handlers act on; filled in once the proxy is up. */
interface Control {
  apply: ((next: Config) => Promise<string[]>) | null;
  drain: (() => Promise<void>) | null;
  draining: boolean;
}

function onSignals(control: Control, timeoutMs: number, options: RunOptions, config: Config): void {
  const stop = (signal: string): void => {
    if (control.drain === null) process.exit(0);
    if (control.draining) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    control.draining = true;
    log.info({ signal, timeoutMs }, 'shutting down: no longer accepting connections');
    void control.drain();
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => stop(signal));
  // npx/npm run: the shell npm signalled died without passing it on.
  watchParent(() => {
    if (!control.draining) stop('parent exited');
  });
  let reloading = false;
  process.on('SIGHUP', () => {
    if (options.reload === null) {
      log.warn('SIGHUP: started without a config file, nothing to reload');
      return;
    }
    if (control.apply === null || reloading || control.draining) return;
    reloading = true;
    void reload(options.reload, config, control.apply).finally(() => {
      reloading = false;
    });
  });
}

/** Validate first; a bad file leaves the running config in place. */
async function reload(read: () => Promise<Config>, running: Config, apply: (next: Config) => Promise<string[]>): Promise<void> {
  let next: Config;
  try {
    next = await read();
  } catch (err) {
    const message = err instanceof ConfigError ? err.message : (err as Error).message;
    log.error({ err: message }, 'reload refused: the config file is invalid; the running configuration is unchanged');
    return;
  }
  // Process layout is fixed at start.
  next = { ...next, workers: running.workers, admin: running.admin };
  try {
    const warnings = await apply(next);
    for (const warning of warnings) log.warn(warning);
    announce({ routes: Object.keys(next.routes).length, listeners: next.listeners.length }, 'configuration reloaded');
  } catch (err) {
    log.error({ err: (err as Error).message }, 'reload failed; the running configuration is unchanged');
  }
}

async function startAdmin(settings: { host: string; port: number; allowedHosts?: readonly string[] | undefined; historyIntervalMs: number }, current: () => AdminSource | null, ready: () => boolean): Promise<AdminServer> {
  // Until the proxy is up the admin server answers, but not ready.
  const notYet = (): Promise<never> => Promise.reject(new Error('the proxy is still starting'));
  const source: AdminSource = {
    metrics: () => current()?.metrics() ?? registry.metrics(),
    stats: () => current()?.stats() ?? notYet(),
    purge: (id) => current()?.purge(id) ?? notYet(),
    ready,
  };
  const server = createAdminServer(source, { host: settings.host, port: settings.port, log, historyIntervalMs: settings.historyIntervalMs, ...(settings.allowedHosts === undefined ? {} : { allowedHosts: settings.allowedHosts }) });
  await server.listen();
  return server;
}
