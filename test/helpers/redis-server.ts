/**
 * A throwaway `redis-server` of the test's own on a free port (no
 * persistence), with ACL users, so tests never reconfigure the machine's
 * shared Redis. Under CI=true a missing binary fails the test; elsewhere
 * the test is skipped with the reason printed.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { serviceMissing } from './services.ts';

export const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server';
export const REDIS_CLI = process.env.REDIS_CLI_BIN ?? '/usr/bin/redis-cli';

export interface OwnRedis {
  readonly port: number;
  /** Sends one command (RESP) on a fresh connection as the default user; resolves with the raw reply. */
  command(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

/** Null when redis-server and redis-cli are installed, else the reason to skip (throws under CI=true). */
export function redisServerMissing(): Promise<string | null> {
  return serviceMissing(`redis-server/redis-cli are not installed at ${REDIS_SERVER}, ${REDIS_CLI} (Debian package redis)`, () => Promise.resolve(existsSync(REDIS_SERVER) && existsSync(REDIS_CLI)));
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function encode(args: readonly string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/** One command on a fresh connection; the first complete line-terminated reply chunk. */
export function rawCommand(port: number, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let seen = '';
    socket.setEncoding('utf8');
    socket.once('error', reject);
    socket.once('connect', () => socket.write(encode(args)));
    socket.on('data', (text: string) => {
      seen += text;
      if (seen.endsWith('\r\n')) {
        socket.destroy();
        resolve(seen);
      }
    });
  });
}

async function waitForPing(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode}): ${log()}`);
    const reply = await rawCommand(port, ['PING']).catch(() => '');
    if (reply.startsWith('+PONG')) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`redis-server on ${port} did not answer PING: ${log()}`);
}

/**
 * Starts redis-server on a free port and creates `users` (name → password)
 * with every key, channel and command allowed.
 */
export async function startRedis(users: Readonly<Record<string, string>>, extraArgs: readonly string[] = []): Promise<OwnRedis> {
  const port = await freePort();
  const child = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout?.setEncoding('utf8').on('data', (t: string) => (log += t));
  child.stderr?.setEncoding('utf8').on('data', (t: string) => (log += t));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  try {
    await waitForPing(port, child, () => log);
    for (const [name, password] of Object.entries(users)) {
      const reply = await rawCommand(port, ['ACL', 'SETUSER', name, 'on', `>${password}`, '~*', '&*', '+@all']);
      if (!reply.startsWith('+OK')) throw new Error(`ACL SETUSER ${name}: ${reply}`);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, command: (...args) => rawCommand(port, args), stop };
}
