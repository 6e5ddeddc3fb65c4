/**
 * A load process that holds idle PostgreSQL connections (one process stays
 * well under the per-process open-file limit).
 *
 *   node bench/lib/idle-clients.ts --port N [--host H] [--user U] [--database D] [--concurrency C]
 *
 * Each connection sends a StartupMessage and counts as open once the server
 * answers ReadyForQuery ('Z'); then it sits idle. Commands on stdin, replies
 * as JSON lines on stdout:
 *   open N  → hold N connections in total → {"type":"opened","open":..,"failed":..,"dropped":..,"ms":..}
 *   close   → close them all               → {"type":"closed"}
 *   status  →                              → {"type":"status","open":..,"failed":..,"dropped":..}
 * Prints {"type":"ready"} at start; exits when stdin closes or on SIGTERM.
 */
import net from 'node:net';
import { reply, serveCommands } from './child-commands.ts';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    user: { type: 'string', default: 'bench' },
    database: { type: 'string', default: 'bench' },
    concurrency: { type: 'string', default: '100' },
  },
});
if (values.port === undefined) throw new Error('--port is required');
const host = values.host;
const port = Number(values.port);
const concurrency = Number(values.concurrency);

function startupMessage(params: Record<string, string>): Buffer {
  const body = Buffer.from(Object.entries(params).map(([k, v]) => `${k}\0${v}\0`).join('') + '\0', 'utf8');
  const out = Buffer.allocUnsafe(8 + body.length);
  out.writeInt32BE(8 + body.length, 0);
  out.writeInt32BE(196608, 4); // protocol 3.0
  body.copy(out, 8);
  return out;
}

const STARTUP = startupMessage({ user: values.user, database: values.database, application_name: 'polyproxy-bench' });
const open = new Set<net.Socket>();
let failed = 0;
let dropped = 0;
let lastError = '';

function noop(): void {}

/** Opens one connection; resolves true once ReadyForQuery arrived. */
function openOne(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let pending: Buffer = Buffer.alloc(0);
    let settled = false;
    const settle = (ok: boolean, why?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      if (ok) {
        open.add(socket);
        socket.on('data', noop);
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
    const onData = (chunk: Buffer): void => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      let pos = 0;
      while (pending.length - pos >= 5) {
        const type = pending[pos] as number;
        const length = pending.readUInt32BE(pos + 1);
        if (pending.length - pos < 1 + length) break;
        if (type === 0x5a /* Z */) return settle(true);
        if (type === 0x45 /* E */) return settle(false, pending.toString('utf8', pos + 5, pos + 1 + length).replace(/\0/g, ' '));
        pos += 1 + length;
      }
      pending = pending.subarray(pos);
    };
    const timer = setTimeout(() => settle(false, 'timeout waiting for ReadyForQuery'), 15_000);
    socket.on('connect', () => socket.write(STARTUP));
    socket.on('data', onData);
    socket.on('error', (err) => settle(false, err.message));
    socket.on('close', () => settle(false, 'closed during startup'));
  });
}

async function openUpTo(target: number): Promise<void> {
  const start = Date.now();
  let attempts = 0;
  const maxAttempts = target * 2 + 100;
  let inFlight = 0;
  // Do not overshoot: count connections still in their startup.
  const worker = async (): Promise<void> => {
    while (open.size + inFlight < target && attempts < maxAttempts) {
      attempts++;
      inFlight++;
      await openOne();
      inFlight--;
    }
  };
  const workers = Math.max(1, Math.min(concurrency, target - open.size));
  await Promise.all(Array.from({ length: workers }, worker));
  reply({ type: 'opened', open: open.size, failed, dropped, lastError, ms: Date.now() - start });
}

async function closeAll(): Promise<void> {
  const closing = [...open].map((s) => new Promise<void>((resolve) => {
    open.delete(s);
    s.once('close', () => resolve());
    s.destroy();
  }));
  await Promise.all(closing);
  reply({ type: 'closed' });
}

serveCommands({
  open: ([upTo]) => openUpTo(Number(upTo)),
  close: () => closeAll(),
  status: () => reply({ type: 'status', open: open.size, failed, dropped }),
});
