/**
 * Runs `workers` processes that share every listening port (SO_REUSEPORT:
 * the kernel spreads new connections over them). The supervisor holds no
 * client connections: it starts, restarts and drains workers, and relays
 * the rare broadcast between them.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import type { Config } from '../config/schema.ts';
import { isBroadcast } from '../core/cluster.ts';
import { log } from '../core/logger.ts';
import type { SupervisorMessage, WorkerMessage } from './messages.ts';
import type { BoundListener } from './proxy.ts';
import { listenerName } from './proxy.ts';

const WORKER_ENTRY = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);
const RESTART_DELAY_MS = 1000;

export interface Supervisor {
  readonly bound: readonly BoundListener[];
  readonly workers: () => number[];
  drain(): Promise<void>;
}

export async function runSupervisor(config: Config): Promise<Supervisor> {
  // Port 0 means "any free port": pick one here so every worker binds the same.
  const placeholders: net.Server[] = [];
  const ports: Array<[string, number]> = [];
  for (const listener of config.listeners) {
    if (listener.port !== 0) continue;
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: listener.host, port: 0, reusePort: true }, () => resolve());
    });
    placeholders.push(server);
    ports.push([listenerName(listener), (server.address() as net.AddressInfo).port]);
  }

  const children = new Set<ChildProcess>();
  let stopping = false;
  let bound: BoundListener[] = [];

  const spawn = (): Promise<ChildProcess> =>
    new Promise((resolve, reject) => {
      const child = fork(WORKER_ENTRY, [], { env: { ...process.env, POLYPROXY_WORKER: '1' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
      children.add(child);
      let ready = false;
      child.on('message', (message: WorkerMessage | unknown) => {
        if (isBroadcast(message)) {
          for (const other of children) if (other !== child && other.connected) other.send(message);
          return;
        }
        const msg = message as WorkerMessage;
        if (msg.type === 'ready') {
          ready = true;
          bound = msg.bound;
          resolve(child);
        } else if (msg.type === 'failed') {
          reject(new Error(msg.error));
        }
      });
      child.on('exit', (code, signal) => {
        children.delete(child);
        if (!ready) {
          reject(new Error(`worker exited during start (code ${code}, signal ${signal})`));
          return;
        }
        if (stopping) return;
        log.error({ worker: child.pid, code, signal }, 'worker died; restarting');
        setTimeout(() => {
          if (!stopping) spawn().catch((err: Error) => log.error({ err: err.message }, 'worker restart failed'));
        }, RESTART_DELAY_MS).unref();
      });
      const start: SupervisorMessage = { type: 'start', config, ports };
      child.send(start);
    });

  try {
    await Promise.all(Array.from({ length: config.workers }, spawn));
  } catch (err) {
    stopping = true;
    for (const child of children) child.kill('SIGKILL');
    throw err;
  } finally {
    await Promise.all(placeholders.map((s) => new Promise((resolve) => s.close(resolve))));
  }

  return {
    get bound() {
      return bound;
    },
    workers: () => [...children].map((c) => c.pid ?? 0),
    async drain() {
      stopping = true;
      const exits = [...children].map((child) => new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve()))));
      for (const child of children) if (child.connected) child.send({ type: 'drain' } satisfies SupervisorMessage);
      await Promise.all(exits);
    },
  };
}
