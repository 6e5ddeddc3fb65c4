/**
 * Echo backend for the raw TCP scenarios (tcp-rate, tcp-hold): echoes what it
 * reads and closes when the client closes. Listens on `--ports` ports (one per
 * target, so TIME_WAIT entries of one target never collide with another's).
 * Prints `{"type":"ready","ports":[...],"pid":P}` once listening; on `count`
 * (stdin) prints `{"type":"count","connections":N}`; exits on SIGTERM or
 * when stdin closes.
 *
 * `--close-after-echo`: end() right after the first echo (server closes first).
 *
 *   node bench/lib/echo-backend.ts [--ports 1] [--close-after-echo]
 */
import net from 'node:net';
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { ports: { type: 'string', default: '1' }, 'close-after-echo': { type: 'boolean', default: false } } });
let connections = 0;

function onSocket(socket: Socket): void {
  connections++;
  if (values['close-after-echo']) socket.once('data', (chunk: Buffer) => socket.end(chunk));
  else socket.on('data', (chunk: Buffer) => socket.write(chunk));
  socket.on('error', () => {});
  socket.on('close', () => connections--);
}

const ports = await Promise.all(
  Array.from({ length: Math.max(1, Number(values.ports)) }, () =>
    new Promise<number>((resolve) => {
      const server = net.createServer({ noDelay: true }, onSocket);
      server.listen(0, '127.0.0.1', 4096, () => resolve((server.address() as net.AddressInfo).port));
    }),
  ),
);
process.stdout.write(`${JSON.stringify({ type: 'ready', ports, port: ports[0], pid: process.pid })}\n`);

createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line.trim() === 'count') process.stdout.write(`${JSON.stringify({ type: 'count', connections })}\n`);
  })
  .on('close', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
