/**
 * A load process for the ws-bridge benchmark: WebSocket clients (the `ws`
 * client) to the bridge at ws://host:port/<prefix><n>, each sending one
 * text message every `--interval-ms` (default 10 s) once `send on` is given,
 * and expecting the API's reply (the bridge sends it back as a message).
 * One shared 100 ms tick sends for a tenth of a second's worth of clients
 * (client i in slot i mod 100), so the rate is even and there is no timer
 * per client. stdin commands, one JSON reply line each:
 *   open N RATE → ramp to N clients at RATE per second → {"type":"opened",...}
 *   send on|off → start/stop sending                   → {"type":"sending",...}
 *   stats       → counters                              → {"type":"stats",...}
 *   close       → close every client                    → {"type":"closed"}
 * Prints {"type":"ready"} at start; exits when stdin closes or on SIGTERM.
 *
 * `--local-address` binds the clients' side (a distinct 127.0.0.x per load
 * process: one source address has only the ephemeral port range, ~28,000
 * ports, towards the bridge's one address and port).
 *
 *   node bench/lib/ws-load.ts --port N [--host H] [--local-address A] [--prefix p] [--interval-ms 10000]
 */
import { reply, serveCommands } from './child-commands.ts';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';

const { values } = parseArgs({
  options: { host: { type: 'string', default: '127.0.0.1' }, 'local-address': { type: 'string' }, port: { type: 'string' }, prefix: { type: 'string', default: 'c' }, 'interval-ms': { type: 'string', default: '10000' }, concurrency: { type: 'string', default: '64' } },
});
if (values.port === undefined) throw new Error('--port is required');
const base = `ws://${values.host}:${values.port}/${values.prefix}`;
const intervalMs = Number(values['interval-ms']);
const concurrency = Number(values.concurrency);
const TICK_MS = 100;
const SLOTS = Math.max(1, Math.round(intervalMs / TICK_MS));

interface LoadClient extends WebSocket {
  _slot: number;
  _out: number;
}

const slots: Array<Set<LoadClient>> = Array.from({ length: SLOTS }, () => new Set());
let nextIndex = 0;
let open = 0;
let sent = 0;
let replies = 0;
let failedUpgrades = 0;
let unexpectedCloses = 0;
let lastError = '';
let sending = false;
let closing = false;
/** Reply latencies (ms) since the last stats call, 1 in 8 sampled. */
let latencies: number[] = [];

function onMessage(this: WebSocket, data: WebSocket.RawData): void {
  replies++;
  (this as LoadClient)._out--;
  if ((replies & 7) === 0) {
    const sentAt = Number((data as Buffer).toString('latin1'));
    if (sentAt > 0) latencies.push(performance.now() - sentAt);
  }
}

function onClose(this: WebSocket): void {
  const ws = this as LoadClient;
  if (slots[ws._slot]?.delete(ws) === true) {
    open--;
    if (!closing) unexpectedCloses++;
  }
}

function onError(this: WebSocket, err: Error): void {
  lastError = err.message;
}

function openOne(): Promise<void> {
  const index = nextIndex++;
  return new Promise((resolve) => {
    const ws = new WebSocket(`${base}${index}`, { perMessageDeflate: false, handshakeTimeout: 30_000, ...(values['local-address'] === undefined ? {} : { localAddress: values['local-address'] }) }) as LoadClient;
    ws._slot = index % SLOTS;
    ws._out = 0;
    ws.once('open', () => {
      ws.removeListener('error', onOpenError);
      ws.on('error', onError);
      ws.on('message', onMessage);
      ws.on('close', onClose);
      slots[ws._slot]?.add(ws);
      open++;
      resolve();
    });
    const onOpenError = (err: Error): void => {
      failedUpgrades++;
      lastError = err.message;
      resolve();
    };
    ws.once('error', onOpenError);
  });
}

async function openUpTo(target: number, rate: number): Promise<void> {
  const start = performance.now();
  let started = 0;
  const wanted = target - open;
  const workers = Array.from({ length: Math.max(1, Math.min(concurrency, wanted)) }, async () => {
    while (started < wanted) {
      const n = started++;
      // Pace: connection n starts no earlier than n / rate seconds after the start.
      const due = start + (n * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      await openOne();
    }
  });
  await Promise.all(workers);
  reply({ type: 'opened', open, failedUpgrades, lastError, ms: Math.round(performance.now() - start) });
}

let tick = 0;
setInterval(() => {
  if (!sending) return;
  const slot = slots[tick++ % SLOTS];
  if (slot === undefined) return;
  const payload = String(performance.now());
  for (const ws of slot) {
    if (ws.readyState !== WebSocket.OPEN) continue;
    ws._out++;
    sent++;
    ws.send(payload);
  }
}, TICK_MS);

function stats(): void {
  const sorted = latencies.sort((a, b) => a - b);
  const at = (q: number): number => (sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number));
  reply({ type: 'stats', open, sent, replies, failedUpgrades, unexpectedCloses, lastError, p50: at(0.5), p99: at(0.99), max: at(1), samples: sorted.length, rssKb: Math.round(process.memoryUsage.rss() / 1024) });
  latencies = [];
}

async function closeAll(): Promise<void> {
  closing = true;
  const all = slots.flatMap((s) => [...s]);
  await Promise.all(
    all.map(
      (ws) =>
        new Promise<void>((resolve) => {
          ws.once('close', () => resolve());
          ws.close(1000, 'bench done');
          setTimeout(() => {
            ws.terminate();
            resolve();
          }, 5000).unref();
        }),
    ),
  );
  closing = false;
  reply({ type: 'closed' });
}

serveCommands(
  {
    open: ([upTo, rate]) => openUpTo(Number(upTo), Number(rate ?? 500)),
    close: () => closeAll(),
  },
  {
    stats: () => stats(),
    send: ([mode]) => {
      sending = mode === 'on';
      reply({ type: 'sending', sending });
    },
  },
);
