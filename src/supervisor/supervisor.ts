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
import { ADMIN_TOPIC, RELOAD_TOPIC } from './messages.ts';
import type { AdminQuery, SupervisorMessage, WorkerAnswer, WorkerMessage } from './messages.ts';
import type { BoundListener } from './proxy.ts';
import { listenerName } from './proxy.ts';

const WORKER_ENTRY = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);
const RESTART_DELAY_MS = 1000;
const ADMIN_TIMEOUT_MS = 5000;
/** A reload may load a resolver module and read certificates. */
const RELOAD_TIMEOUT_MS = 15000;
/** After the drain deadline, how long a worker gets to exit (its own grace is 1 s) before it is killed. */
const WORKER_EXIT_GRACE_MS = 5000;

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

  /** Every worker's answer to an admin query or a reload; an answer carrying `error` fails the whole call. */
  const askWorkers = async <T>(topic: string, payload: unknown, timeoutMs: number): Promise<T[]> => {
    const answers = (await asks.askAll(topic, payload, timeoutMs, children)) as Array<WorkerAnswer<T> | undefined>;
    const errors = answers.filter((a) => a?.error !== undefined).map((a) => a?.error);
    if (errors.length > 0) throw new Error(errors.join('; '));
    return answers.filter((a): a is WorkerAnswer<T> => a !== undefined).map((a) => a.result as T);
  };

  return {
    queries: {
      metrics: () => askWorkers(ADMIN_TOPIC, { op: 'metrics' } satisfies AdminQuery, ADMIN_TIMEOUT_MS),
      stats: () => askWorkers(ADMIN_TOPIC, { op: 'stats' } satisfies AdminQuery, ADMIN_TIMEOUT_MS),
      purge: (resourceId) => askWorkers(ADMIN_TOPIC, { op: 'purge', resourceId } satisfies AdminQuery, ADMIN_TIMEOUT_MS),
      workers: () => children.size,
    },
    async reload(next: Config): Promise<string[]> {
      const warnings = await askWorkers<string[]>(RELOAD_TOPIC, next, RELOAD_TIMEOUT_MS);
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
      // A worker drains within the deadline unless tenant code blocks its event loop (a resolve that never returns): then nothing in it can run.
      const kill = setTimeout(killStuck, config.shutdownTimeoutSeconds * 1000 + WORKER_EXIT_GRACE_MS, children);
      await Promise.all(exits);
      clearTimeout(kill);
    },
  };
}

function killStuck(children: ReadonlySet<ChildProcess>): void {
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    log.error({ worker: child.pid }, 'worker did not exit after the drain deadline: killing it');
    child.kill('SIGKILL');
  }
}
