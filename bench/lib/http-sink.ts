/**
 * HTTP bulk backend (node:http): `POST /upload` reads the body and discards
 * it, then answers `{"bytes":N}`; `GET /download?bytes=N` sends N bytes
 * (one reused 1 MiB buffer, honouring backpressure, Content-Length framed).
 * Prints `{"type":"ready","port":N}` when listening.
 *
 *   node bench/lib/http-sink.ts [--port N]
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' } } });
const CHUNK = Buffer.alloc(1024 * 1024, 0x5a);

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://sink');
  if (req.method === 'POST') {
    let bytes = 0;
    req.on('data', (chunk: Buffer) => (bytes += chunk.length));
    req.on('end', () => {
      const body = JSON.stringify({ bytes });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    return;
  }
  let left = Number(url.searchParams.get('bytes') ?? '0');
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(left) });
  const pump = (): void => {
    while (left > 0) {
      const chunk = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
      left -= chunk.length;
      if (!res.write(chunk)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
});
server.keepAliveTimeout = 60_000;
server.requestTimeout = 0;

server.listen(Number(values.port), '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ type: 'ready', port, pid: process.pid })}\n`);
});

process.on('SIGTERM', () => process.exit(0));
process.stdin.on('end', () => process.exit(0)).resume();
