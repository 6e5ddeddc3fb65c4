/**
 * polyproxy as the campaign runs it: the built CLI (bin/polyproxy.js →
 * dist/) in a process group of its own, from a generated config file,
 * optionally under a wrapper (`prlimit --nofile=N:N`). Waits for the
 * "polyproxy ready" line (listener ports, admin port, worker pids), and
 * reads what the campaign asserts on: descriptors per worker
 * (/proc/<pid>/fd), the admin API, the log lines.
 */
import { mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { removeOnExit, spawnTracked } from '../../bench/lib/process.ts';
import type { Tracked } from '../../bench/lib/process.ts';
import { sleep } from '../../bench/lib/net.ts';
import type { ChaosContext } from './scenario.ts';

export interface Proxy {
  readonly proc: Tracked;
  /** The process that serves connections (the worker with workers: 1, every worker otherwise). */
  readonly workerPids: readonly number[];
  readonly ports: Record<string, number>;
  readonly admin: string | null;
  readonly configFile: string;
  /** Log lines (parsed JSON) seen so far. */
  readonly logs: Array<Record<string, unknown>>;
  /** Rewrites the config file (for a SIGHUP reload). */
  rewrite(config: Record<string, unknown>): void;
  stop(): Promise<void>;
}

export async function startProxy(ctx: ChaosContext, config: Record<string, unknown>, options: { name?: string; wrap?: readonly string[]; env?: NodeJS.ProcessEnv } = {}): Promise<Proxy> {
  const name = options.name ?? 'polyproxy';
  const dir = mkdtempSync(path.join(os.tmpdir(), 'polyproxy-chaos-'));
  const cleanup = removeOnExit(dir);
  const file = path.join(dir, 'polyproxy.json');
  // Written aside and renamed: a reload reading the file never sees it half written.
  const write = (c: Record<string, unknown>): void => {
    writeFileSync(`${file}.next`, `${JSON.stringify({ workers: 1, logLevel: 'warn', ...c }, null, 2)}\n`);
    renameSync(`${file}.next`, file);
  };
  write(config);
  const wrap = options.wrap ?? [];
  const argv = [...wrap, ctx.node, path.join(ctx.root, 'bin', 'polyproxy.js'), '--config', file];
  const proc = spawnTracked(argv[0] as string, argv.slice(1), { name, cwd: ctx.root, env: options.env ?? process.env });
  const logs: Array<Record<string, unknown>> = [];
  proc.onLine((line) => {
    try {
      logs.push(JSON.parse(line) as Record<string, unknown>);
      if (logs.length > 5000) logs.shift();
    } catch {
      // not a log line
    }
  });
  const stop = async (): Promise<void> => {
    await proc.stop('SIGTERM', 15_000);
    rmSync(dir, { recursive: true, force: true });
    cleanup.forget();
  };
  try {
    // Generous: workers load the resolver module each, and the machine may be busy.
    const line = await proc.waitForOutput(/polyproxy ready/, 60_000);
    const ready = JSON.parse(line) as { listeners: Array<{ name?: string; port: number }>; pids?: number[]; admin?: { port: number } };
    const ports = Object.fromEntries(ready.listeners.map((l, i) => [l.name ?? String(i), l.port]));
    return {
      proc,
      workerPids: ready.pids ?? [proc.pid],
      ports,
      admin: ready.admin === undefined ? null : `http://127.0.0.1:${ready.admin.port}`,
      configFile: file,
      logs,
      rewrite: write,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Open descriptors of a process (/proc/<pid>/fd); 0 once it is gone. */
export function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

export function fdTotal(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + fdCount(pid), 0);
}

/**
 * Waits (up to `timeoutMs`) until the workers' descriptors are back within
 * `tolerance` of `baseline`; returns the last count and whether it got there.
 */
export async function fdsSettle(pids: readonly number[], baseline: number, timeoutMs = 15_000, tolerance = 2): Promise<{ fds: number; flat: boolean; waitedMs: number }> {
  const started = Date.now();
  while (true) {
    const fds = fdTotal(pids);
    if (fds <= baseline + tolerance) return { fds, flat: true, waitedMs: Date.now() - started };
    if (Date.now() - started > timeoutMs) return { fds, flat: false, waitedMs: Date.now() - started };
    await sleep(250);
  }
}

/** Baseline descriptors once the proxy is idle: the lowest of a few readings. */
export async function fdBaseline(pids: readonly number[]): Promise<number> {
  let low = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 4; i++) {
    low = Math.min(low, fdTotal(pids));
    await sleep(150);
  }
  return low;
}

export interface EndpointState {
  readonly endpoint: string;
  readonly state: string;
}

/** Breaker state per endpoint, from the admin API. */
export async function endpointStates(admin: string): Promise<Map<string, string>> {
  const res = await fetch(`${admin}/api/stats`);
  const stats = (await res.json()) as { endpoints?: EndpointState[] };
  return new Map((stats.endpoints ?? []).map((e) => [e.endpoint, e.state]));
}

/** Sum of a Prometheus counter's samples whose labels match `labels` (substring). */
export async function metric(admin: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${admin}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    if (labels !== '' && !rest.includes(labels)) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum += value;
  }
  return sum;
}
