/**
 * A throwaway Redis Cluster of the test's own: three `redis-server`
 * masters (cluster-enabled, no replicas, no persistence) in a temp dir on
 * free ports, joined with `redis-cli --cluster create`, ready once every
 * node says cluster_state:ok. Never the machine's shared Redis.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { REDIS_CLI, REDIS_SERVER, freePort, rawCommand } from './redis-server.ts';

export interface OwnRedisCluster {
  /** `127.0.0.1:<port>` of each master. */
  readonly nodes: readonly string[];
  readonly ports: readonly number[];
  stop(): Promise<void>;
}

interface Node {
  readonly port: number;
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  log: string;
}

function startNode(dir: string, port: number, busPort: number): Node {
  // cluster-port: the bus port would be port + 10000, which a free port near the top of the range does not have.
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-port', String(busPort), '--cluster-config-file', path.join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '2000', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no'];
  const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const node: Node = { port, child, exited: new Promise<void>((resolve) => child.once('exit', () => resolve())), log: '' };
  child.stdout?.setEncoding('utf8').on('data', (t: string) => (node.log += t));
  child.stderr?.setEncoding('utf8').on('data', (t: string) => (node.log += t));
  return node;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, log: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`redis cluster: timed out waiting for ${what}: ${log()}`);
}

function run(command: string, args: readonly string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (t: string) => (out += t));
    child.stderr.setEncoding('utf8').on('data', (t: string) => (out += t));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, out }));
  });
}

/** Starts a 3-master cluster; resolves once all 16384 slots are served and every node reports cluster_state:ok. */
export async function startRedisCluster(masters = 3): Promise<OwnRedisCluster> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pp-redis-cluster-'));
  const nodes: Node[] = [];
  const log = (): string => nodes.map((n) => `[${n.port}] ${n.log.slice(-2000)}`).join('\n');
  const stop = async (): Promise<void> => {
    for (const n of nodes) if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGKILL');
    await Promise.all(nodes.map((n) => n.exited));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters; i++) nodes.push(startNode(dir, await freePort(), await freePort()));
    for (const n of nodes) await waitFor(`node ${n.port} to answer PING`, async () => (await rawCommand(n.port, ['PING'])).startsWith('+PONG'), 15000, log);
    const created = await run(REDIS_CLI, ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes']);
    if (created.code !== 0) throw new Error(`redis-cli --cluster create failed (${created.code}): ${created.out}`);
    for (const n of nodes) await waitFor(`node ${n.port} to report cluster_state:ok`, async () => (await rawCommand(n.port, ['CLUSTER', 'INFO'])).includes('cluster_state:ok'), 20000, log);
  } catch (err) {
    await stop();
    throw err;
  }
  return { nodes: nodes.map((n) => `127.0.0.1:${n.port}`), ports: nodes.map((n) => n.port), stop };
}
