/**
 * Bulk sender: opens `--connections` connections to `--port` at once, sends
 * `--bytes` bytes on each (one reused 1 MiB buffer, honouring
 * backpressure), half-closes, and waits for the peer to close (the sink
 * closes once it has read everything). Prints
 * `{"type":"result","bytes":N,"seconds":S}` and exits.
 *
 *   node bench/lib/bulk-send.ts --port N --connections 4 --bytes 1073741824
 */
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { port: { type: 'string' }, host: { type: 'string', default: '127.0.0.1' }, connections: { type: 'string', default: '4' }, bytes: { type: 'string', default: String(2 ** 30) } },
});
const port = Number(values.port);
const connections = Number(values.connections);
const perConnection = Number(values.bytes);
const CHUNK = Buffer.alloc(1024 * 1024, 0x5a);

function sendOne(): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: values.host, port, allowHalfOpen: true });
    let left = perConnection;
    const pump = (): void => {
      while (left > 0) {
        const chunk = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
        left -= chunk.length;
        if (!socket.write(chunk)) {
          socket.once('drain', pump);
          return;
        }
      }
      socket.end();
    };
    socket.once('connect', pump);
    socket.once('error', reject);
    socket.once('close', (hadError) => (hadError ? reject(new Error('connection closed with an error')) : resolve()));
    socket.resume();
  });
}

const started = process.hrtime.bigint();
await Promise.all(Array.from({ length: connections }, sendOne));
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
process.stdout.write(`${JSON.stringify({ type: 'result', bytes: perConnection * connections, seconds })}\n`);
process.exit(0);
