/**
 * A load process for the ws-bridge benchmark: raw RFC 6455 WebSocket clients
 * on node:net to the bridge at ws://host:port/<prefix><n>, each sending one
 * text message every `--interval-ms` (default 10 s) once `send on` is given,
 * and expecting the API's reply (the bridge sends it back as a message).
 *
 * Why raw and not the `ws` client: ws-scale runs 100,000 clients (10,000
 * msg/s) on a shared 2-core machine, where every microsecond this process
 * spends per message is taken from the bridge under test. The `ws` client
 * costs ~30 µs of CPU per message (a Writable/Receiver pair, per-message
 * buffers and events); this one builds one masked frame per tick and writes
 * that same Buffer to every client of the slot, and reads every socket into
 * one shared 64 KiB buffer (net.Socket `onread`), parsing frames in place
 * and copying only a frame split over two reads. A client is a small plain
 * object (socket, slot, outstanding count, state, pending bytes). Measured
 * at 4,000 msg/s: ~34 µs → ~22 µs of CPU per message (user ~16 → ~8); what
 * is left is mostly the kernel's (one write and one read per message over
 * loopback TCP, and the epoll wake-ups).
 *
 * One shared 100 ms tick sends for a tenth of a second's worth of clients
 * (client i in slot i mod 100), so the rate is even and there is no timer
 * per client. One random Sec-WebSocket-Key per process (the accept value is
 * computed once) and one random mask per tick: enough for a load generator.
 * Every 8th reply is read back as a latency (the payload is the sender's
 * performance.now()).
 *
 * stdin commands, one JSON reply line each:
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
 *   node bench/lib/ws-load.ts --port N [--host H] [--local-address A [--local-ports FROM-TO]] [--prefix p] [--interval-ms 10000] [--concurrency 64]
 */
import { reply, serveCommands } from './child-commands.ts';
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { host: { type: 'string', default: '127.0.0.1' }, 'local-address': { type: 'string' }, port: { type: 'string' }, prefix: { type: 'string', default: 'c' }, 'local-ports': { type: 'string' }, 'interval-ms': { type: 'string', default: '10000' }, concurrency: { type: 'string', default: '64' } },
});
if (values.port === undefined) throw new Error('--port is required');
const host = values.host as string;
const port = Number(values.port);
const localAddress = values['local-address'];
/**
 * `--local-ports FROM-TO` (with --local-address): each new client binds the
 * next port of the range. connect() without a port searches the ephemeral
 * range for one not in use towards that destination, and with ~17,000
 * clients on one destination that search (__inet_check_established) took
 * ~64 % of this process's CPU during the ramp. A range below the ephemeral
 * one (32768–60999 here) is never chosen by anyone's connect(), so the
 * bridge's own API connections lose no ports to it. Each port is used once
 * per run (no TIME_WAIT collisions).
 */
const localPorts = parsePortRange(values['local-ports']);
let nextLocalPort = localPorts?.from ?? 0;
const prefix = values.prefix as string;
const intervalMs = Number(values['interval-ms']);
const concurrency = Number(values.concurrency);
const TICK_MS = 100;
const SLOTS = Math.max(1, Math.round(intervalMs / TICK_MS));
const HANDSHAKE_TIMEOUT_MS = 30_000;
const CLOSE_TIMEOUT_MS = 5000;
/** Largest response head and largest frame accepted from the server. */
const MAX_HEAD = 16 * 1024;
const MAX_FRAME = 16 * 1024 * 1024;

const KEY = randomBytes(16).toString('base64');
const ACCEPT = createHash('sha1').update(`${KEY}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
const REQUEST_TAIL = ` HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`;

/** Every socket reads into this one buffer; each read is parsed before the next one can land. */
const READ_BUF = Buffer.allocUnsafe(64 * 1024);
const HEAD_END = Buffer.from('\r\n\r\n');

const CONNECTING = 0;
const OPEN = 1;
/** We sent a close frame (the close command) and wait for the server's close frame or EOF. */
const CLOSING = 2;
/** The server sent a close frame; we echoed it and wait for EOF. */
const SERVER_CLOSING = 3;
const CLOSED = 4;

interface Client {
  socket: net.Socket;
  slot: number;
  /** Messages sent and not yet answered. */
  out: number;
  state: number;
  /** Unparsed bytes: an incomplete response head or frame (null almost always). */
  pending: Buffer | null;
}

const slots: Array<Set<Client>> = Array.from({ length: SLOTS }, () => new Set());
let nextIndex = 0;
let open = 0;
let sent = 0;
let replies = 0;
let failedUpgrades = 0;
let unexpectedCloses = 0;
let lastError = '';
let sending = false;
let closing = false;
/** Settles the close command once every client being closed is gone. */
let closeWaiting = 0;
let onAllClosed: (() => void) | null = null;
/** Reply latencies (ms) since the last stats call, 1 in 8 sampled. */
let latencies: number[] = [];

/** A masked client frame (FIN set) carrying `payload`, with a fresh random mask. */
function maskedFrame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(head + 4 + n);
  frame[0] = 0x80 | opcode;
  if (n < 126) frame[1] = 0x80 | n;
  else if (n < 65536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(n, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeUInt32BE(Math.floor(n / 2 ** 32), 2);
    frame.writeUInt32BE(n >>> 0, 6);
  }
  randomFillSync(frame, head, 4);
  for (let i = 0; i < n; i++) frame[head + 4 + i] = (payload[i] as number) ^ (frame[head + (i & 3)] as number);
  return frame;
}

function closePayload(code: number, reason: string): Buffer {
  const payload = Buffer.allocUnsafe(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2);
  return payload;
}

/** The one close frame the close command sends to every client. */
const BENCH_DONE = maskedFrame(0x8, closePayload(1000, 'bench done'));

/** Ends a client on a protocol error: the socket is destroyed, its 'close' does the bookkeeping. */
function violation(c: Client, message: string): void {
  lastError = message;
  c.pending = null;
  c.socket.destroy();
}

/** One complete frame from the server: `data[start, end)` is its payload. */
function onFrame(c: Client, fin: boolean, opcode: number, data: Buffer, start: number, end: number): void {
  switch (opcode) {
    case 0x1:
    case 0x2:
    case 0x0:
      if (!fin) return;
      replies++;
      c.out--;
      if ((replies & 7) === 0 && opcode !== 0x0) {
        const sentAt = Number(data.toString('latin1', start, end));
        if (sentAt > 0) latencies.push(performance.now() - sentAt);
      }
      return;
    case 0x8: {
      // Echo the status code (if any), then stop writing; the server closes the TCP connection.
      if (c.state === OPEN) {
        c.state = SERVER_CLOSING;
        const code = end - start >= 2 ? data.readUInt16BE(start) : 0;
        c.socket.end(maskedFrame(0x8, code === 0 ? Buffer.alloc(0) : closePayload(code, '')));
      } else c.socket.end();
      return;
    }
    case 0x9:
      if (c.state === OPEN) c.socket.write(maskedFrame(0xa, Buffer.from(data.subarray(start, end))));
      return;
    case 0xa:
      return;
    default:
      violation(c, `Invalid WebSocket frame: invalid opcode ${opcode}`);
  }
}

/** Parses the frames in `data[pos, len)`; keeps a copy of an incomplete tail. `owned`: `data` is not the shared read buffer. */
function onFrames(c: Client, data: Buffer, pos: number, len: number, owned: boolean): void {
  if (c.pending !== null) {
    data = Buffer.concat([c.pending, data.subarray(pos, len)]);
    pos = 0;
    len = data.length;
    owned = true;
    c.pending = null;
  }
  while (len - pos >= 2) {
    const b0 = data[pos] as number;
    const b1 = data[pos + 1] as number;
    if ((b0 & 0x70) !== 0) return violation(c, 'Invalid WebSocket frame: RSV bits set');
    if ((b1 & 0x80) !== 0) return violation(c, 'Invalid WebSocket frame: MASK must be clear');
    const opcode = b0 & 0x0f;
    let n = b1 & 0x7f;
    let head = 2;
    if (n === 126) {
      if (len - pos < 4) break;
      n = data.readUInt16BE(pos + 2);
      head = 4;
    } else if (n === 127) {
      if (len - pos < 10) break;
      const high = data.readUInt32BE(pos + 2);
      n = high * 2 ** 32 + data.readUInt32BE(pos + 6);
      head = 10;
    }
    if (n > MAX_FRAME) return violation(c, `Invalid WebSocket frame: ${n} bytes`);
    if (opcode >= 0x8 && (n > 125 || (b0 & 0x80) === 0)) return violation(c, 'Invalid WebSocket frame: bad control frame');
    if (len - pos - head < n) break;
    const start = pos + head;
    pos = start + n;
    onFrame(c, (b0 & 0x80) !== 0, opcode, data, start, pos);
    // Nothing after a close frame counts.
    if (opcode === 0x8 || c.socket.destroyed) return;
  }
  if (pos < len) c.pending = owned ? data.subarray(pos, len) : Buffer.from(data.subarray(pos, len));
}

/** The client's 'onread' callback body: `n` new bytes at the start of READ_BUF. */
function onRead(c: Client, n: number, settle: (error: string | null) => void): void {
  if (c.state !== CONNECTING) {
    if (c.state === OPEN || c.state === CLOSING) onFrames(c, READ_BUF, 0, n, false);
    return;
  }
  // The opening handshake's response: accumulate its head (small), then the rest are frames.
  let data = READ_BUF.subarray(0, n);
  let owned = false;
  if (c.pending !== null) {
    data = Buffer.concat([c.pending, data]);
    owned = true;
    c.pending = null;
  }
  const end = data.indexOf(HEAD_END);
  if (end < 0) {
    if (data.length > MAX_HEAD) settle('Invalid HTTP response: head too large');
    else c.pending = owned ? data : Buffer.from(data);
    return;
  }
  const head = data.toString('latin1', 0, end);
  const status = /^HTTP\/1\.1 (\d{3})/.exec(head);
  if (status === null) return settle('Invalid HTTP response');
  if (status[1] !== '101') return settle(`Unexpected server response: ${status[1]}`);
  const accept = /\r\nsec-websocket-accept:[ \t]*([^\r]*?)[ \t]*(?:\r\n|$)/i.exec(head);
  if (accept === null) return settle('Missing Sec-WebSocket-Accept header');
  if (accept[1] !== ACCEPT) return settle('Invalid Sec-WebSocket-Accept header');
  if (!/\r\nupgrade:[ \t]*websocket[ \t]*(?:\r\n|$)/i.test(head)) return settle('Invalid Upgrade header');
  settle(null);
  if (end + 4 < data.length) onFrames(c, data, end + 4, data.length, owned);
}

function parsePortRange(text: string | undefined): { from: number; to: number } | null {
  if (text === undefined) return null;
  const m = /^(\d+)-(\d+)$/.exec(text);
  if (m === null || localAddress === undefined) throw new Error('--local-ports needs FROM-TO and --local-address');
  return { from: Number(m[1]), to: Number(m[2]) };
}

function takeLocalPort(to: number): number {
  if (nextLocalPort > to) throw new Error(`--local-ports: every port up to ${to} is used`);
  return nextLocalPort++;
}

/** Opens client `index`; true when its local port was taken by someone else's socket (try again on the next port). */
function openOne(index: number): Promise<boolean> {
  return new Promise((resolve) => {
    let settled = false;
    // Assigned right after net.connect(), long before its first callback can run.
    let c = null as unknown as Client;
    const settle = (error: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error === null) {
        c.state = OPEN;
        slots[c.slot]?.add(c);
        open++;
      } else {
        failedUpgrades++;
        lastError = error;
        c.state = CLOSED;
        c.pending = null;
        c.socket.destroy();
      }
      resolve(false);
    };
    const socket = net.connect({
      host,
      port,
      noDelay: true,
      ...(localAddress === undefined ? {} : { localAddress }),
      ...(localPorts === null ? {} : { localPort: takeLocalPort(localPorts.to) }),
      onread: {
        buffer: READ_BUF,
        callback: (n: number): boolean => {
          onRead(c, n, settle);
          return true;
        },
      },
    });
    c = { socket, slot: index % SLOTS, out: 0, state: CONNECTING, pending: null };
    const timer = setTimeout(() => settle('Opening handshake has timed out'), HANDSHAKE_TIMEOUT_MS);
    socket.write(`GET /${prefix}${index}${REQUEST_TAIL}`, 'latin1');
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (c.state === CONNECTING && err.code === 'EADDRINUSE' && localPorts !== null && !settled) {
        // A listener elsewhere holds this port (0.0.0.0:port covers our address too): not a failed upgrade.
        settled = true;
        clearTimeout(timer);
        c.state = CLOSED;
        socket.destroy();
        resolve(true);
        return;
      }
      if (c.state === CONNECTING) settle(err.message);
      else lastError = err.message;
    });
    socket.on('close', () => {
      if (c.state === CONNECTING) settle('Socket closed during the opening handshake');
      // Closed by the close command (also when its 5 s ran out and destroyed the socket) or not.
      const asked = c.state === CLOSING;
      c.state = CLOSED;
      c.pending = null;
      if (slots[c.slot]?.delete(c) === true) {
        open--;
        if (!asked && !closing) unexpectedCloses++;
      }
      if (asked && --closeWaiting === 0) onAllClosed?.();
    });
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
      const index = nextIndex++;
      while (await openOne(index));
    }
  });
  await Promise.all(workers);
  reply({ type: 'opened', open, failedUpgrades, lastError, ms: Math.round(performance.now() - start) });
}

let tick = 0;
setInterval(() => {
  if (!sending) return;
  const slot = slots[tick++ % SLOTS];
  if (slot === undefined || slot.size === 0) return;
  // One frame per tick, written as is to every client of the slot.
  const frame = maskedFrame(0x1, Buffer.from(String(performance.now()), 'latin1'));
  for (const c of slot) {
    if (c.state !== OPEN) continue;
    c.out++;
    sent++;
    c.socket.write(frame);
  }
}, TICK_MS);

function stats(): void {
  const sorted = latencies.sort((a, b) => a - b);
  const at = (q: number): number => (sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number));
  reply({ type: 'stats', open, sent, replies, failedUpgrades, unexpectedCloses, lastError, p50: at(0.5), p99: at(0.99), max: at(1), samples: sorted.length, rssKb: Math.round(process.memoryUsage.rss() / 1024) });
  latencies = [];
}

/** Sends a close frame (1000, 'bench done') to every open client, waits for them to go, destroys what is left after 5 s. */
async function closeAll(): Promise<void> {
  closing = true;
  const all = slots.flatMap((s) => [...s]);
  closeWaiting = 0;
  for (const c of all) {
    if (c.state !== OPEN) continue;
    c.state = CLOSING;
    closeWaiting++;
    c.socket.write(BENCH_DONE);
  }
  if (closeWaiting > 0) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        for (const c of all) if (c.state === CLOSING) c.socket.destroy();
        resolve();
      }, CLOSE_TIMEOUT_MS);
      onAllClosed = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  onAllClosed = null;
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
