/**
 * Redis routing end to end (issue 22): the real `polyproxy` command (built
 * dist/) in front of two redis-server instances of the test's own, each
 * with its tenant's ACL user, driven by node-redis, redis-cli and raw RESP.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import net from 'node:net';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { createClient } from 'redis';
import { makeTestPki } from '../helpers/certs.ts';
import type { TestPki } from '../helpers/certs.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { coldResolverModule } from '../helpers/cold-forwarder.ts';
import { REDIS_CLI, freePort, redisServerMissing, startRedis } from '../helpers/redis-server.ts';
import type { OwnRedis } from '../helpers/redis-server.ts';

const execFileAsync = promisify(execFile);

const missing = await redisServerMissing();

const HANDSHAKE_TIMEOUT_MS = 1500;
const COLD_START_DEADLINE_MS = 1500;
const WRONGPASS = '-WRONGPASS invalid username-password pair or user is disabled.\r\n';

let redisA: OwnRedis;
let redisB: OwnRedis;
let proxy: RunningCli;
let pki: TestPki;
let port = 0;
const sockets = new Set<net.Socket>();
const clients: Array<{ destroy(): void }> = [];

before(async () => {
  if (missing !== null) return;
  redisA = await startRedis({ alice: 'alice-pw', sleepy: 'sleepy-pw' });
  redisB = await startRedis({ bob: 'bob-pw' });
  pki = await makeTestPki({ serverNames: ['127.0.0.1', 'localhost', 'a.redis.test'] });
  const file = await writeConfig({
    workers: 1,
    admin: { host: '127.0.0.1', port: 0 },
    security: { allowBackends: ['127.0.0.0/8'] },
    // Tenants "sleepy" (wakes to redisA) and "never" come from the module; the rest from routes.
    resolver: { module: './resolver.mjs' },
    coldStart: { timeoutMs: COLD_START_DEADLINE_MS, pollIntervalMs: 50 },
    routes: {
      alice: `127.0.0.1:${redisA.port}`,
      bob: `127.0.0.1:${redisB.port}`,
      carol: '127.0.0.1:1',
      'a.redis.test': `127.0.0.1:${redisA.port}`,
    },
    listeners: [
      { name: 'kv', protocol: 'redis', host: '127.0.0.1', port: 0, handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS },
      { name: 'kv-tls', protocol: 'redis', host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey } },
      { name: 'kv-sni', protocol: 'redis', host: '127.0.0.1', port: 0, routeBy: 'sni', tls: { cert: pki.serverCert, key: pki.serverKey } },
      { name: 'kv-one', protocol: 'redis', host: '127.0.0.1', port: 0, maxConnections: 1 },
    ],
  });
  await writeFile(path.join(path.dirname(file), 'resolver.mjs'), coldResolverModule({ sleepyId: 'sleepy', sleepyPort: await freePort(), targetPort: redisA.port, neverId: 'never', deadPort: await freePort() }));
  proxy = await startCli(['--config', file]);
  port = proxy.port('kv');
});

after(async () => {
  for (const c of clients) c.destroy();
  for (const s of sockets) s.destroy();
  await proxy?.stop();
  await redisA?.stop();
  await redisB?.stop();
  await pki?.cleanup();
});

/** A raw connection that collects every byte the proxy sends. */
function raw(to = port): { socket: net.Socket; text: () => string; waitFor: (expected: string) => Promise<string>; closed: Promise<void> } {
  const socket = net.connect(to, '127.0.0.1');
  sockets.add(socket);
  let seen = '';
  const waiters: Array<() => void> = [];
  socket.setEncoding('latin1');
  socket.on('data', (t: string) => {
    seen += t;
    for (const w of waiters.splice(0)) w();
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const waitFor = async (expected: string): Promise<string> => {
    const deadline = Date.now() + 5000;
    while (!seen.includes(expected)) {
      if (socket.destroyed && !seen.includes(expected)) throw new Error(`closed; got ${JSON.stringify(seen)}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${JSON.stringify(expected)}; got ${JSON.stringify(seen)}`);
      await Promise.race([new Promise<void>((resolve) => waiters.push(resolve)), closed, new Promise((resolve) => setTimeout(resolve, 100))]);
    }
    return seen;
  };
  return { socket, text: () => seen, waitFor, closed };
}

function resp(...args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

function client(options: Parameters<typeof createClient>[0]) {
  const c = createClient({ ...options, socket: { host: '127.0.0.1', port, reconnectStrategy: false, ...options?.socket } });
  c.on('error', () => {});
  clients.push(c);
  return c;
}

describe('redis listener', { skip: missing ?? undefined }, () => {
  it('node-redis (RESP2, AUTH user pass) reaches each tenant on its own Redis', async () => {
    const a = client({ username: 'alice', password: 'alice-pw' });
    const b = client({ username: 'bob', password: 'bob-pw' });
    await a.connect();
    await b.connect();
    await a.set('owner', 'alice');
    await b.set('owner', 'bob');
    assert.equal(await a.get('owner'), 'alice');
    assert.equal(await b.get('owner'), 'bob');
    assert.equal(await a.aclWhoAmI(), 'alice');
    // Each tenant's key lives on its own server only.
    assert.equal(await redisA.command('GET', 'owner'), '$5\r\nalice\r\n');
    assert.equal(await redisB.command('GET', 'owner'), '$3\r\nbob\r\n');
    // SELECT and MULTI/EXEC pass through.
    await a.select(3);
    const results = await a.multi().set('in-db-3', 'yes').get('in-db-3').exec();
    assert.deepEqual(results, ['OK', 'yes']);
    await a.select(0);
    assert.equal(await a.get('in-db-3'), null);
    a.destroy();
    b.destroy();
  });

  it('node-redis with RESP: 3 sends HELLO 3 AUTH and gets RESP3 replies from the backend', async () => {
    const c = client({ username: 'bob', password: 'bob-pw', RESP: 3 });
    await c.connect();
    await c.hSet('h3', { f: 'v' });
    // A RESP3 map comes back as a plain object: the backend speaks protocol 3.
    assert.deepEqual({ ...(await c.hGetAll('h3')) }, { f: 'v' });
    c.destroy();
  });

  it('raw HELLO 3 AUTH gets the backend’s own HELLO map', async () => {
    const r = raw();
    r.socket.write(resp('HELLO', '3', 'AUTH', 'alice', 'alice-pw', 'SETNAME', 'raw3'));
    const seen = await r.waitFor('modules');
    assert.match(seen, /^%7\r\n/);
    // The backend's real version, not the proxy's placeholder.
    const version = /\$7\r\nversion\r\n\$\d+\r\n([^\r]+)\r\n/.exec(seen)?.[1];
    assert.ok(version !== undefined && version !== '7.0.0', `backend version, got ${version}`);
    r.socket.write(resp('CLIENT', 'GETNAME'));
    await r.waitFor('raw3\r\n');
    r.socket.destroy();
  });

  it('answers PING, HELLO and refuses other commands before AUTH; then a HELLO 3 is carried to the backend', async () => {
    const r = raw();
    r.socket.write('PING\r\n');
    await r.waitFor('+PONG\r\n');
    r.socket.write(resp('GET', 'owner'));
    await r.waitFor('-NOAUTH Authentication required.\r\n');
    r.socket.write(resp('HELLO', '4'));
    await r.waitFor('-NOPROTO unsupported protocol version\r\n');
    r.socket.write(resp('HELLO', '3'));
    const seen = await r.waitFor('modules\r\n*0\r\n');
    assert.ok(seen.includes('%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n$5\r\nproto\r\n:3\r\n'), seen);
    const before = r.text().length;
    r.socket.write(resp('AUTH', 'alice', 'alice-pw'));
    await r.waitFor('+OK\r\n');
    // The backend was switched to RESP3: HGETALL answers with a map.
    r.socket.write(resp('HSET', 'hraw', 'k', 'v') + resp('HGETALL', 'hraw'));
    await r.waitFor('%1\r\n$1\r\nk\r\n$1\r\nv\r\n');
    assert.equal(r.text().slice(before), '+OK\r\n:1\r\n%1\r\n$1\r\nk\r\n$1\r\nv\r\n');
    r.socket.destroy();
  });

  it('replays commands pipelined behind AUTH in order', async () => {
    const r = raw();
    r.socket.write(resp('PING') + resp('AUTH', 'bob', 'bob-pw') + resp('SET', 'pipe', '1') + resp('INCR', 'pipe') + resp('GET', 'pipe') + 'PING\r\n');
    const seen = await r.waitFor('$1\r\n2\r\n+PONG\r\n');
    assert.equal(seen, '+PONG\r\n+OK\r\n+OK\r\n:2\r\n$1\r\n2\r\n+PONG\r\n');
    assert.equal(await redisB.command('GET', 'pipe'), '$1\r\n2\r\n');
    r.socket.destroy();
  });

  it('pub/sub works per tenant, and one tenant never hears the other', async () => {
    const sub = client({ username: 'alice', password: 'alice-pw' });
    const pubA = client({ username: 'alice', password: 'alice-pw' });
    const pubB = client({ username: 'bob', password: 'bob-pw' });
    await Promise.all([sub.connect(), pubA.connect(), pubB.connect()]);
    const heard: string[] = [];
    const got = new Promise<void>((resolve) =>
      void sub.subscribe('news', (message) => {
        heard.push(message);
        if (message === 'from-alice') resolve();
      }),
    );
    // Wait until the subscription is live on the backend.
    while (Number(await pubA.publish('news', 'warm-up')) === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(await pubB.publish('news', 'from-bob'), 0);
    assert.equal(await pubA.publish('news', 'from-alice'), 1);
    await got;
    assert.ok(!heard.includes('from-bob'));
    sub.destroy();
    pubA.destroy();
    pubB.destroy();
  });

  it('redis-cli --user reaches each tenant; an unrouted user sees WRONGPASS', async () => {
    const cli = (user: string, pass: string, ...args: string[]) => execFileAsync(REDIS_CLI, ['-h', '127.0.0.1', '-p', String(port), '--user', user, '--pass', pass, '--no-auth-warning', ...args]);
    assert.equal((await cli('alice', 'alice-pw', 'SET', 'cli', 'a')).stdout.trim(), 'OK');
    assert.equal((await cli('bob', 'bob-pw', 'GET', 'owner')).stdout.trim(), 'bob');
    assert.equal((await cli('alice', 'alice-pw', 'GET', 'cli')).stdout.trim(), 'a');
    const refused = await cli('mallory', 'x', 'PING');
    assert.match(refused.stdout + refused.stderr, /WRONGPASS invalid username-password pair or user is disabled/);
  });

  it('an unrouted user gets WRONGPASS and may AUTH again on the same connection; a wrong password is the backend’s own WRONGPASS', async () => {
    const r = raw();
    r.socket.write(resp('AUTH', 'mallory', 'x'));
    await r.waitFor(WRONGPASS);
    r.socket.write(resp('AUTH', 'alice', 'wrong'));
    await r.waitFor(`${WRONGPASS}${WRONGPASS}`);
    // Routed to alice's Redis, which refused the password: the session goes on there.
    r.socket.write(resp('AUTH', 'alice', 'alice-pw'));
    await r.waitFor('+OK\r\n');
    r.socket.destroy();
    const c = client({ username: 'mallory', password: 'x' });
    await assert.rejects(c.connect(), /WRONGPASS/);
  });

  it('a tenant whose server is down gets -ERR and the connection closes', async () => {
    const r = raw();
    r.socket.write(resp('AUTH', 'carol', 'pw'));
    await r.closed;
    assert.equal(r.text(), "-ERR cannot reach the server for user 'carol', try again later\r\n");
  });

  it('a malformed request gets Redis’s protocol error and the connection closes', async () => {
    const r = raw();
    r.socket.write('*1\r\n+PING\r\n');
    await r.closed;
    assert.equal(r.text(), "-ERR Protocol error: expected '$', got '+'\r\n");
    const big = raw();
    big.socket.write('*11\r\n');
    await big.closed;
    assert.equal(big.text(), '-ERR Protocol error: unauthenticated multibulk length\r\n');
  });

  it('a client that never authenticates gets -ERR at the handshake timeout', async () => {
    const r = raw();
    r.socket.write('PING\r\n');
    await r.waitFor('+PONG\r\n');
    await r.closed;
    assert.equal(r.text(), '+PONG\r\n-ERR timeout waiting for AUTH or HELLO AUTH, closing connection\r\n');
  });

  it('maxConnections: the next client gets -ERR max number of clients reached', async () => {
    const held = raw(proxy.port('kv-one'));
    held.socket.write('PING\r\n');
    await held.waitFor('+PONG\r\n');
    const refused = raw(proxy.port('kv-one'));
    await refused.closed;
    assert.equal(refused.text(), '-ERR max number of clients reached\r\n');
    held.socket.destroy();
  });

  it('terminates TLS (node-redis over TLS to the proxy, plaintext to Redis)', async () => {
    const c = client({ username: 'alice', password: 'alice-pw', socket: { port: proxy.port('kv-tls'), tls: true, ca: readFileSync(pki.caCert), servername: 'localhost' } });
    await c.connect();
    await c.set('via-tls', 'yes');
    assert.equal(await redisA.command('GET', 'via-tls'), '$3\r\nyes\r\n');
    c.destroy();
  });

  it('routeBy: sni routes by the TLS server name and leaves AUTH to the backend', async () => {
    const c = client({ username: 'alice', password: 'alice-pw', socket: { port: proxy.port('kv-sni'), tls: true, ca: readFileSync(pki.caCert), servername: 'a.redis.test' } });
    await c.connect();
    assert.equal(await c.aclWhoAmI(), 'alice');
    await c.set('via-sni', 'yes');
    assert.equal(await redisA.command('GET', 'via-sni'), '$3\r\nyes\r\n');
    c.destroy();
  });

  it('cold start: clients of a sleeping tenant wait for its wake and get through; one that never wakes gets -ERR at the deadline', async () => {
    const sleepers = Array.from({ length: 5 }, () => client({ username: 'sleepy', password: 'sleepy-pw' }));
    await Promise.all(sleepers.map((c) => c.connect()));
    assert.deepEqual(await Promise.all(sleepers.map((c) => c.aclWhoAmI())), Array(5).fill('sleepy'));
    for (const c of sleepers) c.destroy();
    const admin = (proxy.ready as unknown as { admin: { port: number } }).admin;
    const text = await (await fetch(`http://127.0.0.1:${admin.port}/metrics`)).text();
    assert.match(text, /polyproxy_cold_start_wakes_total 1\n/);
    const started = Date.now();
    const r = raw();
    r.socket.write(resp('AUTH', 'never', 'pw'));
    await r.closed;
    assert.equal(r.text(), "-ERR the server for user 'never' is unavailable, try again later\r\n");
    assert.ok(Date.now() - started >= COLD_START_DEADLINE_MS - 50, 'held until the deadline');
  });

  it('counts sessions per tenant in /metrics', async () => {
    const admin = (proxy.ready as unknown as { admin: { port: number } }).admin;
    const text = await (await fetch(`http://127.0.0.1:${admin.port}/metrics`)).text();
    assert.match(text, /polyproxy_resource_connections_total\{resource="alice"\} [1-9]/);
    assert.match(text, /polyproxy_resource_connections_total\{resource="bob"\} [1-9]/);
    // Each in-session WRONGPASS for an unrouted user counts as a NOT_FOUND.
    assert.match(text, /polyproxy_errors_total\{[^}]*listener="kv"[^}]*kind="NOT_FOUND"[^}]*\} [1-9]/);
  });
});

describe('redis listener drain', { skip: missing ?? undefined }, () => {
  it('a client still before AUTH at the drain deadline gets a shutting-down error', async () => {
    const drainProxy = await startCli([
      '--config',
      await writeConfig({
        workers: 1,
        shutdownTimeoutSeconds: 0.5,
        security: { allowBackends: ['127.0.0.0/8'] },
        routes: { alice: `127.0.0.1:${redisA.port}` },
        listeners: [{ name: 'kv', protocol: 'redis', host: '127.0.0.1', port: 0 }],
      }),
    ]);
    try {
      const r = raw(drainProxy.port('kv'));
      r.socket.write('PING\r\n');
      await r.waitFor('+PONG\r\n');
      drainProxy.child.kill('SIGTERM');
      await r.closed;
      assert.equal(r.text(), '+PONG\r\n-ERR the proxy is shutting down, closing connection\r\n');
    } finally {
      await drainProxy.stop();
    }
  });
});
