/**
 * Bulk receiver: accepts connections and discards what arrives, reading
 * into one shared buffer (polyproxy's own shared-read-buffer, so the sink
 * allocates nothing per read and costs as little CPU as possible). When a
 * client ends, the sink ends its side too, so the sender's 'close' means
 * every byte arrived. Prints `{"type":"ready","port":N}` when listening and
 * `{"type":"done","bytes":N}` per finished connection.
 *
 *   node bench/lib/bulk-sink.ts [--port N]
 */
import net from 'node:net';
import type { Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { adoptSharedReadBuffer } from '../../src/core/io/socket-onread.ts';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' } } });
const received = new WeakMap<Socket, { bytes: number }>();

function sinkOnRead(this: Socket, nread: number): boolean {
  const state = received.get(this);
  if (state !== undefined) state.bytes += nread;
  return true;
}

const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
  const state = { bytes: 0 };
  received.set(socket, state);
  if (!adoptSharedReadBuffer(socket, sinkOnRead)) socket.on('data', (chunk: Buffer) => (state.bytes += chunk.length));
  socket.on('error', () => {});
  socket.on('end', () => {
    process.stdout.write(`${JSON.stringify({ type: 'done', bytes: state.bytes })}\n`);
    socket.end();
  });
  socket.resume();
});

server.listen(Number(values.port), '127.0.0.1', 4096, () => {
  const { port } = server.address() as net.AddressInfo;
  process.stdout.write(`${JSON.stringify({ type: 'ready', port, pid: process.pid })}\n`);
});

process.on('SIGTERM', () => process.exit(0));
process.stdin.on('end', () => process.exit(0)).resume();
