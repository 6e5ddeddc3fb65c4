/**
 * Anchor: the naive Node proxy, `client.pipe(backend).pipe(client)` with a
 * closure per connection — what a Node proxy costs without care.
 *
 *   node bench/lib/pipe-proxy.ts --backend HOST:PORT [--port N] [--host H]
 *
 * Prints `{"type":"ready","port":N,"pid":P}` once listening; exits on SIGTERM
 * or when stdin closes.
 */
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { backend: { type: 'string' }, port: { type: 'string', default: '0' }, host: { type: 'string', default: '127.0.0.1' } } });
if (values.backend === undefined) throw new Error('--backend HOST:PORT is required');
const colon = values.backend.lastIndexOf(':');
const backendHost = values.backend.slice(0, colon);
const backendPort = Number(values.backend.slice(colon + 1));

const server = net.createServer({ noDelay: true }, (client) => {
  const backend = net.connect({ host: backendHost, port: backendPort, noDelay: true });
  client.on('error', () => backend.destroy());
  backend.on('error', () => client.destroy());
  client.pipe(backend).pipe(client);
});

server.listen(Number(values.port), values.host, 4096, () => {
  const { port } = server.address() as net.AddressInfo;
  process.stdout.write(`${JSON.stringify({ type: 'ready', port, pid: process.pid })}\n`);
});

process.on('SIGTERM', () => process.exit(0));
process.stdin.on('end', () => process.exit(0)).resume();
