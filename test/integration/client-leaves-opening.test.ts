/**
 * Issue 16, defect 3 ("end a session whose client is gone"): a client that
 * half-closes (FIN) while the proxy connects to its backend or waits for
 * the backend's handshake answer (MySQL's greeting, SMTP's banner) cannot
 * finish its session. The proxy ends it at once — the backend connection
 * it waited on is closed, the connect in progress dropped — instead of
 * holding both until the handshake or connect deadline (8 s here).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { unansweredEndpoint } from '../helpers/unanswered.ts';
import type { Unanswered } from '../helpers/unanswered.ts';
import { CLIENT_CONNECT_WITH_DB, CLIENT_PLUGIN_AUTH, CLIENT_PROTOCOL_41, CLIENT_SECURE_CONNECTION, buildHandshakeResponse, encodePacket } from '../../src/protocols/mysql/packets.ts';

const DEADLINE_MS = 8000;
/** Well under the deadlines: the session must end "at once". */
const AT_ONCE_MS = 2000;

interface SilentBackend {
  readonly server: net.Server;
  readonly sockets: Set<net.Socket>;
  port: number;
}

/** Accepts and never writes; reads and drops what comes; never closes by itself. */
async function silentBackend(): Promise<SilentBackend> {
  const backend: SilentBackend = { server: net.createServer({ allowHalfOpen: true }), sockets: new Set(), port: 0 };
  backend.server.on('connection', (socket) => {
    backend.sockets.add(socket);
    socket.on('error', () => {});
    socket.resume();
    socket.on('end', () => backend.sockets.delete(socket));
    socket.on('close', () => backend.sockets.delete(socket));
  });
  await new Promise<void>((resolve) => backend.server.listen(0, '127.0.0.1', resolve));
  backend.port = (backend.server.address() as AddressInfo).port;
  return backend;
}

function synSent(port: number): number {
  return execFileSync('ss', ['-tnH', 'state', 'syn-sent', `( dport = :${port} )`], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.trim() !== '').length;
}

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Date.now() - started;
}

/** A raw MySQL client: reads the proxy's greeting, sends a HandshakeResponse for `database`. */
async function mysqlLogin(port: number, database: string): Promise<net.Socket> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.once('data', () => resolve()));
  const response = buildHandshakeResponse({
    capabilities: CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH | CLIENT_CONNECT_WITH_DB,
    maxPacket: 1 << 24,
    charset: 45,
    user: 'root',
    authResponse: Buffer.alloc(0),
    database,
    plugin: 'mysql_native_password',
    rawAttributes: null,
  });
  socket.write(encodePacket(1, response));
  return socket;
}

function closed(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) resolve();
    else socket.once('close', () => resolve());
    socket.resume();
  });
}

describe('a client that half-closes while its backend is awaited is let go at once (issue 16, #3)', () => {
  let mySilent: SilentBackend;
  let smtpSilent: SilentBackend;
  let hanging: Unanswered;
  let hangingPort = 0;
  let cli: RunningCli;

  before(async () => {
    mySilent = await silentBackend();
    smtpSilent = await silentBackend();
    hanging = await unansweredEndpoint();
    hangingPort = Number(hanging.endpoint.slice(hanging.endpoint.lastIndexOf(':') + 1));
    const config = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      security: { allowPrivateBackends: true },
      routes: {
        silentdb: `127.0.0.1:${mySilent.port}`,
        hangingdb: hanging.endpoint,
        'mail.test': `127.0.0.1:${smtpSilent.port}`,
      },
      listeners: [
        { name: 'my', protocol: 'mysql', host: '127.0.0.1', port: 0, handshakeTimeoutMs: DEADLINE_MS, connectTimeoutMs: DEADLINE_MS },
        { name: 'mail', protocol: 'smtp', host: '127.0.0.1', port: 0, routeBy: 'ehlo', connectTimeoutMs: DEADLINE_MS },
      ],
    });
    cli = await startCli(['--config', config]);
  });

  after(async () => {
    await cli?.stop();
    for (const b of [mySilent, smtpSilent]) {
      if (b === undefined) continue;
      for (const s of b.sockets) s.destroy();
      b.server.close();
    }
    await hanging?.close();
  });

  it('mysql: FIN while the backend has not greeted closes the backend connection at once', async () => {
    const client = await mysqlLogin(cli.port('my'), 'silentdb');
    await until('the backend connection', () => mySilent.sockets.size === 1, AT_ONCE_MS);
    client.end();
    await until('the backend connection closed by the proxy', () => mySilent.sockets.size === 0, AT_ONCE_MS);
    await Promise.race([closed(client), new Promise((_, reject) => setTimeout(() => reject(new Error('client still connected')), AT_ONCE_MS))]);
  });

  it('mysql: FIN while the connect is in progress drops the connect at once', async () => {
    const client = await mysqlLogin(cli.port('my'), 'hangingdb');
    await until('the connect in progress', () => synSent(hangingPort) === 1, AT_ONCE_MS);
    client.end();
    await until('no connect in progress', () => synSent(hangingPort) === 0, AT_ONCE_MS);
    await Promise.race([closed(client), new Promise((_, reject) => setTimeout(() => reject(new Error('client still connected')), AT_ONCE_MS))]);
  });

  it('smtp: FIN after EHLO while the backend has not sent its banner closes the backend connection at once', async () => {
    const client = net.connect({ port: cli.port('mail'), host: '127.0.0.1', allowHalfOpen: true });
    client.on('error', () => {});
    const banner = await new Promise<string>((resolve) => client.once('data', (chunk: Buffer) => resolve(chunk.toString())));
    assert.match(banner, /^220 /);
    client.write('EHLO mail.test\r\n');
    await until('the backend connection', () => smtpSilent.sockets.size === 1, AT_ONCE_MS);
    client.end();
    await until('the backend connection closed by the proxy', () => smtpSilent.sockets.size === 0, AT_ONCE_MS);
    await Promise.race([closed(client), new Promise((_, reject) => setTimeout(() => reject(new Error('client still connected')), AT_ONCE_MS))]);
  });
});
