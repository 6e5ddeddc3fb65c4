/**
 * Worker process entry: receives the validated config from the supervisor,
 * binds the shared ports (SO_REUSEPORT), and drains when told to or when the
 * supervisor goes away.
 */
import { deliverBroadcast, isBroadcast } from '../core/cluster.ts';
import { log } from '../core/logger.ts';
import { drainAndExit, ignoreHangup } from './lifecycle.ts';
import type { SupervisorMessage, WorkerMessage } from './messages.ts';
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
  const msg = message as SupervisorMessage;
  if (msg.type === 'start') {
    timeoutMs = msg.config.shutdownTimeoutSeconds * 1000;
    startProxy(msg.config, { ports: new Map(msg.ports), reusePort: true }).then(
      (running) => {
        proxy = running;
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
  log.warn('supervisor disconnected');
  if (proxy === null) process.exit(0);
  else void drainAndExit(proxy, timeoutMs, 'supervisor gone');
});
