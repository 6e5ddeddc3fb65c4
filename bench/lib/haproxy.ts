/**
 * HAProxy in TCP mode (anchor for raw TCP relaying): one thread
 * (`nbthread 1`), foreground (`-db`), generated config in a temp dir, pinned
 * like polyproxy. `splice: true` adds `option splice-auto` (kernel splice()
 * between the sockets, HAProxy's zero-copy bulk path).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pinned } from './machine.ts';
import { freePort, waitForPort } from './net.ts';
import { removeOnExit, runCommand, spawnTracked } from './process.ts';
import type { ScenarioContext } from './scenario.ts';
import type { Running } from './targets.ts';

export const HAPROXY = '/usr/sbin/haproxy';

export interface HaproxyTcpOptions {
  /** host:port of the backend; several are balanced round-robin (`balance roundrobin`). */
  readonly backend: string | readonly string[];
  readonly splice?: boolean;
  readonly name?: string;
  /** `http`: `mode http` with `option http-keep-alive` (default `tcp`). */
  readonly mode?: 'tcp' | 'http';
  /** Extra words on the frontend's bind line, e.g. `proto h2` (HTTP/2 cleartext with prior knowledge). */
  readonly bind?: string;
  /** `maxconn` (default 4000; HAProxy wants ~2 fds per connection + spare, under the 20,000 open-file limit). */
  readonly maxConn?: number;
}

export async function haproxyVersion(): Promise<string> {
  const r = await runCommand(HAPROXY, ['-v']);
  return (r.stdout.split('\n')[0] ?? '').replace(/ - https?:\S+/, '').trim();
}

export async function startHaproxyTcp(ctx: ScenarioContext, options: HaproxyTcpOptions): Promise<Running> {
  const name = options.name ?? 'haproxy';
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'polyproxy-bench-haproxy-'));
  const cleanup = removeOnExit(dir);
  const cfg = path.join(dir, 'haproxy.cfg');
  writeFileSync(
    cfg,
    [
      'global',
      '  nbthread 1',
      `  maxconn ${options.maxConn ?? 4000}`, // HAProxy asks for ~2.5 fds per connection (more with splice pipes): stay under the 20,000 open-file limit
      '',
      'defaults',
      `  mode ${options.mode ?? 'tcp'}`,
      ...(options.mode === 'http' ? ['  option http-keep-alive'] : []),
      '  timeout connect 5s',
      '  timeout client 60s',
      '  timeout server 60s',
      ...(options.splice === true ? ['  option splice-auto'] : []),
      '',
      'frontend fe',
      `  bind 127.0.0.1:${port}${options.bind === undefined ? '' : ` ${options.bind}`}`,
      '  default_backend be',
      '',
      'backend be',
      '  balance roundrobin',
      ...(typeof options.backend === 'string' ? [options.backend] : options.backend).map((b, i) => `  server s${i + 1} ${b}`),
      '',
    ].join('\n'),
  );
  const [cmd, args] = pinned(ctx.proxyCpu, HAPROXY, ['-db', '-f', cfg]);
  const proc = spawnTracked(cmd, args, { name, cwd: dir });
  const stop = async (): Promise<void> => {
    await proc.stop('SIGTERM', 5000);
    rmSync(dir, { recursive: true, force: true });
    cleanup.forget();
  };
  try {
    await waitForPort(port, 15_000, proc);
  } catch (err) {
    await stop();
    throw err;
  }
  return { name, port, pid: proc.pid, proc, stop };
}
