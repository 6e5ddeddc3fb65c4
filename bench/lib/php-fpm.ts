/**
 * php-fpm pools for the fastcgi benchmark: one master per pool, foreground,
 * generated config in a temp dir, `pm = static`, listening on 127.0.0.1
 * with a free port or on a unix socket, optionally pinned. Ready when its
 * log says "ready to handle connections" (php-fpm cannot log to a pipe).
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pinned } from './machine.ts';
import { freePort, sleep } from './net.ts';
import { removeOnExit, runCommand, spawnTracked } from './process.ts';
import type { Tracked } from './process.ts';

export function phpFpmBinary(): string {
  const names = existsSync('/usr/sbin') ? readdirSync('/usr/sbin').filter((n) => /^php-fpm[\d.]*$/.test(n)) : [];
  names.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const last = names[names.length - 1];
  if (last === undefined) throw new Error('php-fpm is not installed (/usr/sbin/php-fpm*; apt-get install php-fpm)');
  return path.join('/usr/sbin', last);
}

export async function phpFpmVersion(): Promise<string> {
  const r = await runCommand(phpFpmBinary(), ['-v']);
  return r.stdout.split('\n')[0]?.trim() ?? '';
}

export interface PhpFpmPool {
  readonly name: string;
  /** `127.0.0.1:PORT` or `unix:/path`. */
  readonly endpoint: string;
  /** For nginx: `127.0.0.1:PORT` or `unix:/path`. */
  readonly nginxAddress: string;
  readonly pid: number;
  readonly proc: Tracked;
  stop(): Promise<void>;
}

/** Writes `files` (name → PHP source) into a fresh document root. */
export function writePhpDocroot(files: Record<string, string>): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'polyproxy-bench-php-'));
  const cleanup = removeOnExit(dir);
  for (const [name, body] of Object.entries(files)) writeFileSync(path.join(dir, name), body);
  return {
    dir,
    remove() {
      rmSync(dir, { recursive: true, force: true });
      cleanup.forget();
    },
  };
}

export async function startPhpFpmPool(options: { name: string; tag?: string; listen: 'tcp' | 'unix'; children: number; cpu: number }): Promise<PhpFpmPool> {
  const label = options.tag === undefined ? options.name : `${options.tag}-${options.name}`;
  const dir = mkdtempSync(path.join(os.tmpdir(), `polyproxy-bench-fpm-${label}-`));
  const cleanup = removeOnExit(dir);
  // nginx workers (user nobody when the bench runs as root) must reach the socket inside it.
  chmodSync(dir, 0o755);
  const listen = options.listen === 'tcp' ? `127.0.0.1:${await freePort()}` : path.join(dir, 'php-fpm.sock');
  const errorLog = path.join(dir, 'error.log');
  const conf = path.join(dir, 'php-fpm.conf');
  writeFileSync(
    conf,
    [
      '[global]',
      `pid = ${path.join(dir, 'php-fpm.pid')}`,
      `error_log = ${errorLog}`,
      'daemonize = no',
      '',
      `[${options.name}]`,
      `listen = ${listen}`,
      'listen.backlog = 4096',
      // nginx workers run as nobody when the bench runs as root.
      'listen.mode = 0666',
      'pm = static',
      `pm.max_children = ${options.children}`,
      'pm.status_path = /status',
      'clear_env = yes',
      `env[FPM_POOL] = ${options.name}`,
      // Debian's php.ini would enable OPcache; with -n it is off, the same for both proxies.
      'php_admin_flag[display_errors] = off',
      '',
    ].join('\n'),
  );
  const [cmd, args] = pinned(options.cpu, phpFpmBinary(), ['-F', '-n', '-R', '-y', conf, '-p', dir]);
  const proc = spawnTracked(cmd, args, { name: `php-fpm-${label}`, cwd: dir });
  const stop = async (): Promise<void> => {
    await proc.stop('SIGQUIT', 5000);
    rmSync(dir, { recursive: true, force: true });
    cleanup.forget();
  };
  const deadline = Date.now() + 15_000;
  for (;;) {
    let log = '';
    try {
      log = readFileSync(errorLog, 'utf8');
    } catch {
      // not written yet
    }
    if (log.includes('ready to handle connections')) break;
    if (!proc.running || Date.now() > deadline) {
      await stop();
      throw new Error(`php-fpm ${label} did not start:\n${log}\n${proc.tail.join('\n')}`);
    }
    await sleep(50);
  }
  const endpoint = options.listen === 'tcp' ? listen : `unix:${listen}`;
  return { name: options.name, endpoint, nginxAddress: endpoint, pid: proc.pid, proc, stop };
}
