/**
 * Issue 16, defect 9: at the drain deadline a client still in its opening
 * gets its protocol's "shutting down" error (PostgreSQL 57P01, MySQL 1053),
 * whether the proxy was reading from it or waiting on its backend; it is
 * not just cut (MySQL clients reported "2027 malformed packet").
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { after, before, test } from 'node:test';
import mysql from 'mysql2/promise';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';

/** A backend that accepts and never says a word: a MySQL client behind it stays in its opening. */
let silent: net.Server;
const held = new Set<net.Socket>();

before(async () => {
  silent = net.createServer((socket) => {
    held.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => held.delete(socket));
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
});

after(async () => {
  for (const socket of held) socket.destroy();
  await new Promise<void>((resolve) => silent.close(() => resolve()));
});

async function startProxy(): Promise<RunningCli> {
  const backend = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
  return startCli([
    '--config',
    await writeConfig({
      shutdownTimeoutSeconds: 0.5,
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: { pp_drain: backend },
      listeners: [
        { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0 },
        { name: 'my', protocol: 'mysql', host: '127.0.0.1', port: 0 },
      ],
    }),
  ]);
}

/** Connects and collects everything the proxy sends until it closes. */
function rawClient(port: number): { socket: net.Socket; received: () => Buffer; closed: Promise<void> } {
  const socket = net.connect({ host: '127.0.0.1', port });
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, received: () => Buffer.concat(chunks), closed };
}

/** The fields of a PostgreSQL ErrorResponse. */
function pgErrorFields(bytes: Buffer): Map<string, string> {
  assert.equal(bytes[0], 0x45, `an ErrorResponse, got ${bytes.toString('hex')}`);
  const fields = new Map<string, string>();
  let at = 5;
  while (at < bytes.length && bytes[at] !== 0) {
    const end = bytes.indexOf(0, at + 1);
    fields.set(String.fromCharCode(bytes[at] as number), bytes.toString('utf8', at + 1, end));
    at = end + 1;
  }
  return fields;
}

test('drain deadline: clients in their opening get 57P01 (PostgreSQL) and 1053 (MySQL)', async () => {
  const proxy = await startProxy();
  // PostgreSQL: a startup packet's length, then nothing (the proxy is reading).
  const pgClient = rawClient(proxy.port('pg'));
  await new Promise<void>((resolve) => pgClient.socket.once('connect', () => resolve()));
  pgClient.socket.write(Buffer.from([0, 0, 0, 40]));
  // MySQL, reading: takes the greeting and answers nothing.
  const myReading = rawClient(proxy.port('my'));
  for (let i = 0; i < 200 && myReading.received().length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(myReading.received().length > 0, 'the proxy greeted');
  const greetingLength = myReading.received().length;
  // MySQL, waiting on its backend: a real driver whose backend never greets.
  const driver = mysql.createConnection({ host: '127.0.0.1', port: proxy.port('my'), user: 'pp_user', database: 'pp_drain', connectTimeout: 20000 });
  const driverError = driver.then(
    () => assert.fail('the connection should not open'),
    (err: { errno?: number; sqlState?: string }) => err,
  );
  for (let i = 0; i < 500 && held.size === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(held.size, 1, 'the proxy dialed the silent backend');

  proxy.child.kill('SIGTERM');
  const { code } = await proxy.exited;
  assert.equal(code, 0);
  assert.ok(proxy.logs.some((l) => l.msg === 'drain deadline passed: closing remaining sessions'));

  await pgClient.closed;
  assert.equal(pgErrorFields(pgClient.received()).get('C'), '57P01');

  await myReading.closed;
  const err = myReading.received().subarray(greetingLength);
  assert.equal(err[4], 0xff, `an ERR packet, got ${err.toString('hex')}`);
  assert.equal(err.readUInt16LE(5), 1053);
  assert.equal(err.readUIntLE(0, 3), err.length - 4, 'one whole packet');

  const failure = await driverError;
  assert.equal(failure.errno, 1053);
  assert.equal(failure.sqlState, '08S01');
});
