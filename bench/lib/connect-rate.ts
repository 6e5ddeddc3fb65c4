/**
 * Connection-rate load process (tcp-rate): `--concurrency` loops, each
 * connect → write 1 byte → wait for the echo → destroy → next, during
 * `--seconds` from `--start-at` (epoch ms, so several processes measure the
 * same window). Connections that complete inside the window are counted; a
 * loop that hits an error (e.g. EADDRNOTAVAIL) backs off 10 ms. Prints
 * `{"type":"result","connections":N,"errors":E,"lastError":"…","seconds":S}`.
 *
 * `--wait-eof`: after the echo, wait for the peer to close first.
 *
 *   node bench/lib/connect-rate.ts --port N [--host H] [--concurrency 48] [--seconds 10] [--start-at MS] [--wait-eof]
 */
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    concurrency: { type: 'string', default: '48' },
    seconds: { type: 'string', default: '10' },
    'start-at': { type: 'string', default: '0' },
    'wait-eof': { type: 'boolean', default: false },
  },
});
if (values.port === undefined) throw new Error('--port is required');
const host = values.host;
const port = Number(values.port);
const concurrency = Number(values.concurrency);
const windowMs = Number(values.seconds) * 1000;
const BYTE = Buffer.from('x');

let startAt = Number(values['start-at']);
let endAt = 0;
let counted = 0;
let errors = 0;
let lastError = '';
let live = 0;

function loop(): void {
  if (Date.now() >= endAt) {
    if (--live === 0) finish();
    return;
  }
  const socket = net.connect({ host, port, noDelay: true });
  let echoed = false;
  let failed = false;
  socket.on('connect', () => socket.write(BYTE));
  socket.on('data', () => {
    echoed = true;
    if (!values['wait-eof']) socket.destroy();
  });
  socket.on('error', (err) => {
    failed = true;
    lastError = err.message;
  });
  socket.on('close', () => {
    const now = Date.now();
    if (echoed && now >= startAt && now < endAt) counted++;
    if (!echoed) {
      errors++;
      if (!failed) lastError = 'closed before the echo';
      setTimeout(loop, 10);
      return;
    }
    loop();
  });
}

function finish(): void {
  process.stdout.write(`${JSON.stringify({ type: 'result', connections: counted, errors, lastError, seconds: windowMs / 1000 })}\n`);
  process.exit(0);
}

if (startAt < Date.now()) startAt = Date.now();
endAt = startAt + windowMs;
// Start the loops a little before the window so it opens at full speed.
setTimeout(() => {
  live = concurrency;
  for (let i = 0; i < concurrency; i++) loop();
}, Math.max(0, startAt - Date.now() - 200));
process.on('SIGTERM', () => process.exit(0));
