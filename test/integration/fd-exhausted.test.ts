/**
 * Issue 16, defect 8: running out of file descriptors. polyproxy runs under
 * a low `ulimit -n` (prlimit); clients past what fits get their protocol's
 * error, an established session of another client keeps working, running
 * out is logged once per interval and counted, and accepting resumes when
 * descriptors free up.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';

const LIMIT = 200;

/** A PostgreSQL server that lets everyone in and answers every later message with ReadyForQuery. */
let backend: net.Server;
const backendSockets = new Set<net.Socket>();
const AUTH_OK_READY = Buffer.from('520000000800000000' + '5a0000000549', 'hex');
const READY = Buffer.from('5a0000000549', 'hex');

before(async () => {
  backend = net.createServer((socket) => {
    backendSockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => backendSockets.delete(socket));
    let first = true;
    socket.on('data', () => {
      socket.write(first ? AUTH_OK_READY : READY);
      first = false;
    });
  });
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
});

after(async () => {
  for (const socket of backendSockets) socket.destroy();
  await new Promise<void>((resolve) => backend.close(() => resolve()));
});

function startup(database: string): Buffer {
  const body = Buffer.from(`user\0pp\0database\0${database}\0\0`, 'latin1');
  const out = Buffer.alloc(8 + body.length);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(196608, 4);
  body.copy(out, 8);
  return out;
}

interface Client {
  socket: net.Socket;
  /** 'ready': the session is relayed; 'E:<sqlstate>': an ErrorResponse; else how the connection ended. */
  outcome: Promise<string>;
}

function sqlstateOf(bytes: Buffer): string {
  let at = 5;
  while (at < bytes.length && bytes[at] !== 0) {
    const end = bytes.indexOf(0, at + 1);
    if (bytes[at] === 0x43) return bytes.toString('latin1', at + 1, end);
    at = end + 1;
  }
  return '?';
}

function connectClient(port: number, send = true): Client {
  const socket = net.connect({ host: '127.0.0.1', port });
  const outcome = new Promise<string>((resolve) => {
    let got = Buffer.alloc(0);
    socket.on('connect', () => {
      if (send) socket.write(startup('pp_fd'));
    });
    socket.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (got[0] === 0x45 && got.length >= 5 && got.length >= 1 + got.readInt32BE(1)) resolve(`E:${sqlstateOf(got)}`);
      else if (got.includes(0x5a)) resolve('ready');
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    socket.on('close', () => resolve('closed'));
  });
  return { socket, outcome };
}

/** Sends a query on an established session and waits for ReadyForQuery. */
function query(socket: net.Socket): Promise<boolean> {
  return new Promise((resolve) => {
    const onData = (chunk: Buffer): void => {
      if (chunk.includes(0x5a)) done(true);
    };
    const done = (ok: boolean): void => {
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      clearTimeout(timer);
      resolve(ok);
    };
    const onClose = (): void => done(false);
    const timer = setTimeout(() => done(false), 5000);
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.write(Buffer.from('510000000d73656c65637420310000', 'hex').subarray(0, 14)); // Q "select 1\0"
  });
}

/** Descriptors in use below the limit (one inherited from the test runner may sit above it; new ones cannot). */
function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).filter((fd) => Number(fd) < LIMIT).length;
}

async function start(maxConnections: number | undefined): Promise<RunningCli> {
  const listener: Record<string, unknown> = { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0 };
  if (maxConnections !== undefined) listener.maxConnections = maxConnections;
  const file = await writeConfig({
    workers: 1,
    admin: { host: '127.0.0.1', port: 0 },
    security: { allowBackends: ['127.0.0.0/8'] },
    routes: { pp_fd: `127.0.0.1:${(backend.address() as AddressInfo).port}` },
    listeners: [listener],
  });
  return startCli(['--config', file], 20000, ['prlimit', `--nofile=${LIMIT}:${LIMIT}`]);
}

async function scrape(proxy: RunningCli, name: string): Promise<number> {
  const admin = (proxy.ready as unknown as { admin: AddressInfo }).admin;
  const res = await fetch(`http://127.0.0.1:${admin.port}/metrics`);
  const text = await res.text();
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

const skip = process.platform !== 'linux' ? 'needs Linux (/proc, prlimit)' : false;

test('maxConnections defaults to a share of the fd limit: the excess gets 53300, no descriptor runs out', { skip }, async () => {
  const proxy = await start(undefined);
  const clients: Client[] = [];
  try {
    const share = Math.floor((LIMIT - 64) / 2);
    const outcomes: string[] = [];
    for (let i = 0; i < share + 5; i++) {
      const client = connectClient(proxy.port('pg'));
      clients.push(client);
      outcomes.push(await client.outcome);
    }
    assert.equal(outcomes.filter((o) => o === 'ready').length, share);
    assert.deepEqual(outcomes.slice(share), Array(5).fill('E:53300'));
    assert.equal(await query((clients[0] as Client).socket), true, 'an established session keeps working');
    assert.ok(!proxy.logs.some((l) => l.msg.startsWith('out of file descriptors')));
    assert.equal(await scrape(proxy, 'polyproxy_fd_exhausted_total'), 0);
  } finally {
    for (const c of clients) c.socket.destroy();
    await proxy.stop();
  }
});

test('out of descriptors (maxConnections set too high): UNAVAILABLE for the excess, logged once, counted, paused, resumed', { skip }, async () => {
  const proxy = await start(10_000);
  const pid = proxy.child.pid as number;
  const port = proxy.port('pg');
  const clients: Client[] = [];
  try {
    // Fill the descriptors with sessions (two each) until one or two are left.
    while (LIMIT - openFds(pid) > 2) {
      const client = connectClient(port);
      clients.push(client);
      assert.equal(await client.outcome, 'ready');
    }
    if (LIMIT - openFds(pid) === 2) {
      // One descriptor more: a client in its opening holds just its own.
      const idle = connectClient(port, false);
      clients.push(idle);
      for (let i = 0; i < 200 && LIMIT - openFds(pid) !== 1; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(LIMIT - openFds(pid), 1);
    // The last descriptor takes the client; its backend dial finds none.
    const excess = connectClient(port);
    assert.equal(await excess.outcome, 'E:57P03');
    const logged = await proxy.waitForLog((l) => l.msg === 'out of file descriptors: accepting paused until some are free');
    assert.equal(logged.listener, 'pg');
    // Paused: the listening socket is closed, new clients are refused by the kernel, never given a session.
    // (One that reached the accept queue just before the close is reset by the kernel instead.)
    assert.match(await connectClient(port).outcome, /^(ECONNREFUSED|ECONNRESET)$/);
    // An established session of another client keeps working.
    assert.equal(await query((clients[0] as Client).socket), true);

    // After the pause the listener accepts again; still out of descriptors, the next excess client gets 57P03 too, without a second log line.
    await proxy.waitForLog((l) => l.msg === 'accepting again');
    let again = 'ECONNREFUSED';
    for (let i = 0; i < 100 && again === 'ECONNREFUSED'; i++) {
      again = await connectClient(port).outcome;
      if (again === 'ECONNREFUSED') await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(again, 'E:57P03');
    assert.equal(proxy.logs.filter((l) => l.msg.startsWith('out of file descriptors')).length, 1, 'one log line per interval');

    // Sessions end: descriptors free up, accepting resumes, new sessions work.
    for (const c of clients.splice(1, 10)) c.socket.destroy();
    let outcome = 'ECONNREFUSED';
    for (let i = 0; i < 100 && outcome !== 'ready'; i++) {
      const client = connectClient(port);
      clients.push(client);
      outcome = await client.outcome;
      if (outcome !== 'ready') await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(outcome, 'ready');
    assert.ok((await scrape(proxy, 'polyproxy_fd_exhausted_total{listener="pg"}')) >= 2);
  } finally {
    for (const c of clients) c.socket.destroy();
    await proxy.stop();
  }
});

test('a ws-bridge listener without maxConnections: one descriptor per client, its API pool set aside; the excess upgrade gets 503', { skip }, async () => {
  // The API: every upgrade's GET is accepted.
  const api = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
  const poolMax = 16;
  const file = await writeConfig({
    workers: 1,
    admin: { host: '127.0.0.1', port: 0 },
    listeners: [{ name: 'ws', protocol: 'ws-bridge', host: '127.0.0.1', port: 0, api: `http://127.0.0.1:${(api.address() as AddressInfo).port}/`, pool: { maxConnections: poolMax } }],
  });
  const proxy = await startCli(['--config', file], 20000, ['prlimit', `--nofile=${LIMIT}:${LIMIT}`]);
  const clients: WebSocket[] = [];
  try {
    const share = LIMIT - 64 - poolMax; // not (LIMIT - 64) / 2: a client holds one descriptor, not two
    const logged = await proxy.waitForLog((l) => l.msg === 'listeners without maxConnections take a share of the open-files limit');
    assert.deepEqual(logged.maxConnections, { ws: share });
    const url = `ws://127.0.0.1:${proxy.port('ws')}/`;
    for (let i = 0; i < share; i++) {
      const ws = new WebSocket(`${url}c${i}`);
      clients.push(ws);
      await once(ws, 'open');
    }
    const excess = new WebSocket(`${url}over`);
    excess.on('error', () => {});
    const [, res] = (await once(excess, 'unexpected-response')) as [unknown, http.IncomingMessage];
    assert.equal(res.statusCode, 503);
    res.resume();
    assert.ok(!proxy.logs.some((l) => l.msg.startsWith('out of file descriptors')));
  } finally {
    for (const ws of clients) ws.terminate();
    await proxy.stop();
    await new Promise<void>((resolve) => api.close(() => resolve()));
  }
});
