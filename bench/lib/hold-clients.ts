/**
 * A load process that holds idle raw TCP connections to an echo backend
 * (tcp-hold). Each connection writes 1 byte and counts as open once it is
 * echoed back (so the proxy has connected the backend side too); then it
 * sits idle. Same stdin/stdout protocol as idle-clients.ts:
 *   open N  → hold N connections in total → {"type":"opened","open":..,"failed":..,"dropped":..,"ms":..}
 *   close   → close them all               → {"type":"closed"}
 *   echo T W → write 1 byte on every open connection and wait for each
 *             echo (tcp-scale proves its connections alive), at most W
 *             (default 200) in flight, T ms (default 60,000) in all
 *             → {"type":"echoed","ok":..,"failed":..,"ms":..}
 * Prints {"type":"ready"} at start; exits when stdin closes or on SIGTERM.
 *
 *   node bench/lib/hold-clients.ts --port N [--host H] [--concurrency C]
 */
import net from 'node:net';
import { reply, serveCommands } from './child-commands.ts';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string' }, concurrency: { type: 'string', default: '100' } } });
if (values.port === undefined) throw new Error('--port is required');
const host = values.host;
const port = Number(values.port);
const concurrency = Number(values.concurrency);
const BYTE = Buffer.from('x');
const open = new Set<net.Socket>();
let failed = 0;
let dropped = 0;
let lastError = '';
/** Connections whose `echo` byte is written and has not come back yet. */
const awaiting = new Set<net.Socket>();
/** Connections still to write their `echo` byte (in `open` order). */
let echoQueue: net.Socket[] = [];
let echoNext = 0;
let onAllEchoed: (() => void) | null = null;

function heldOnData(this: net.Socket): void {
  if (!awaiting.delete(this)) return;
  writeNextEcho();
  if (awaiting.size === 0 && echoNext >= echoQueue.length) onAllEchoed?.();
}

function writeNextEcho(): void {
  const socket = echoQueue[echoNext++];
  if (socket === undefined) return;
  awaiting.add(socket);
  socket.write(BYTE);
}

function openOne(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, noDelay: true });
    let settled = false;
    const settle = (ok: boolean, why?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      if (ok) {
        open.add(socket);
        socket.on('data', heldOnData);
        socket.once('close', () => {
          if (open.delete(socket)) dropped++;
        });
      } else {
        failed++;
        if (why !== undefined) lastError = why;
        socket.destroy();
      }
      resolve(ok);
    };
    const onData = (): void => settle(true);
    const timer = setTimeout(() => settle(false, 'timeout waiting for the echo'), 15_000);
    socket.on('connect', () => socket.write(BYTE));
    socket.on('data', onData);
    socket.on('error', (err) => settle(false, err.message));
    socket.on('close', () => settle(false, 'closed before the echo'));
  });
}

async function openUpTo(target: number): Promise<void> {
  const start = Date.now();
  let attempts = 0;
  const maxAttempts = target * 2 + 100;
  let inFlight = 0;
  const worker = async (): Promise<void> => {
    while (open.size + inFlight < target && attempts < maxAttempts) {
      attempts++;
      inFlight++;
      await openOne();
      inFlight--;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, target - open.size)) }, worker));
  reply({ type: 'opened', open: open.size, failed, dropped, lastError, ms: Date.now() - start });
}

async function closeAll(): Promise<void> {
  await Promise.all(
    [...open].map(
      (s) =>
        new Promise<void>((resolve) => {
          open.delete(s);
          s.once('close', () => resolve());
          s.destroy();
        }),
    ),
  );
  reply({ type: 'closed' });
}

/**
 * A window of `inFlight` echoes, not all at once: 100,000 writes in one
 * burst overflow loopback's backlog (net.core.netdev_max_backlog) on a
 * busy machine, and the dropped keepalive probes then abort connections.
 */
async function echoAll(timeoutMs: number, inFlight: number): Promise<void> {
  const start = Date.now();
  echoQueue = [...open];
  echoNext = 0;
  const total = echoQueue.length;
  if (total > 0) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      onAllEchoed = () => {
        clearTimeout(timer);
        resolve();
      };
      for (let i = 0; i < inFlight; i++) writeNextEcho();
    });
  }
  onAllEchoed = null;
  const failed = awaiting.size + (total - echoNext > 0 ? total - echoNext : 0);
  awaiting.clear();
  echoQueue = [];
  reply({ type: 'echoed', sent: Math.min(echoNext, total), ok: total - failed, failed, dropped, ms: Date.now() - start });
}

serveCommands({
  open: ([upTo]) => openUpTo(Number(upTo)),
  close: () => closeAll(),
  echo: ([timeoutMs, inFlight]) => echoAll(Number(timeoutMs ?? 60_000), Number(inFlight ?? 200)),
});
