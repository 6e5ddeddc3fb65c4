/**
 * Issue 16, defects 3 and 5: backends that accept and then fail.
 *
 * - A backend that accepts and stays silent (a frozen PostgreSQL) must not
 *   hold sessions whose clients left: the first-response deadline ends them,
 *   and the client still there gets 57P03.
 * - On a balanced route, a backend that accepts and then stays silent or
 *   resets opens its circuit breaker after a few sessions (passive health,
 *   probes off), for postgres and http alike.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import mysql from 'mysql2/promise';
import { request } from 'undici';
import type { ProxyStats } from '../../src/admin/source.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';

interface BadBackend {
  readonly server: net.Server;
  readonly sockets: Set<net.Socket>;
  port: number;
  accepted: number;
}

/** Accepts and then never writes, never ends (allowHalfOpen: the proxy's FIN is not answered either), or resets at once. `sockets`: connections the proxy has not ended. */
async function badBackend(mode: 'silent' | 'reset'): Promise<BadBackend> {
  const backend: BadBackend = { server: net.createServer({ allowHalfOpen: true }), sockets: new Set(), port: 0, accepted: 0 };
  backend.server.on('connection', (socket) => {
    backend.accepted++;
    socket.on('error', () => {});
    if (mode === 'reset') {
      socket.resetAndDestroy();
      return;
    }
    backend.sockets.add(socket);
    // Reads (and drops) what comes, so the proxy's FIN or RST is seen; this side never closes by itself.
    socket.resume();
    socket.on('end', () => backend.sockets.delete(socket));
    socket.on('close', () => backend.sockets.delete(socket));
  });
  await new Promise<void>((resolve) => backend.server.listen(0, '127.0.0.1', resolve));
  backend.port = (backend.server.address() as AddressInfo).port;
  return backend;
}

function closeBad(backend: BadBackend): void {
  for (const s of backend.sockets) s.destroy();
  backend.server.close();
}

function startupMessage(database: string): Buffer {
  const body = Buffer.from(`user\0postgres\0database\0${database}\0\0`);
  const msg = Buffer.alloc(8 + body.length);
  msg.writeInt32BE(msg.length, 0);
  msg.writeInt32BE(196608, 4);
  body.copy(msg, 8);
  return msg;
}

/** Sends a StartupMessage; resolves with the first message type and, for an ErrorResponse, its SQLSTATE (null: closed without a byte). */
function pgFirstAnswer(port: number, database: string): Promise<{ type: string | null; code?: string }> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => socket.write(startupMessage(database)));
    let got = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (got.length < 5 || got.length < 1 + got.readInt32BE(1)) return;
      const type = String.fromCharCode(got[0] as number);
      const code = type === 'E' ? /C([0-9A-Z]{5})\0/.exec(got.subarray(5).toString('latin1'))?.[1] : undefined;
      socket.destroy();
      resolve(code === undefined ? { type } : { type, code });
    });
    socket.on('error', () => {});
    socket.on('close', () => resolve({ type: null }));
  });
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 8000): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return Date.now() - started;
}

/** `ss` lists each socket's timers (iproute2); without it the keepalive test is skipped. */
function ssAvailable(): boolean {
  try {
    execFileSync('ss', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The established TCP sockets matching an ss filter, with their timers. */
function ssLines(filter: string): string[] {
  return execFileSync('ss', ['-tnoH', 'state', 'established', filter], { encoding: 'utf8' }).split('\n').filter((line) => line.trim() !== '');
}

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

describe('backends that accept and then fail (issue 16, #3 and #5)', () => {
  let silentOnly: BadBackend;
  let pgSilent: BadBackend;
  let pgReset: BadBackend;
  let httpSilent: BadBackend;
  let httpReset: BadBackend;
  let mySilent: BadBackend;
  let myReset: BadBackend;
  const good = http.createServer((_req, res) => res.end('good'));
  let goodPort = 0;
  let cli: RunningCli;
  let admin = '';

  before(async () => {
    silentOnly = await badBackend('silent');
    pgSilent = await badBackend('silent');
    pgReset = await badBackend('reset');
    httpSilent = await badBackend('silent');
    httpReset = await badBackend('reset');
    mySilent = await badBackend('silent');
    myReset = await badBackend('reset');
    await new Promise<void>((resolve) => good.listen(0, '127.0.0.1', resolve));
    goodPort = (good.address() as AddressInfo).port;
    const config = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      admin: { port: 0 },
      security: { allowPrivateBackends: true },
      // Probes off: passive results alone must open the breakers (a TCP probe would find these backends "up").
      health: { intervalMs: 0, failureThreshold: 3, openMs: 60000 },
      routes: {
        frozen: `127.0.0.1:${silentOnly.port}`,
        'pg-silent': ['127.0.0.1:5432', `127.0.0.1:${pgSilent.port}`],
        'pg-reset': ['127.0.0.1:5432', `127.0.0.1:${pgReset.port}`],
        'silent.test': [`127.0.0.1:${goodPort}`, `127.0.0.1:${httpSilent.port}`],
        'reset.test': [`127.0.0.1:${goodPort}`, `127.0.0.1:${httpReset.port}`],
        // MySQL routes by database; both exist on the real server.
        mysql: ['127.0.0.1:3306', `127.0.0.1:${mySilent.port}`],
        information_schema: ['127.0.0.1:3306', `127.0.0.1:${myReset.port}`],
      },
      listeners: [
        { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0, firstResponseTimeoutMs: 1000 },
        { name: 'web', protocol: 'http', host: '127.0.0.1', port: 0, backendTimeoutMs: 1000 },
        // The backend's greeting is waited for within handshakeTimeoutMs.
        { name: 'my', protocol: 'mysql', host: '127.0.0.1', port: 0, handshakeTimeoutMs: 1000 },
      ],
    });
    cli = await startCli(['--config', config]);
    admin = `http://127.0.0.1:${(cli.ready as unknown as { admin: AddressInfo }).admin.port}`;
  });

  after(async () => {
    await cli?.stop();
    for (const b of [silentOnly, pgSilent, pgReset, httpSilent, httpReset, mySilent, myReset]) if (b !== undefined) closeBad(b);
    good.close();
  });

  const state = async (port: number): Promise<string | undefined> => {
    const stats = (await (await request(`${admin}/api/stats`)).body.json()) as ProxyStats;
    return stats.endpoints.find((e) => e.endpoint === `127.0.0.1:${port}`)?.state;
  };

  it('clients that leave a silent backend leave no session behind; one that stays gets 57P03', async () => {
    const pid = (cli.ready.pids ?? [cli.child.pid as number])[0] as number;
    const baseline = fdCount(pid);
    const port = cli.port('pg');
    const clients: net.Socket[] = [];
    for (let i = 0; i < 50; i++) {
      const socket = net.connect({ port, host: '127.0.0.1' }, () => socket.write(startupMessage('frozen')));
      socket.on('error', () => {});
      clients.push(socket);
    }
    await until('50 backend connections', () => silentOnly.sockets.size === 50);
    // Like `timeout 2 psql`: half close politely (FIN), half are cut (RST).
    clients.forEach((s, i) => (i % 2 === 0 ? s.end() : s.resetAndDestroy()));
    const stays = await pgFirstAnswer(port, 'frozen');
    assert.deepEqual(stays, { type: 'E', code: '57P03' });
    await until('no backend connection left', () => silentOnly.sockets.size === 0, 5000);
    await until('fds back to the baseline', () => fdCount(pid) <= baseline, 5000);
  });

  it('TCP keepalive is on for both legs (tcpKeepAliveMs, default 60 s)', { skip: !ssAvailable() }, async () => {
    const port = cli.port('pg');
    const socket = net.connect({ port, host: '127.0.0.1' }, () => socket.write(startupMessage('frozen')));
    socket.on('error', () => {});
    try {
      await until('the backend connection', () => silentOnly.sockets.size === 1);
      const clientLeg = ssLines(`( sport = :${port} )`);
      const backendLeg = ssLines(`( dport = :${silentOnly.port} )`);
      assert.equal(clientLeg.length, 1, clientLeg.join('\n'));
      assert.equal(backendLeg.length, 1, backendLeg.join('\n'));
      assert.match(clientLeg[0] as string, /timer:\(keepalive,/);
      assert.match(backendLeg[0] as string, /timer:\(keepalive,/);
    } finally {
      socket.destroy();
    }
  });

  for (const [name, bad] of [
    ['silent', () => pgSilent],
    ['reset', () => pgReset],
  ] as const) {
    it(`postgres: a backend that accepts and then is ${name} opens its breaker within a few sessions`, async () => {
      const port = cli.port('pg');
      const answers: Array<string | null> = [];
      for (let i = 0; i < 6 && (await state(bad().port)) !== 'open'; i++) answers.push((await pgFirstAnswer(port, `pg-${name}`)).type);
      assert.equal(await state(bad().port), 'open', `answers: ${answers.join(',')}`);
      const accepted = bad().accepted;
      // From now on every session goes to the good backend (PostgreSQL answers: R or E, but it answers).
      for (let i = 0; i < 4; i++) assert.notEqual((await pgFirstAnswer(port, `pg-${name}`)).type, null);
      assert.equal(bad().accepted, accepted);
    });
  }

  for (const [name, bad] of [
    ['silent', () => httpSilent],
    ['reset', () => httpReset],
  ] as const) {
    it(`http: a backend that accepts and then is ${name} opens its breaker within a few requests`, async () => {
      const web = `http://127.0.0.1:${cli.port('web')}/`;
      const statuses: number[] = [];
      const get = async (): Promise<number> => {
        const res = await request(web, { headers: { host: `${name}.test`, connection: 'close' }, reset: true });
        await res.body.dump();
        return res.statusCode;
      };
      for (let i = 0; i < 8 && (await state(bad().port)) !== 'open'; i++) statuses.push(await get());
      assert.equal(await state(bad().port), 'open', `statuses: ${statuses.join(',')}`);
      for (let i = 0; i < 4; i++) assert.equal(await get(), 200);
    });
  }

  for (const [name, database, bad] of [
    ['silent', 'mysql', () => mySilent],
    ['reset', 'information_schema', () => myReset],
  ] as const) {
    it(`mysql: a backend that accepts and then is ${name} opens its breaker within a few sessions`, async () => {
      const port = cli.port('my');
      const login = async (): Promise<string> => {
        try {
          const conn = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root', database, connectTimeout: 5000 });
          await conn.end();
          return 'ok';
        } catch (err) {
          return String((err as { code?: string }).code);
        }
      };
      const results: string[] = [];
      for (let i = 0; i < 6 && (await state(bad().port)) !== 'open'; i++) results.push(await login());
      assert.equal(await state(bad().port), 'open', `logins: ${results.join(',')}`);
      for (let i = 0; i < 4; i++) assert.equal(await login(), 'ok');
    });
  }
});
