/**
 * Issue 16, defect 5 (protocol garbage): a backend that accepts and then
 * answers the proxy's side of the handshake with bytes that are not its
 * protocol (an HTTP server, an SSH banner, random bytes on the wrong port)
 * counts against that endpoint, so a balanced route's breaker opens and
 * sessions move to the good backend — for MySQL (the greeting), MongoDB
 * (the proxy's hello) and SMTP (the banner), as for PostgreSQL.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { MongoClient } from 'mongodb';
import mysql from 'mysql2/promise';
import { request } from 'undici';
import type { ProxyStats } from '../../src/admin/source.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { mariadbMissing } from '../helpers/mariadb.ts';
import { PROXY_CAPABILITIES, buildGreeting, encodePacket } from '../../src/protocols/mysql/packets.ts';
import { startMongoWireServer } from '../helpers/mongo-wire-server.ts';
import type { MongoWireServer } from '../helpers/mongo-wire-server.ts';
import { RawSmtp, startSmtpBackend, text } from '../helpers/smtp.ts';
import type { SmtpBackend } from '../helpers/smtp.ts';

interface GarbageBackend {
  readonly server: net.Server;
  readonly sockets: Set<net.Socket>;
  port: number;
  accepted: number;
}

/**
 * A MySQL server that greets properly (protocol 10, mysql_native_password) and answers the login with
 * `garbage` (a packet that is no OK, ERR, AuthSwitchRequest or AuthMoreData).
 */
async function garbageLoginBackend(garbage: Buffer): Promise<GarbageBackend> {
  const backend: GarbageBackend = { server: net.createServer(), sockets: new Set(), port: 0, accepted: 0 };
  const greeting = encodePacket(
    0,
    buildGreeting({ serverVersion: '10.11.6-MariaDB', connectionId: 7, capabilities: PROXY_CAPABILITIES, charset: 45, status: 2, scramble: Buffer.alloc(20, 0x41), plugin: 'mysql_native_password' }),
  );
  backend.server.on('connection', (socket) => {
    backend.accepted++;
    backend.sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => backend.sockets.delete(socket));
    socket.write(greeting);
    socket.once('data', () => socket.write(garbage));
    socket.on('data', () => {});
  });
  await new Promise<void>((resolve) => backend.server.listen(0, '127.0.0.1', resolve));
  backend.port = (backend.server.address() as AddressInfo).port;
  return backend;
}

/** Accepts, writes `garbage` at once and keeps the connection open (it reads and drops what comes). */
async function garbageBackend(garbage: Buffer): Promise<GarbageBackend> {
  const backend: GarbageBackend = { server: net.createServer(), sockets: new Set(), port: 0, accepted: 0 };
  backend.server.on('connection', (socket) => {
    backend.accepted++;
    backend.sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => backend.sockets.delete(socket));
    socket.resume();
    socket.write(garbage);
  });
  await new Promise<void>((resolve) => backend.server.listen(0, '127.0.0.1', resolve));
  backend.port = (backend.server.address() as AddressInfo).port;
  return backend;
}

// An HTTP server's answer: to MySQL a packet of 0x544848 bytes (more than a greeting may be), to MongoDB a
// message length of 0x50545448, to SMTP a reply without a code.
const HTTP_ANSWER = Buffer.from('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
// A MySQL-framed packet whose payload is no greeting (protocol version 0x42).
const BAD_GREETING = Buffer.from([0x08, 0x00, 0x00, 0x00, 0x42, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07]);
// An SSH banner where an SMTP banner belongs.
const SSH_BANNER = Buffer.from('SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n');

const mysqlSkip = await mariadbMissing();

describe('backends that answer the handshake with garbage open their breaker (issue 16, #5)', () => {
  const garbage: GarbageBackend[] = [];
  let myHttp: GarbageBackend;
  let myBadGreeting: GarbageBackend;
  let myBadLogin: GarbageBackend;
  let mongoHttp: GarbageBackend;
  let smtpSsh: GarbageBackend;
  let mongoGood: MongoWireServer;
  let smtpGood: SmtpBackend;
  let cli: RunningCli;
  let admin = '';

  before(async () => {
    myHttp = await garbageBackend(HTTP_ANSWER);
    myBadGreeting = await garbageBackend(BAD_GREETING);
    // Sequence 2, header 0x42: framed like a login answer, but none.
    myBadLogin = await garbageLoginBackend(Buffer.from([0x04, 0x00, 0x00, 0x02, 0x42, 0x42, 0x42, 0x42]));
    mongoHttp = await garbageBackend(HTTP_ANSWER);
    smtpSsh = await garbageBackend(SSH_BANNER);
    garbage.push(myHttp, myBadGreeting, myBadLogin, mongoHttp, smtpSsh);
    mongoGood = await startMongoWireServer();
    smtpGood = await startSmtpBackend();
    const config = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      admin: { port: 0 },
      security: { allowPrivateBackends: true },
      // Probes off: the passive count alone must open the breakers (a TCP probe finds these backends "up").
      health: { intervalMs: 0, failureThreshold: 3, openMs: 60000 },
      routes: {
        // MySQL routes by database; both exist on the real server.
        mysql: ['127.0.0.1:3306', `127.0.0.1:${myHttp.port}`],
        information_schema: ['127.0.0.1:3306', `127.0.0.1:${myBadGreeting.port}`],
        performance_schema: ['127.0.0.1:3306', `127.0.0.1:${myBadLogin.port}`],
        shop: [`127.0.0.1:${mongoGood.port}`, `127.0.0.1:${mongoHttp.port}`],
        'mail.test': [`127.0.0.1:${smtpGood.port}`, `127.0.0.1:${smtpSsh.port}`],
      },
      listeners: [
        { name: 'my', protocol: 'mysql', host: '127.0.0.1', port: 0, handshakeTimeoutMs: 3000 },
        { name: 'mongo', protocol: 'mongodb', host: '127.0.0.1', port: 0, handshakeTimeoutMs: 3000 },
        { name: 'mail', protocol: 'smtp', host: '127.0.0.1', port: 0, routeBy: 'ehlo', connectTimeoutMs: 3000 },
      ],
    });
    cli = await startCli(['--config', config]);
    admin = `http://127.0.0.1:${(cli.ready as unknown as { admin: AddressInfo }).admin.port}`;
  });

  after(async () => {
    await cli?.stop();
    for (const b of garbage) {
      for (const s of b.sockets) s.destroy();
      b.server.close();
    }
    await mongoGood?.close();
    await smtpGood?.close();
  });

  const state = async (port: number): Promise<string | undefined> => {
    const stats = (await (await request(`${admin}/api/stats`)).body.json()) as ProxyStats;
    return stats.endpoints.find((e) => e.endpoint === `127.0.0.1:${port}`)?.state;
  };

  /** Sessions until the bad endpoint's breaker is open (at most `max`); then `after` more must all succeed. */
  async function opensAndMoves(bad: GarbageBackend, session: () => Promise<string>, max = 8): Promise<void> {
    const results: string[] = [];
    for (let i = 0; i < max && (await state(bad.port)) !== 'open'; i++) results.push(await session());
    assert.equal(await state(bad.port), 'open', `sessions: ${results.join(',')}`);
    const accepted = bad.accepted;
    for (let i = 0; i < 4; i++) assert.equal(await session(), 'ok');
    assert.equal(bad.accepted, accepted);
  }

  for (const [name, database, bad] of [
    ['an HTTP answer', 'mysql', () => myHttp],
    ['a packet that is no greeting', 'information_schema', () => myBadGreeting],
    ['a proper greeting, then a login answer that is none', 'performance_schema', () => myBadLogin],
  ] as const) {
    it(`mysql: a backend that answers with ${name}`, { skip: mysqlSkip ?? false }, async () => {
      const port = cli.port('my');
      await opensAndMoves(bad(), async () => {
        try {
          const conn = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root', database, connectTimeout: 5000 });
          await conn.end();
          return 'ok';
        } catch (err) {
          return String((err as { code?: string }).code);
        }
      });
    });
  }

  it('mongodb: a backend that answers the hello with an HTTP answer', async () => {
    const port = cli.port('mongo');
    await opensAndMoves(mongoHttp, async () => {
      const client = new MongoClient(`mongodb://127.0.0.1:${port}/?directConnection=true`, { serverSelectionTimeoutMS: 5000, connectTimeoutMS: 5000, socketTimeoutMS: 5000 });
      try {
        await client.db('shop').collection('items').insertOne({ a: 1 });
        return 'ok';
      } catch (err) {
        return String((err as { code?: unknown }).code ?? (err as Error).name);
      } finally {
        await client.close();
      }
    });
  });

  it('smtp: a backend that greets with an SSH banner', async () => {
    const port = cli.port('mail');
    await opensAndMoves(smtpSsh, async () => {
      const client = new RawSmtp(port);
      try {
        const banner = text(await client.reply());
        if (!banner.startsWith('220')) return banner;
        const ehlo = await client.command('EHLO mail.test');
        return ehlo.startsWith('250') ? 'ok' : ehlo;
      } finally {
        client.destroy();
      }
    });
  });
});
