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
import { isAnswer, isAsk, isBroadcast } from '../core/cluster.ts';
import { log } from '../core/logger.ts';
import { AskRelay } from './ask-relay.ts';
import type { WorkerQueries } from './admin-source.ts';
import type { SupervisorMessage, WorkerMessage } from './messages.ts';
import type { BoundListener } from './proxy.ts';
import { listenerName } from './proxy.ts';

const WORKER_ENTRY = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);
const RESTART_DELAY_MS = 1000;
const WORKER_REPLY_TIMEOUT_MS = 5000;

export interface Supervisor {
  readonly bound: readonly BoundListener[];
  /** Admin queries answered by every worker. */
  readonly queries: WorkerQueries;
  /** Sends a validated config to every worker (SIGHUP); resolves with their warnings, rejects if one failed. */
  reload(config: Config): Promise<string[]>;
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
  /** Waiting admin queries and reloads, by id: called with each worker's reply. */
  const replies = new Map<number, (child: ChildProcess, reply: Extract<WorkerMessage, { type: 'reply' }>) => void>();
  let nextId = 1;
  const asks = new AskRelay();
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
        if (isAsk(message)) {
          asks.ask(child, message, children);
          return;
        }
        if (isAnswer(message)) {
          asks.answer(child, message);
          return;
        }
        const msg = message as WorkerMessage;
        if (msg.type === 'reply') {
          replies.get(msg.id)?.(child, msg);
          return;
        }
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
        asks.forget(child);
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

  /** Sends a message to every live worker and gathers their replies (a worker that does not answer in time is left out). */
  const askWorkers = <T>(make: (id: number) => SupervisorMessage): Promise<T[]> => {
    const id = nextId++;
    const targets = [...children].filter((c) => c.connected);
    if (targets.length === 0) return Promise.resolve([]);
    return new Promise<T[]>((resolve, reject) => {
      const results: T[] = [];
      const errors: string[] = [];
      const pending = new Set(targets);
      const finish = (): void => {
        clearTimeout(timer);
        replies.delete(id);
        if (errors.length > 0) reject(new Error(errors.join('; ')));
        else resolve(results);
      };
      const timer = setTimeout(finish, WORKER_REPLY_TIMEOUT_MS);
      replies.set(id, (child, reply) => {
        if (!pending.delete(child)) return;
        if (reply.error !== undefined) errors.push(`worker ${child.pid}: ${reply.error}`);
        else results.push(reply.result as T);
        if (pending.size === 0) finish();
      });
      const message = make(id);
      for (const child of targets) child.send(message);
    });
  };

  return {
    queries: {
      metrics: () => askWorkers((id) => ({ type: 'admin', id, query: { op: 'metrics' } })),
      stats: () => askWorkers((id) => ({ type: 'admin', id, query: { op: 'stats' } })),
      purge: (resourceId) => askWorkers((id) => ({ type: 'admin', id, query: { op: 'purge', resourceId } })),
      workers: () => children.size,
    },
    async reload(next: Config): Promise<string[]> {
      const warnings = await askWorkers<string[]>((id) => ({ type: 'reload', id, config: next }));
      // Workers started later (restarts) get the new config.
      config = next;
      return [...new Set(warnings.flat())];
    },
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
