/**
 * Starting the things a scenario measures: polyproxy (built CLI), its
 * anchors (PgBouncer, the naive Node pipe proxy, the raw-handle "Node floor"
 * proxy) and helper processes — all tracked, in their own process groups,
 * optionally pinned with taskset.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, waitForPort } from './net.ts';
import { pinned } from './machine.ts';
import { removeOnExit, runChecked, spawnTracked } from './process.ts';
import type { Tracked } from './process.ts';
import type { ScenarioContext } from './scenario.ts';

export interface Running {
  readonly name: string;
  readonly port: number;
  /** The pid whose RSS is the server's (taskset execs, so it is the child itself). */
  readonly pid: number;
  readonly proc: Tracked;
  stop(): Promise<void>;
}

const BENCH_LIB = path.dirname(new URL(import.meta.url).pathname);

/** `tsc -p tsconfig.build.json`: the CLI runs dist/. */
export async function buildPolyproxy(ctx: ScenarioContext): Promise<void> {
  const tsc = path.join(ctx.root, 'node_modules', 'typescript', 'bin', 'tsc');
  await runChecked(ctx.node, [tsc, '-p', 'tsconfig.build.json'], { name: 'tsc', cwd: ctx.root });
}

export interface PolyproxyOptions {
  /** host:port of the backend. */
  readonly backend: string;
  readonly protocol?: string;
  /** Extra Node flags (e.g. --cpu-prof). */
  readonly nodeFlags?: readonly string[];
  /** Worker processes (default 1). More than one: not pinned (the workers are meant to spread over the cores). */
  readonly workers?: number;
}

/** `node bin/polyproxy.js --protocol P --port N --backend B --host 127.0.0.1 --log-level warn` (one worker unless `workers`). */
export async function startPolyproxy(ctx: ScenarioContext, options: PolyproxyOptions): Promise<Running> {
  const port = await freePort();
  const extra = (process.env.BENCH_POLYPROXY_NODE_FLAGS ?? '').split(/\s+/).filter((s) => s !== '');
  const args = [
    ...(options.nodeFlags ?? []),
    ...extra,
    path.join(ctx.root, 'bin', 'polyproxy.js'),
    '--protocol',
    options.protocol ?? 'postgres',
    '--port',
    String(port),
    '--backend',
    options.backend,
    '--host',
    '127.0.0.1',
    '--workers',
    String(options.workers ?? 1),
    '--log-level',
    'warn',
  ];
  if (process.env.BENCH_LIMITS_OTHER === '1') args.splice(args.indexOf('--protocol'), 12, '--config', limitsOtherConfig(options, port));
  const workers = options.workers ?? 1;
  const [cmd, cmdArgs] = pinned(workers > 1 ? -1 : ctx.proxyCpu, ctx.node, args);
  const proc = spawnTracked(cmd, cmdArgs, { name: workers > 1 ? `polyproxy-${workers}w` : 'polyproxy', cwd: ctx.root });
  // At --log-level warn the "polyproxy ready" line (info) is not printed: wait for the port.
  await waitForPort(port, 15_000, proc);
  return { name: 'polyproxy', port, pid: proc.pid, proc, stop: () => proc.stop('SIGTERM', 10_000) };
}

/** The note under a table with a `workers: 2` row next to the one-worker row. */
export const TWO_WORKERS_NOTE =
  'The "2 workers" row is the same polyproxy with `workers: 2` (a supervisor and two worker processes sharing the port with SO_REUSEPORT), not pinned, so the kernel spreads it over both cores — which the load generator and backend share; its CPU figure is the supervisor and workers together. It shows how polyproxy scales past the single-threaded anchors on this 2-core machine, not a per-core figure.';

/**
 * BENCH_LIMITS_OTHER=1: the same listener from a config file that also sets
 * tenant limits for 100 OTHER tenants (every kind of limit), so a run
 * measures what limits cost a tenant that has none (fair share counted).
 */
function limitsOtherConfig(options: PolyproxyOptions, port: number): string {
  const tenants: Record<string, unknown> = {};
  for (let i = 0; i < 100; i++) tenants[`other-${i}`] = { maxConnections: 5, connectionsPerSecond: 10, requestsPerSecond: 100, bandwidth: { inBytesPerSecond: 1048576, outBytesPerSecond: 1048576 } };
  const config = { workers: 1, logLevel: 'warn', limits: { tenants }, listeners: [{ protocol: options.protocol ?? 'postgres', host: '127.0.0.1', port, backend: options.backend }] };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pp-bench-limits-'));
  removeOnExit(dir);
  const file = path.join(dir, 'polyproxy.json');
  writeFileSync(file, JSON.stringify(config));
  return file;
}

/** A bench/lib Node script that prints {"type":"ready","port":N} when listening. */
async function startNodeHelper(ctx: ScenarioContext, name: string, script: string, args: readonly string[], cpu: number, nodeFlags: readonly string[] = []): Promise<Running> {
  const [cmd, cmdArgs] = pinned(cpu, ctx.node, [...nodeFlags, path.join(BENCH_LIB, script), ...args]);
  const proc = spawnTracked(cmd, cmdArgs, { name, cwd: ctx.root, stdin: true });
  const line = await proc.waitForOutput(/"type":"ready"/, 15_000);
  const { port } = JSON.parse(line) as { port: number };
  return { name, port, pid: proc.pid, proc, stop: () => proc.stop('SIGTERM', 5000) };
}

/** The naive `pipe()` Node proxy (anchor), pinned like polyproxy. */
export function startPipeProxy(ctx: ScenarioContext, backend: string, nodeFlags: readonly string[] = []): Promise<Running> {
  return startNodeHelper(ctx, 'pipe-proxy', 'pipe-proxy.ts', ['--backend', backend], ctx.proxyCpu, nodeFlags);
}

/**
 * The "Node floor" anchor (bench/lib/raw-proxy.ts): libuv TCP handles driven
 * directly, no net.Socket or streams — the cheapest proxy a Node process can
 * run. Pinned like polyproxy.
 */
export function startRawProxy(ctx: ScenarioContext, backend: string, nodeFlags: readonly string[] = []): Promise<Running> {
  return startNodeHelper(ctx, 'raw-proxy', 'raw-proxy.ts', ['--backend', backend], ctx.proxyCpu, nodeFlags);
}

/** The embedded PostgreSQL demo server in its own process (unpinned). */
export function startPgBackend(ctx: ScenarioContext, name = 'bench'): Promise<Running> {
  return startNodeHelper(ctx, 'pg-backend', 'pg-backend-process.ts', ['--name', name], -1);
}

export interface PgbouncerOptions {
  /** `[databases]` lines: name → connection string. */
  readonly databases: Record<string, string>;
  readonly poolMode?: 'session' | 'transaction';
  readonly maxClientConn?: number;
  readonly defaultPoolSize?: number;
}

/**
 * PgBouncer with a generated ini in a temp dir (trust auth, no unix socket),
 * pinned like polyproxy. PgBouncer refuses to run as root: as root it is
 * started with `-u postgres` and the temp dir is handed to that user.
 */
export async function startPgbouncer(ctx: ScenarioContext, options: PgbouncerOptions): Promise<Running> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'polyproxy-bench-pgbouncer-'));
  const cleanup = removeOnExit(dir);
  const ini = path.join(dir, 'pgbouncer.ini');
  const users = path.join(dir, 'users.txt');
  writeFileSync(users, '"postgres" ""\n"bench" ""\n');
  writeFileSync(
    ini,
    [
      '[databases]',
      ...Object.entries(options.databases).map(([name, conn]) => `${name} = ${conn}`),
      '',
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'auth_type = trust',
      `auth_file = ${users}`,
      `pool_mode = ${options.poolMode ?? 'session'}`,
      `max_client_conn = ${options.maxClientConn ?? 200}`,
      `default_pool_size = ${options.defaultPoolSize ?? 20}`,
      'unix_socket_dir =',
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
      'pidfile =',
      'log_connections = 0',
      'log_disconnections = 0',
      '',
    ].join('\n'),
  );
  const args: string[] = [];
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    for (const f of [dir, ini, users]) chownSync(f, uid, gid);
    args.push('-u', 'postgres');
  }
  args.push(ini);
  const [cmd, cmdArgs] = pinned(ctx.proxyCpu, '/usr/sbin/pgbouncer', args);
  const proc = spawnTracked(cmd, cmdArgs, { name: 'pgbouncer', cwd: dir });
  try {
    await waitForPort(port, 15_000, proc);
  } catch (err) {
    await proc.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    cleanup.forget();
    throw err;
  }
  return {
    name: 'pgbouncer',
    port,
    pid: proc.pid,
    proc,
    stop: async () => {
      await proc.stop('SIGTERM', 5000);
      rmSync(dir, { recursive: true, force: true });
      cleanup.forget();
    },
  };
}
