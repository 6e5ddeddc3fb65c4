/**
 * nginx as a small, fast HTTP backend: one worker, foreground, generated
 * config in a temp dir (pid, error log, temp paths all inside it), every
 * location answering `return 200 "hello\n"`, optionally pinned.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pinned } from './machine.ts';
import { freePort, waitForPort } from './net.ts';
import { removeOnExit, runCommand, spawnTracked } from './process.ts';
import type { Running } from './targets.ts';

export const NGINX = '/usr/sbin/nginx';

export async function nginxVersion(): Promise<string> {
  const r = await runCommand(NGINX, ['-v']);
  return `${r.stderr}${r.stdout}`.trim().replace(/^nginx version: /, '');
}

/**
 * Starts nginx (one worker, foreground, optionally pinned) with `servers`
 * as the lines inside `http { }`, and waits until every port answers. Its
 * config, pid, logs and temp paths live in a temp dir removed at stop.
 */
export async function launchNginx(cpu: number, name: string, ports: readonly number[], servers: readonly string[]): Promise<Running> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `polyproxy-bench-${name}-`));
  const cleanup = removeOnExit(dir);
  const conf = path.join(dir, 'nginx.conf');
  const errorLog = path.join(dir, 'error.log');
  writeFileSync(
    conf,
    [
      'daemon off;',
      'worker_processes 1;',
      `pid ${path.join(dir, 'nginx.pid')};`,
      `error_log ${errorLog} warn;`,
      'events { worker_connections 4096; }',
      'http {',
      '  access_log off;',
      '  keepalive_requests 1000000;',
      `  client_body_temp_path ${path.join(dir, 'client_body')};`,
      `  proxy_temp_path ${path.join(dir, 'proxy')};`,
      `  fastcgi_temp_path ${path.join(dir, 'fastcgi')};`,
      `  uwsgi_temp_path ${path.join(dir, 'uwsgi')};`,
      `  scgi_temp_path ${path.join(dir, 'scgi')};`,
      ...servers.map((line) => `  ${line}`),
      '}',
      '',
    ].join('\n'),
  );
  const [cmd, args] = pinned(cpu, NGINX, ['-p', dir, '-e', errorLog, '-c', conf]);
  const proc = spawnTracked(cmd, args, { name, cwd: dir });
  const stop = async (): Promise<void> => {
    await proc.stop('SIGTERM', 5000);
    rmSync(dir, { recursive: true, force: true });
    cleanup.forget();
  };
  try {
    for (const port of ports) await waitForPort(port, 15_000, proc);
  } catch (err) {
    await stop();
    throw err;
  }
  return { name, port: ports[0] as number, pid: proc.pid, proc, stop };
}

export async function startNginx(cpu: number, name = 'nginx'): Promise<Running> {
  const port = await freePort();
  return launchNginx(cpu, name, [port], [`server { listen 127.0.0.1:${port}; location / { return 200 "hello\\n"; } }`]);
}
