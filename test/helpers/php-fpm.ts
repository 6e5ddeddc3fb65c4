/**
 * Real php-fpm pools for FastCGI tests. Each pool is its own php-fpm master
 * (`-F -n -y conf -p prefix -R`) in a temp dir, listening on 127.0.0.1 with
 * a free port or on a unix socket, so a test can stop one pool and keep the
 * other. Every pool serves the same document root (see PHP_SCRIPTS) and
 * exposes its name to PHP as $_SERVER['FPM_POOL'] (`env[FPM_POOL]`).
 *
 * Under CI=true a missing php-fpm fails the test; elsewhere the test is
 * skipped with the reason printed (services.ts).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { serviceMissing } from './services.ts';

/** The newest /usr/sbin/php-fpm* binary (Debian names it php-fpmX.Y), or null. */
export function phpFpmBinary(): string | null {
  // PHP_FPM_BIN picks another binary (and lets a test run pretend php-fpm is missing).
  if (process.env.PHP_FPM_BIN !== undefined) return existsSync(process.env.PHP_FPM_BIN) ? process.env.PHP_FPM_BIN : null;
  let names: string[];
  try {
    names = readdirSync('/usr/sbin').filter((n) => /^php-fpm[\d.]*$/.test(n));
  } catch {
    return null;
  }
  names.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const last = names[names.length - 1];
  return last === undefined ? null : path.join('/usr/sbin', last);
}

/** null when php-fpm is installed, else the reason to skip (throws under CI=true). */
export function phpFpmMissing(): Promise<string | null> {
  return serviceMissing('php-fpm is not installed (/usr/sbin/php-fpm*; Debian package php-fpm)', () => Promise.resolve(phpFpmBinary() !== null));
}

/** The test document root's scripts. */
export const PHP_SCRIPTS: Record<string, string> = {
  'index.php': `<?php header('Content-Type: text/plain'); echo 'pool=', $_SERVER['FPM_POOL'] ?? '?', "\\n";`,
  'pool.php': `<?php header('Content-Type: application/json'); echo json_encode(['pool' => $_SERVER['FPM_POOL'] ?? null, 'pid' => getmypid()]);`,
  'server.php': `<?php header('Content-Type: application/json'); $s = $_SERVER; unset($s['argv'], $s['argc']); echo json_encode(['server' => $s, 'get' => $_GET, 'post' => $_POST, 'files' => array_map(fn($f) => ['name' => $f['name'], 'size' => $f['size'], 'type' => $f['type']], $_FILES), 'input' => file_get_contents('php://input')]);`,
  'hash.php': `<?php header('Content-Type: application/json'); $in = file_get_contents('php://input'); echo json_encode(['pool' => $_SERVER['FPM_POOL'] ?? null, 'bytes' => strlen($in), 'sha256' => hash('sha256', $in)]);`,
  'fatal.php': `<?php error_log('about to fail'); undefined_function_for_test();`,
  'status.php': `<?php http_response_code(201); header('X-Custom: yes'); header('Set-Cookie: a=1'); header('Set-Cookie: b=2', false); echo 'created';`,
  'stderr.php': `<?php file_put_contents('php://stderr', 'written to stderr'); echo 'ok';`,
  'sleep.php': `<?php usleep((int)($_GET['ms'] ?? 1000) * 1000); echo 'slept';`,
  'big.php': `<?php $n = (int)($_GET['bytes'] ?? 1048576); $chunk = str_repeat('x', 65536); while ($n > 0) { $k = min($n, 65536); echo substr($chunk, 0, $k); $n -= $k; }`,
  'hello.php': `<?php echo "hello\\n";`,
  'badheader.php': `<?php header("X-Bad: a\\x01b"); echo 'x';`,
  'sub/index.php': `<?php echo 'sub index ', $_SERVER['SCRIPT_NAME'], ' ', $_SERVER['PATH_INFO'] ?? '-';`,
};

export interface PhpFpmPool {
  readonly name: string;
  /** `127.0.0.1:PORT` or `unix:/path`. */
  readonly endpoint: string;
  readonly docroot: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** The master's error log (with worker output) and anything it wrote to stderr. */
  log(): string;
  /** Stops the master (SIGQUIT: graceful) and waits for it to exit; safe to call twice. */
  stop(): Promise<void>;
}

export interface PhpFpmOptions {
  readonly name: string;
  readonly listen: 'tcp' | 'unix';
  /** Shared document root (from writeDocroot); a fresh one when omitted. */
  readonly docroot?: string;
  /** pm.max_children (static pool). */
  readonly children?: number;
  readonly binary?: string;
  /** TCP: listen on this port (a restarted pool keeps its address); default a free one. */
  readonly port?: number;
}

/** Writes PHP_SCRIPTS into a fresh temp dir and returns its path. */
export async function writeDocroot(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'polyproxy-php-docroot-'));
  for (const [file, body] of Object.entries(PHP_SCRIPTS)) {
    const full = path.join(dir, file);
    await mkdir(path.dirname(full), { recursive: true });
    await writeFile(full, `${body}\n`);
  }
  return dir;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Starts one php-fpm master with one pool and waits for "ready to handle connections". */
export async function startPhpFpm(options: PhpFpmOptions): Promise<PhpFpmPool> {
  const binary = options.binary ?? phpFpmBinary();
  if (binary === null) throw new Error('php-fpm is not installed');
  const prefix = await mkdtemp(path.join(os.tmpdir(), `polyproxy-php-fpm-${options.name}-`));
  const docroot = options.docroot ?? (await writeDocroot());
  const listen = options.listen === 'tcp' ? `127.0.0.1:${options.port ?? (await freePort())}` : path.join(prefix, 'php-fpm.sock');
  const endpoint = options.listen === 'tcp' ? listen : `unix:${listen}`;
  const conf = path.join(prefix, 'php-fpm.conf');
  const errorLog = path.join(prefix, 'error.log');
  await writeFile(
    conf,
    [
      '[global]',
      `pid = ${path.join(prefix, 'php-fpm.pid')}`,
      `error_log = ${errorLog}`,
      'log_level = notice',
      'daemonize = no',
      '',
      `[${options.name}]`,
      `listen = ${listen}`,
      'listen.backlog = 511',
      'pm = static',
      `pm.max_children = ${options.children ?? 4}`,
      'pm.status_path = /status',
      'catch_workers_output = yes',
      'decorate_workers_output = no',
      'clear_env = yes',
      `env[FPM_POOL] = ${options.name}`,
      // PHP errors go to the FastCGI stderr stream; a fatal error becomes a 500, not a 200 with the message in the body.
      'php_admin_flag[display_errors] = off',
      'php_admin_flag[log_errors] = on',
      'php_admin_value[post_max_size] = 64M',
      'php_admin_value[upload_max_filesize] = 64M',
      'php_admin_value[memory_limit] = 256M',
      '',
    ].join('\n'),
  );
  const child = spawn(binary, ['-F', '-n', '-R', '-y', conf, '-p', prefix], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => {
    stderr += text;
  });
  const log = (): string => {
    try {
      return stderr + readFileSync(errorLog, 'utf8');
    } catch {
      return stderr;
    }
  };
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // php-fpm cannot log to a pipe (it opens error_log by name), so readiness is read from its log file.
  const ready = new Promise<void>((resolve, reject) => {
    const deadline = Date.now() + 20000;
    const poll = setInterval(() => {
      if (log().includes('ready to handle connections')) {
        clearInterval(poll);
        resolve();
      } else if (child.exitCode !== null || child.signalCode !== null) {
        clearInterval(poll);
        reject(new Error(`php-fpm ${options.name} exited before it was ready:\n${log()}`));
      } else if (Date.now() > deadline) {
        clearInterval(poll);
        reject(new Error(`php-fpm ${options.name} did not become ready in 20 s:\n${log()}`));
      }
    }, 20);
  });
  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGQUIT');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      await rm(prefix, { recursive: true, force: true });
      if (options.docroot === undefined) await rm(docroot, { recursive: true, force: true });
    })();
    return stopped;
  };
  try {
    await ready;
  } catch (err) {
    await stop();
    throw err;
  }
  if (options.listen === 'unix' && !existsSync(listen)) throw new Error(`php-fpm ${options.name}: no socket at ${listen}`);
  return { name: options.name, endpoint, docroot, pid: child.pid as number, child, log, stop };
}
