/**
 * The HTTP API behind the ws-bridge benchmark (the ws2api "API server"):
 * GET /api/<id> → `ok` (upgrade allowed), POST /api/<id> → the body back
 * (so each client message gets a reply message), DELETE → empty.
 * Prints {"type":"ready","port":N}; `stats` on stdin →
 * {"type":"stats","get":..,"post":..,"delete":..}.
 *
 *   node bench/lib/ws2api-server.ts [--port N]
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' } } });
const counts = { get: 0, post: 0, delete: 0, other: 0 };
const OK = Buffer.from('ok');
const EMPTY = Buffer.alloc(0);

const server = http.createServer({ keepAliveTimeout: 120_000 }, (req, res) => {
  if (req.method === 'GET') {
    counts.get++;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 }).end(OK);
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    if (req.method === 'POST') {
      counts.post++;
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
      res.writeHead(200, { 'content-type': req.headers['content-type'] ?? 'text/plain', 'content-length': body.length }).end(body);
    } else {
      if (req.method === 'DELETE') counts.delete++;
      else counts.other++;
      res.writeHead(200, { 'content-length': 0 }).end(EMPTY);
    }
  });
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 0;
server.requestTimeout = 0;
server.listen({ host: '127.0.0.1', port: Number(values.port), backlog: 4096 }, () => {
  process.stdout.write(`${JSON.stringify({ type: 'ready', port: (server.address() as AddressInfo).port, pid: process.pid })}\n`);
});

createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line.trim() === 'stats') process.stdout.write(`${JSON.stringify({ type: 'stats', ...counts })}\n`);
  })
  .on('close', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
