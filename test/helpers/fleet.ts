/**
 * Fleet tests: several real `polyproxy` processes (dist/, as in
 * production) sharing one Redis, and a private `redis-server` for tests
 * that stop and restart Redis (never the machine's shared one).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import { startCli, writeConfig } from './cli.ts';
import type { RunningCli } from './cli.ts';

export interface Instance extends RunningCli {
  readonly name: string;
  readonly adminPort: number;
}

/** Starts `count` instances, each with `configFor(i)` (its cluster.instanceId is `<name>`). */
export async function startInstances(count: number, configFor: (i: number, name: string) => Record<string, unknown>): Promise<Instance[]> {
  const names = ['A', 'B', 'C', 'D', 'E'].slice(0, count);
  const started = await Promise.allSettled(
    names.map(async (name, i) => {
      const file = await writeConfig(configFor(i, name));
      const cli = await startCli(['--config', file], 30000);
      const admin = (cli.ready as unknown as { admin?: { port: number } }).admin;
      return Object.assign(cli, { name, adminPort: admin?.port ?? 0 }) as Instance;
    }),
  );
  const failed = started.find((s) => s.status === 'rejected');
  if (failed !== undefined) {
    // The ones that did start would outlive the test (and keep its runner waiting): stop them.
    await stopAll(started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : [])));
    throw failed.reason;
  }
  return started.map((s) => (s as PromiseFulfilledResult<Instance>).value);
}

export async function stopAll(instances: readonly Instance[]): Promise<void> {
  await Promise.all(instances.map((i) => i.stop()));
}

export async function stats(instance: Instance): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${instance.adminPort}/api/stats`);
  return (await res.json()) as Record<string, unknown>;
}

export async function metricValue(instance: Instance, line: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${instance.adminPort}/metrics`)).text();
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

export async function purge(instance: Instance, id: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${instance.adminPort}/api/purge/${encodeURIComponent(id)}`, { method: 'POST', headers: { 'content-type': 'application/json' } });
  return ((await res.json()) as { purged: number }).purged;
}

/** Polls `check` until it returns true; fails with `what` after `timeoutMs`. */
export async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000, everyMs = 25): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
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

/** A private redis-server on a free port, which the test may stop and start again on the same port. */
export class OwnRedis {
  readonly port: number;
  #child: ChildProcess | null = null;

  private constructor(port: number) {
    this.port = port;
  }

  static async start(): Promise<OwnRedis> {
    const redis = new OwnRedis(await freePort());
    await redis.start();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10000);
      child.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited (${code}): ${out}`));
      });
    });
  }

  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = null;
    if (child === null || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }
}

/** True when redis-server can be run (the private-Redis tests need it). */
export function redisServerMissing(): Promise<string | null> {
  return new Promise((resolve) => {
    const child = spawn('redis-server', ['--version'], { stdio: 'ignore' });
    child.once('error', () => resolve('redis-server is not installed'));
    child.once('exit', (code) => resolve(code === 0 ? null : 'redis-server --version failed'));
  });
}
