/**
 * The HTTP API behind the ws-bridge benchmark (the ws2api "API server"):
 * GET /api/<id> → `ok` (upgrade allowed), POST /api/<id> → the body back
 * (so each client message gets a reply message), DELETE → empty.
 * Prints {"type":"ready","port":N}; `stats` on stdin →
 * {"type":"stats","get":..,"post":..,"delete":..} (summed over processes).
 *
 * `--processes N` (ws-scale: 10,000 messages/s is more than one Node
 * process answers on a shared core) runs N processes on one port
 * (SO_REUSEPORT): this one and N − 1 forked copies that report their
 * counts over IPC.
 *
 *   node bench/lib/ws2api-server.ts [--port N] [--processes N]
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' }, processes: { type: 'string', default: '1' }, child: { type: 'boolean', default: false } } });
type Counts = { get: number; post: number; delete: number; other: number };
const counts: Counts = { get: 0, post: 0, delete: 0, other: 0 };
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

const processes = Math.max(1, Number(values.processes));
const reusePort = processes > 1 || values.child;
await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: Number(values.port), backlog: 4096, reusePort }, resolve));
const port = (server.address() as AddressInfo).port;

if (values.child) {
  process.on('message', (m) => {
    if (m === 'stats') process.send?.({ stats: counts });
  });
  process.on('disconnect', () => process.exit(0));
  process.send?.({ ready: true });
} else {
  const children: ChildProcess[] = [];
  for (let i = 1; i < processes; i++) {
    const child = fork(new URL(import.meta.url).pathname, ['--child', '--port', String(port)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    await new Promise<void>((resolve) => child.once('message', () => resolve()));
    children.push(child);
  }
  const childCounts = (child: ChildProcess): Promise<Counts> =>
    new Promise((resolve) => {
      child.once('message', (m) => resolve((m as { stats: Counts }).stats));
      child.send('stats');
    });
  process.stdout.write(`${JSON.stringify({ type: 'ready', port, pid: process.pid, pids: [process.pid, ...children.map((c) => c.pid)] })}\n`);
  createInterface({ input: process.stdin })
    .on('line', (line) => {
      if (line.trim() !== 'stats') return;
      void Promise.all(children.map(childCounts)).then((list) => {
        const total = { ...counts };
        for (const c of list) for (const k of Object.keys(total) as Array<keyof Counts>) total[k] += c[k];
        process.stdout.write(`${JSON.stringify({ type: 'stats', ...total })}\n`);
      });
    })
    .on('close', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}
