/**
 * Backends that accept and then fail, for the fault scenarios, in a process
 * of their own (so the fault is a real peer's, not the harness's):
 *
 * - `blackhole`: accepts, reads and drops, never writes, never closes;
 * - `reset`: accepts and resets at once (RST, as a crashing worker does).
 *
 *   node chaos/lib/bad-backend.ts --mode blackhole|reset [--ports N]
 *
 * Prints {"type":"ready","ports":[...],"pid":P}; `count` on stdin answers
 * {"type":"count","accepted":N}. Exits on SIGTERM or when stdin closes.
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { mode: { type: 'string', default: 'blackhole' }, ports: { type: 'string', default: '1' } } });
const mode = values.mode;
if (mode !== 'blackhole' && mode !== 'reset') throw new Error(`--mode must be blackhole or reset, not ${mode}`);
let accepted = 0;

function onSocket(socket: net.Socket): void {
  accepted++;
  socket.on('error', () => {});
  if (mode === 'reset') socket.resetAndDestroy();
  else socket.resume();
}

const ports = await Promise.all(
  Array.from({ length: Math.max(1, Number(values.ports)) }, () =>
    new Promise<number>((resolve) => {
      const server = net.createServer({ allowHalfOpen: true }, onSocket);
      server.listen(0, '127.0.0.1', 4096, () => resolve((server.address() as AddressInfo).port));
    }),
  ),
);
process.stdout.write(`${JSON.stringify({ type: 'ready', ports, port: ports[0], pid: process.pid })}\n`);
createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line.trim() === 'count') process.stdout.write(`${JSON.stringify({ type: 'count', accepted })}\n`);
  })
  .on('close', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
