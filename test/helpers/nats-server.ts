/**
 * A throwaway `nats-server` of the test's own on a free port, configured
 * through a temp file (users, token, limits), so tests never reconfigure the
 * machine's shared NATS. Under CI=true a missing binary fails the test;
 * elsewhere the test is skipped with the reason printed.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './redis-server.ts';
import { serviceMissing } from './services.ts';

export const NATS_SERVER = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';

export interface OwnNats {
  readonly port: number;
  stop(): Promise<void>;
}

/** Null when nats-server is installed, else the reason to skip (throws under CI=true). */
export function natsServerMissing(): Promise<string | null> {
  return serviceMissing(`nats-server is not installed at ${NATS_SERVER} (Debian package nats-server)`, () => Promise.resolve(existsSync(NATS_SERVER)));
}

/** True once the server sends its INFO line. */
function sendsInfo(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setTimeout(1000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
    socket.once('data', (chunk: Buffer) => {
      socket.destroy();
      resolve(chunk.toString('latin1').startsWith('INFO '));
    });
  });
}

/** Starts nats-server with `config` (nats-server's config syntax; `listen` is added). */
export async function startNats(config: string): Promise<OwnNats> {
  const port = await freePort();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'polyproxy-nats-'));
  const file = path.join(dir, 'nats.conf');
  await writeFile(file, `listen: 127.0.0.1:${port}\n${config}\n`);
  const child = spawn(NATS_SERVER, ['-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout?.setEncoding('utf8').on('data', (t: string) => (log += t));
  child.stderr?.setEncoding('utf8').on('data', (t: string) => (log += t));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 15000;
  while (!(await sendsInfo(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`nats-server on ${port} did not start: ${log}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { port, stop };
}
