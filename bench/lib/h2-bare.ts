/**
 * The floor for the http2 bench: a bare node:http2 server (no proxying,
 * no backend) answering every stream with 200 "hello\n", so RESULTS shows
 * what node:http2 itself costs per stream on the proxy CPU. Prints
 * `{"type":"ready","port":N}` when listening.
 *
 *   node bench/lib/h2-bare.ts
 */
import http2 from 'node:http2';
import type { ServerHttp2Stream } from 'node:http2';

const HEAD = [':status', '200', 'content-type', 'text/plain', 'content-length', '6'];
const BODY = Buffer.from('hello\n');

const server = http2.createServer({ settings: { maxConcurrentStreams: 128 } });
server.on('stream', (stream: ServerHttp2Stream) => {
  stream.respond(HEAD);
  stream.end(BODY);
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ type: 'ready', port })}\n`);
});
