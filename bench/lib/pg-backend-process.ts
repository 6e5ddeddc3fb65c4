/**
 * The embedded PostgreSQL demo server in a process of its own, as a cheap
 * backend for benchmarks.
 *
 *   node bench/lib/pg-backend-process.ts [--name NAME] [--port N] [--host H]
 *
 * Prints `{"type":"ready","port":N,"pid":P}` once listening; answers the
 * stdin command `count` with `{"type":"count","connections":N}`; exits on
 * SIGTERM or when stdin closes.
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { startPgDemoServer } from '../../src/demo/pg-demo-server.ts';

const { values } = parseArgs({ options: { name: { type: 'string', default: 'bench' }, port: { type: 'string', default: '0' }, host: { type: 'string', default: '127.0.0.1' } } });

const server = await startPgDemoServer({ name: values.name, host: values.host, port: Number(values.port) });
process.stdout.write(`${JSON.stringify({ type: 'ready', port: server.port, pid: process.pid })}\n`);

createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line.trim() === 'count') process.stdout.write(`${JSON.stringify({ type: 'count', connections: server.connections })}\n`);
  })
  .on('close', () => process.exit(0));

process.on('SIGTERM', () => process.exit(0));
