/**
 * Cold starts through the real CLI and a resolver module: the route of a
 * sleeping backend carries `coldStart.wake()`. 100 concurrent requests wake
 * it exactly once and all succeed when it is up; when a backend never
 * wakes, every protocol answers its own "unavailable" error at the deadline.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MongoClient } from 'mongodb';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { request } from 'undici';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { parsePrometheus, sample } from '../helpers/prometheus.ts';

const DEADLINE_MS = 1500;

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * "sleepy.test" sleeps until woken: wake() counts and brings its HTTP server
 * up 300 ms later (the server reports the count). Every other id routes to
 * a backend that never wakes.
 */
function resolverModule(sleepyPort: number, deadPort: number): string {
  return `
import http from 'node:http';
let wakes = 0;
let server = null;
const sleepy = {
  endpoint: '127.0.0.1:${sleepyPort}',
  coldStart: {
    async wake() {
      wakes++;
      setTimeout(() => {
        server = http.createServer((req, res) => res.end('wakes=' + wakes));
        server.listen(${sleepyPort}, '127.0.0.1');
      }, 300);
    },
  },
};
const never = { endpoint: '127.0.0.1:${deadPort}', coldStart: { async wake() {} } };
export default {
  resolve(id) {
    return id === 'sleepy.test' ? sleepy : never;
  },
};
`;
}

describe('cold start', () => {
  let cli: RunningCli;
  let admin: string;

  before(async () => {
    const config = await writeConfig({});
    const dir = path.dirname(config);
    await writeFile(path.join(dir, 'resolver.mjs'), resolverModule(await freePort(), await freePort()));
    await writeFile(
      config,
      JSON.stringify({
        workers: 1,
        logLevel: 'warn',
        admin: { port: 0 },
        security: { allowPrivateBackends: true },
        coldStart: { timeoutMs: DEADLINE_MS, pollIntervalMs: 50 },
        resolver: { module: './resolver.mjs' },
        listeners: [
          { name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 },
          { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0 },
          { name: 'my', protocol: 'mysql', host: '127.0.0.1', port: 0 },
          { name: 'mongo', protocol: 'mongodb', host: '127.0.0.1', port: 0 },
          { name: 'mail', protocol: 'smtp', host: '127.0.0.1', port: 0 },
          { name: 'raw', protocol: 'tcp', host: '127.0.0.1', port: 0, firstBytesTimeoutMs: 100 },
        ],
      }),
    );
    cli = await startCli(['--config', config]);
    admin = `http://127.0.0.1:${(cli.ready as unknown as { admin: AddressInfo }).admin.port}`;
  });

  after(async () => {
    await cli?.stop();
  });

  it('100 concurrent requests to a sleeping backend trigger exactly one wake and all succeed', async () => {
    const url = `http://127.0.0.1:${cli.port('web')}/`;
    const responses = await Promise.all(
      Array.from({ length: 100 }, async () => {
        const res = await request(url, { headers: { host: 'sleepy.test', connection: 'close' }, reset: true });
        return `${res.statusCode} ${await res.body.text()}`;
      }),
    );
    assert.deepEqual(new Set(responses), new Set(['200 wakes=1']));
    const m = parsePrometheus(await (await request(`${admin}/metrics`)).body.text());
    assert.equal(sample(m, 'polyproxy_cold_start_wakes_total'), 1);
    assert.ok(sample(m, 'polyproxy_cold_start_waits_total') >= 1);
    assert.equal(sample(m, 'polyproxy_cold_start_waiting'), 0);
    assert.equal(sample(m, 'polyproxy_cold_start_timeouts_total'), 0);
    // Awake now: later requests go straight through, no second wake.
    const again = await request(url, { headers: { host: 'sleepy.test' } });
    assert.equal(await again.body.text(), 'wakes=1');
  });

  describe('a backend that never wakes: each protocol answers "unavailable" at the deadline', () => {
    it('http: 503', async () => {
      const started = Date.now();
      const res = await request(`http://127.0.0.1:${cli.port('web')}/`, { headers: { host: 'never.test', accept: 'application/json' } });
      assert.equal(res.statusCode, 503);
      assert.equal(((await res.body.json()) as { error: { code: string } }).error.code, 'PP_ERR_UNAVAILABLE');
      assert.ok(Date.now() - started >= DEADLINE_MS - 50, 'held until the deadline');
    });

    it('postgres: ErrorResponse 57P03', async () => {
      const client = new pg.Client({ host: '127.0.0.1', port: cli.port('pg'), user: 'app', database: 'never' });
      client.on('error', () => {});
      await assert.rejects(client.connect(), (err: { code?: string; message: string }) => err.code === '57P03' && /never/.test(err.message));
    });

    it('mysql: ERR 3032', async () => {
      await assert.rejects(mysql.createConnection({ host: '127.0.0.1', port: cli.port('my'), user: 'app', database: 'never' }), (err: { errno?: number; message: string }) => err.errno === 3032 && /never/.test(err.message));
    });

    it('mongodb: an error reply naming the database', async () => {
      const client = new MongoClient(`mongodb://127.0.0.1:${cli.port('mongo')}/?directConnection=true&serverSelectionTimeoutMS=5000`);
      try {
        await assert.rejects(client.db('never').collection('c').findOne({}), (err: { code?: number; message: string }) => err.code === 74 && /never/.test(err.message));
      } finally {
        await client.close();
      }
    });

    it('smtp: 421 4.3.0, then close', async () => {
      const socket = net.connect(cli.port('mail'), '127.0.0.1');
      let text = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => {
        text += d;
        if (text.startsWith('220') && text.endsWith('\r\n') && !text.includes('EHLO-SENT')) {
          text += 'EHLO-SENT';
          socket.write('EHLO never.test\r\n');
        }
      });
      await new Promise((resolve) => socket.once('close', resolve));
      assert.match(text, /EHLO-SENT421 4\.3\.0 /);
    });

    it('tcp: the connection is closed (raw TCP has no error to send)', async () => {
      const socket = net.connect(cli.port('raw'), '127.0.0.1');
      socket.write('hello');
      let got = 0;
      socket.on('data', (d: Buffer) => (got += d.length));
      const started = Date.now();
      await new Promise((resolve) => socket.once('close', resolve));
      assert.equal(got, 0);
      assert.ok(Date.now() - started >= DEADLINE_MS - 200);
    });

    it('the timeouts are counted', async () => {
      const m = parsePrometheus(await (await request(`${admin}/metrics`)).body.text());
      assert.ok(sample(m, 'polyproxy_cold_start_timeouts_total') >= 6);
      assert.ok(sample(m, 'polyproxy_errors_total', { listener: 'pg', protocol: 'postgres', kind: 'UNAVAILABLE' }) >= 1);
    });
  });
});
