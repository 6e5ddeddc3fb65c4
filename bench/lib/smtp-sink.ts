/**
 * SMTP backend for benchmarks: smtp-server (no AUTH, no STARTTLS) that
 * accepts every message and discards it, counting them. Prints
 * `{"type":"ready","port":N}` when listening; `count` on stdin answers
 * `{"type":"count","messages":N}`.
 *
 *   node bench/lib/smtp-sink.ts [--port N]
 */
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { SMTPServer } from 'smtp-server';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' } } });
let messages = 0;

const server = new SMTPServer({
  logger: false,
  authOptional: true,
  disabledCommands: ['AUTH', 'STARTTLS'],
  banner: 'bench sink',
  size: 10 * 1024 * 1024,
  maxClients: 1000,
  onData(stream, _session, callback) {
    stream.on('end', () => {
      messages++;
      callback();
    });
    stream.resume();
  },
});
server.on('error', (err) => process.stderr.write(`smtp-sink: ${err.message}\n`));

server.listen(Number(values.port), '127.0.0.1', () => {
  const { port } = server.server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ type: 'ready', port, pid: process.pid })}\n`);
});

process.on('SIGTERM', () => process.exit(0));
createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line.trim() === 'count') process.stdout.write(`${JSON.stringify({ type: 'count', messages })}\n`);
  })
  .on('close', () => process.exit(0));
