/**
 * Worker process entry: receives the validated config from the supervisor,
 * binds the shared ports (SO_REUSEPORT), and drains when told to or when the
 * supervisor goes away.
 */
import type { Config } from '../config/schema.ts';
import { answerAsk, deliverAnswers, deliverBroadcast, isAnswers, isAsk, isBroadcast, onAsk } from '../core/cluster.ts';
import { log } from '../core/logger.ts';
import { drainAndExit, ignoreHangup, isDraining } from './lifecycle.ts';
import { collectProcessMetrics, registry } from '../core/metrics.ts';
import { ADMIN_TOPIC, RELOAD_TOPIC } from './messages.ts';
import type { AdminQuery, SupervisorMessage, WorkerAnswer, WorkerMessage } from './messages.ts';
import { startProxy } from './proxy.ts';
import type { RunningProxy } from './proxy.ts';

let proxy: RunningProxy | null = null;
let timeoutMs = 30000;

function send(message: WorkerMessage): void {
  process.send?.(message);
}

process.on('message', (message: SupervisorMessage | unknown) => {
  if (isBroadcast(message)) {
    deliverBroadcast(message);
    return;
  }
  if (isAsk(message)) {
    answerAsk(message);
    return;
  }
  if (isAnswers(message)) {
    deliverAnswers(message);
    return;
  }
  const msg = message as SupervisorMessage;
  if (msg.type === 'start') {
    timeoutMs = msg.config.shutdownTimeoutSeconds * 1000;
    collectProcessMetrics();
    startProxy(msg.config, { ports: new Map(msg.ports), reusePort: true }).then(
      (running) => {
        proxy = running;
        onAsk(ADMIN_TOPIC, (query) => settle(answerAdmin(running, query as AdminQuery)));
        onAsk(RELOAD_TOPIC, (config) => settle(running.reload(config as Config)));
        send({ type: 'ready', bound: [...running.bound] });
      },
      (err: unknown) => {
        send({ type: 'failed', error: (err as Error).message });
        process.exit(1);
      },
    );
  } else if (msg.type === 'drain') {
    if (proxy === null) process.exit(0);
    else void drainAndExit(proxy, timeoutMs, 'supervisor');
  }
});

// Ctrl-C reaches the whole process group; the supervisor also tells us to drain.
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (proxy === null) process.exit(0);
    else void drainAndExit(proxy, timeoutMs, signal);
  });
}

ignoreHangup();

// The supervisor died: nobody will restart or stop us; drain and go.
process.on('disconnect', () => {
  if (isDraining()) return;
  log.warn('supervisor disconnected');
  if (proxy === null) process.exit(0);
  else void drainAndExit(proxy, timeoutMs, 'supervisor gone');
});

/** An ask handler's answer: the result, or the error's message (the supervisor fails the call with it). */
function settle(work: Promise<unknown>): Promise<WorkerAnswer> {
  return work.then(
    (result) => ({ result }),
    (err: unknown) => ({ error: `worker ${process.pid}: ${(err as Error).message}` }),
  );
}

function answerAdmin(running: RunningProxy, query: AdminQuery): Promise<unknown> {
  switch (query.op) {
    case 'metrics':
      return registry.getMetricsAsJSON();
    case 'stats':
      return Promise.resolve(running.stats());
    case 'purge':
      return Promise.resolve(running.purge(query.resourceId));
  }
}
