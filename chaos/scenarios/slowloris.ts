/**
 * Slowloris on every listener kind (must-show: the handshake deadline
 * closes them, others keep being served).
 *
 * One polyproxy with a listener of each kind — http, postgres, mysql,
 * mongodb, smtp, tcp, ws-bridge, fastcgi — in front of real backends (nginx,
 * the machine's PostgreSQL and MariaDB, an smtp-server sink, an echo
 * server, the ws2api API server, php-fpm; MongoDB's probe is answered by the
 * proxy itself, which serves `ping` before routing). CHAOS_SLOW_CLIENTS
 * (default 100) clients per listener open and then trickle their opening
 * one byte every 500 ms and never finish it (tcp, which has no opening:
 * they send nothing, and idleTimeoutMs is the deadline). While they hang
 * on, one well-behaved client per listener must be served; every slow
 * client must be closed by the proxy within the listener's deadline (2 s)
 * + 5 s (lifetimes measured from the client's connect call, on a shared
 * machine; median and max reported).
 */
import net from 'node:net';
import { MongoClient } from 'mongodb';
import mysql from 'mysql2/promise';
import WebSocket from 'ws';
import { startNginx } from '../../bench/lib/nginx.ts';
import { sleep } from '../../bench/lib/net.ts';
import { envNumber } from '../../bench/lib/env.ts';
import { startPhpFpmPool, writePhpDocroot } from '../../bench/lib/php-fpm.ts';
import { num } from '../../bench/lib/table.ts';
import { httpGet, pgOpen, startHelper, tcpEcho } from '../lib/helpers.ts';
import { PG_HOST, PG_PORT, preparePgbench } from '../lib/load.ts';
import { fdBaseline, fdsSettle, startProxy } from '../lib/proxy.ts';
import type { ChaosContext, ChaosReport, ChaosScenario, Check } from '../lib/scenario.ts';
import { must } from '../lib/scenario.ts';

const DEADLINE_MS = 2000;
/**
 * Past the deadline: the sweeps that enforce it run every 0.5–1 s (idle timeout: a 1 s clock, checked with a
 * tick of margin), and 800 connects at once on a shared 2-core machine are accepted late. Node's own head check
 * (30 s) would not make it.
 */
const GRACE_MS = 5000;
const TRICKLE_MS = 500;

function header(length: number, rest: number[]): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(length, 0);
  return Buffer.concat([b, Buffer.from(rest)]);
}

/** What a slow client of each listener sends at once, before it trickles 'a' forever ('' = nothing at all). */
const PREFIX: Record<string, Buffer | null> = {
  web: Buffer.from('GET / HTTP/1.1\r\nHost: web.test\r\nX-Slow: '),
  ws: Buffer.from('GET /slow HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Slow: '),
  php: Buffer.from('GET /index.php HTTP/1.1\r\nHost: php.test\r\nX-Slow: '),
  // A StartupMessage announced as 1,000 bytes: protocol 3.0, then the trickle.
  pg: header(1000, [0, 3, 0, 0]),
  // A HandshakeResponse packet announced as 200 bytes (sequence 1), after the proxy's greeting.
  my: Buffer.from([200, 0, 0, 1]),
  // A MongoDB message announced as 1,000 bytes.
  mongo: Buffer.from([0xe8, 0x03, 0, 0]),
  // SMTP: an EHLO line that never ends.
  mail: Buffer.from('EHLO slow'),
  tcp: null,
};

interface Slow {
  readonly listener: string;
  readonly socket: net.Socket;
  readonly openedAt: number;
  closedAt: number;
}

async function probe(name: string, port: number): Promise<string> {
  try {
    switch (name) {
      case 'web':
        return await httpGet(port, 'web.test');
      case 'php':
        return await httpGet(port, 'php.test', '/index.php');
      case 'pg':
        return await pgOpen(port, 'pp_chaos');
      case 'tcp':
        return await tcpEcho(port);
      case 'my': {
        const conn = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root', database: 'test', connectTimeout: 5000 });
        const [rows] = await conn.query('select 1 as one');
        await conn.end();
        return (rows as Array<{ one: number }>)[0]?.one === 1 ? 'ok' : 'bad answer';
      }
      case 'mongo': {
        const client = new MongoClient(`mongodb://127.0.0.1:${port}/?directConnection=true`, { serverSelectionTimeoutMS: 5000 });
        try {
          const r = await client.db('admin').command({ ping: 1 });
          return r.ok === 1 ? 'ok' : 'bad answer';
        } finally {
          await client.close();
        }
      }
      case 'mail':
        return await new Promise<string>((resolve) => {
          const s = net.connect({ port, host: '127.0.0.1' });
          let got = '';
          const timer = setTimeout(() => finish('timeout'), 5000);
          const finish = (r: string): void => {
            clearTimeout(timer);
            s.destroy();
            resolve(r);
          };
          s.setEncoding('latin1');
          s.on('data', (d: string) => {
            got += d;
            if (got.startsWith('220 ') && !got.includes('EHLO_SENT') && got.endsWith('\r\n')) {
              got += 'EHLO_SENT';
              s.write('EHLO mail.test\r\n');
            } else if (/EHLO_SENT[\s\S]*\r\n/.test(got)) {
              const after = got.slice(got.indexOf('EHLO_SENT') + 9);
              if (/^250 /m.test(after)) finish('ok');
              else if (/^[45]\d\d /m.test(after)) finish(after.slice(0, 3));
            }
          });
          s.on('error', () => finish('closed'));
          s.on('close', () => finish('closed'));
        });
      case 'ws':
        return await new Promise<string>((resolve) => {
          const ws = new WebSocket(`ws://127.0.0.1:${port}/probe-client`);
          const timer = setTimeout(() => {
            ws.terminate();
            resolve('timeout');
          }, 5000);
          ws.once('open', () => {
            clearTimeout(timer);
            ws.close();
            resolve('ok');
          });
          ws.once('error', (err) => {
            clearTimeout(timer);
            resolve(`error: ${err.message}`);
          });
        });
      default:
        return 'no probe';
    }
  } catch (err) {
    return `error: ${(err as Error).message}`;
  }
}

export const slowlorisScenario: ChaosScenario = {
  name: 'slowloris',
  description: 'slow openings on every listener kind: closed by the deadline while others are served',
  async run(ctx: ChaosContext): Promise<ChaosReport> {
    const perListener = envNumber('CHAOS_SLOW_CLIENTS', 100);
    await preparePgbench();
    const nginx = await startNginx(-1, 'nginx');
    const echo = await startHelper(ctx, 'echo', 'bench:echo-backend.ts');
    const smtp = await startHelper(ctx, 'smtp-sink', 'bench:smtp-sink.ts');
    const api = await startHelper(ctx, 'ws2api', 'bench:ws2api-server.ts');
    const docroot = writePhpDocroot({ 'index.php': '<?php echo "hi";' });
    const fpm = await startPhpFpmPool({ name: 'chaos', listen: 'tcp', children: 2, cpu: -1 });
    const checks: Check[] = [];
    const common = { host: '127.0.0.1', port: 0, handshakeTimeoutMs: DEADLINE_MS };
    const proxy = await startProxy(ctx, {
      security: { allowPrivateBackends: true },
      routes: { 'web.test': `127.0.0.1:${nginx.port}`, pp_chaos: `${PG_HOST}:${PG_PORT}`, test: '127.0.0.1:3306', 'mail.test': `127.0.0.1:${smtp.port}` },
      listeners: [
        { ...common, name: 'web', protocol: 'http', requestTimeoutMs: DEADLINE_MS, pool: { idleTimeoutMs: 2000 } },
        { ...common, name: 'pg', protocol: 'postgres' },
        { ...common, name: 'my', protocol: 'mysql' },
        { ...common, name: 'mongo', protocol: 'mongodb' },
        { ...common, name: 'mail', protocol: 'smtp', routeBy: 'ehlo' },
        { ...common, name: 'tcp', protocol: 'tcp', backend: `127.0.0.1:${echo.port}`, idleTimeoutMs: DEADLINE_MS },
        { ...common, name: 'ws', protocol: 'ws-bridge', api: `http://127.0.0.1:${api.port}/api/`, pool: { idleTimeoutMs: 2000 } },
        { ...common, name: 'php', protocol: 'fastcgi', backends: [fpm.endpoint], documentRoot: docroot.dir, requestTimeoutMs: DEADLINE_MS, keepAliveTimeoutMs: 2000 },
      ],
    });
    try {
      const names = Object.keys(PREFIX);
      const baseline = await fdBaseline(proxy.workerPids);
      const slow: Slow[] = [];
      for (const name of names) {
        for (let i = 0; i < perListener; i++) {
          const socket = net.connect({ port: proxy.ports[name] as number, host: '127.0.0.1' });
          const s: Slow = { listener: name, socket, openedAt: Date.now(), closedAt: 0 };
          socket.on('error', () => {});
          socket.on('close', () => (s.closedAt = Date.now()));
          socket.resume();
          const prefix = PREFIX[name];
          if (prefix !== null && prefix !== undefined) socket.write(prefix);
          slow.push(s);
        }
      }
      const lastOpened = Date.now();
      const trickle = setInterval(() => {
        for (const s of slow) if (s.closedAt === 0 && PREFIX[s.listener] !== null && !s.socket.destroyed) s.socket.write('a');
      }, TRICKLE_MS);
      // While they hang on: one well-behaved client per listener.
      await sleep(500);
      const probes = await Promise.all(names.map(async (n) => [n, await probe(n, proxy.ports[n] as number)] as const));
      while (slow.some((s) => s.closedAt === 0) && Date.now() < lastOpened + DEADLINE_MS + GRACE_MS) await sleep(100);
      clearInterval(trickle);
      for (const name of names) {
        const mine = slow.filter((s) => s.listener === name);
        const open = mine.filter((s) => s.closedAt === 0).length;
        const lifetimes = mine.map((s) => (s.closedAt === 0 ? Date.now() : s.closedAt) - s.openedAt).sort((a, b) => a - b);
        const median = lifetimes[Math.floor(lifetimes.length / 2)] ?? 0;
        const longest = lifetimes.at(-1) ?? 0;
        const probed = probes.find(([n]) => n === name)?.[1] ?? 'no probe';
        checks.push(
          must(
            `${name}: ${perListener} slow clients; a good client meanwhile`,
            `${open} left open; lifetime median ${num(median)} ms, max ${num(longest)} ms; good client ${probed}`,
            `all closed by the proxy (≤ ${(DEADLINE_MS + GRACE_MS) / 1000} s); ok`,
            open === 0 && probed === 'ok',
          ),
        );
      }
      for (const s of slow) s.socket.destroy();
      const settled = await fdsSettle(proxy.workerPids, baseline, 20_000);
      checks.push(must('proxy fds after slowloris', `${settled.fds} (baseline ${baseline})`, 'flat', settled.flat));
    } finally {
      await proxy.stop();
      await fpm.stop();
      docroot.remove();
      await nginx.stop();
    }
    return {
      checks,
      notes: [
        `Deadlines: handshakeTimeoutMs ${DEADLINE_MS} on every listener, plus requestTimeoutMs ${DEADLINE_MS} on http and fastcgi (their request-head deadline) and idleTimeoutMs ${DEADLINE_MS} on tcp (a raw TCP client has no opening: a silent one is idle). Slow clients send a partial opening at once and one more byte every ${TRICKLE_MS} ms (tcp: nothing). Backend pools (http, fastcgi, ws-bridge's API) close idle connections after 2 s here, so the descriptors can return to the baseline.`,
      ],
    };
  },
};
