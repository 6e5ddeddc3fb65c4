/**
 * NATS routing end to end (issue 22): the real `polyproxy` command (built
 * dist/) in front of nats-server instances of the test's own (users, a
 * token), driven by nats.js and raw protocol lines.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, StringCodec } from 'nats';
import type { ConnectionOptions, NatsConnection } from 'nats';
import { makeTestPki } from '../helpers/certs.ts';
import type { TestPki } from '../helpers/certs.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { coldResolverModule } from '../helpers/cold-forwarder.ts';
import { natsServerMissing, startNats } from '../helpers/nats-server.ts';
import { freePort } from '../helpers/redis-server.ts';
import type { OwnNats } from '../helpers/nats-server.ts';

const missing = await natsServerMissing();
const sc = StringCodec();
const HANDSHAKE_TIMEOUT_MS = 1500;
const COLD_START_DEADLINE_MS = 1500;

let natsA: OwnNats;
let natsB: OwnNats;
let natsT: OwnNats;
let proxy: RunningCli;
let pki: TestPki;
const connections: NatsConnection[] = [];
const sockets = new Set<net.Socket>();

before(async () => {
  if (missing !== null) return;
  natsA = await startNats('authorization { users: [ { user: alice, password: alice-pw }, { user: sleepy, password: sleepy-pw } ] }');
  natsB = await startNats('authorization { users: [ { user: bob, password: bob-pw } ] }');
  natsT = await startNats('authorization { token: "t1.secret" }');
  pki = await makeTestPki({ serverNames: ['127.0.0.1', 'localhost'] });
  const file = await writeConfig({
    workers: 1,
    admin: { host: '127.0.0.1', port: 0 },
    security: { allowBackends: ['127.0.0.0/8'] },
    // Tenants "sleepy" (wakes to natsA) and "never" come from the module; the rest from routes.
    resolver: { module: './resolver.mjs' },
    coldStart: { timeoutMs: COLD_START_DEADLINE_MS, pollIntervalMs: 50 },
    routes: { alice: `127.0.0.1:${natsA.port}`, bob: `127.0.0.1:${natsB.port}`, t1: `127.0.0.1:${natsT.port}`, carol: '127.0.0.1:1' },
    listeners: [
      { name: 'na', protocol: 'nats', host: '127.0.0.1', port: 0, handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS },
      { name: 'na-token', protocol: 'nats', host: '127.0.0.1', port: 0, routeBy: 'token' },
      { name: 'na-big', protocol: 'nats', host: '127.0.0.1', port: 0, maxPayload: 8 * 1048576 },
      { name: 'na-v9', protocol: 'nats', host: '127.0.0.1', port: 0, serverVersion: '9.0.0' },
      { name: 'na-nohdr', protocol: 'nats', host: '127.0.0.1', port: 0, headers: false },
      { name: 'na-one', protocol: 'nats', host: '127.0.0.1', port: 0, maxConnections: 1 },
      { name: 'na-tls', protocol: 'nats', host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey } },
    ],
  });
  await writeFile(path.join(path.dirname(file), 'resolver.mjs'), coldResolverModule({ sleepyId: 'sleepy', sleepyPort: await freePort(), targetPort: natsA.port, neverId: 'never', deadPort: await freePort() }));
  proxy = await startCli(['--config', file]);
});

after(async () => {
  for (const nc of connections) await nc.close().catch(() => {});
  for (const s of sockets) s.destroy();
  await proxy?.stop();
  await natsA?.stop();
  await natsB?.stop();
  await natsT?.stop();
  await pki?.cleanup();
});

async function open(listener: string, options: Partial<ConnectionOptions>): Promise<NatsConnection> {
  const nc = await connect({ servers: `127.0.0.1:${proxy.port(listener)}`, reconnect: false, timeout: 5000, ...options });
  connections.push(nc);
  return nc;
}

/** A raw connection that collects every byte the proxy sends. */
function raw(listener: string): { socket: net.Socket; text: () => string; waitFor: (s: string) => Promise<string>; closed: Promise<void> } {
  const socket = net.connect(proxy.port(listener), '127.0.0.1');
  sockets.add(socket);
  let seen = '';
  socket.setEncoding('latin1');
  socket.on('data', (t: string) => (seen += t));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const waitFor = async (expected: string): Promise<string> => {
    const deadline = Date.now() + 5000;
    while (!seen.includes(expected)) {
      if (socket.destroyed || Date.now() > deadline) throw new Error(`waiting for ${JSON.stringify(expected)}; got ${JSON.stringify(seen)}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return seen;
  };
  return { socket, text: () => seen, waitFor, closed };
}

describe('nats listener', { skip: missing ?? undefined }, () => {
  it('pub/sub and request/reply for two tenants on two servers, which never hear each other', async () => {
    const a = await open('na', { user: 'alice', pass: 'alice-pw' });
    const a2 = await open('na', { user: 'alice', pass: 'alice-pw' });
    const b = await open('na', { user: 'bob', pass: 'bob-pw' });
    const heardA: string[] = [];
    const heardB: string[] = [];
    a.subscribe('news', { callback: (_err, m) => heardA.push(sc.decode(m.data)) });
    b.subscribe('news', { callback: (_err, m) => heardB.push(sc.decode(m.data)) });
    a.subscribe('svc.time', { callback: (_err, m) => m.respond(sc.encode(`a:${sc.decode(m.data)}`)) });
    b.subscribe('svc.time', { callback: (_err, m) => m.respond(sc.encode(`b:${sc.decode(m.data)}`)) });
    await a.flush();
    await b.flush();
    a2.publish('news', sc.encode('for-a'));
    b.publish('news', sc.encode('for-b'));
    await a2.flush();
    await b.flush();
    assert.equal(sc.decode((await a2.request('svc.time', sc.encode('q1'), { timeout: 3000 })).data), 'a:q1');
    assert.equal(sc.decode((await b.request('svc.time', sc.encode('q2'), { timeout: 3000 })).data), 'b:q2');
    await a.flush();
    assert.deepEqual(heardA, ['for-a']);
    assert.deepEqual(heardB, ['for-b']);
    // Headers pass (the proxy announced them and the backend has them).
    const { headers } = await import('nats');
    const h = headers();
    h.set('X-Tenant', 'alice');
    const echoed = new Promise<string | undefined>((resolve) => a.subscribe('hdr', { max: 1, callback: (_err, m) => resolve(m.headers?.get('X-Tenant')) }));
    await a.flush();
    a2.publish('hdr', sc.encode('x'), { headers: h });
    assert.equal(await echoed, 'alice');
  });

  it('the client sees the proxy’s INFO only, with the announced values', async () => {
    const nc = await open('na', { user: 'alice', pass: 'alice-pw' });
    const info = nc.info;
    assert.equal(info?.server_name, 'na');
    assert.equal(info?.version, '2.2.0');
    assert.equal(info?.max_payload, 1048576);
    assert.equal(info?.headers, true);
    const r = raw('na');
    await r.waitFor('\r\n');
    r.socket.write('CONNECT {"user":"alice","pass":"alice-pw","verbose":true,"pedantic":false}\r\nPING\r\n');
    const seen = await r.waitFor('PONG\r\n');
    // One INFO (the proxy's), then the backend's +OK and PONG.
    assert.match(seen, /^INFO \{[^\r\n]*"server_name":"na"[^\r\n]*\} \r\n\+OK\r\nPONG\r\n$/);
    r.socket.destroy();
  });

  it('routeBy: token routes by the token prefix; the backend checks the whole token', async () => {
    const nc = await open('na-token', { token: 't1.secret' });
    const got = new Promise<string>((resolve) => nc.subscribe('t', { max: 1, callback: (_err, m) => resolve(sc.decode(m.data)) }));
    await nc.flush();
    nc.publish('t', sc.encode('token-ok'));
    assert.equal(await got, 'token-ok');
    await assert.rejects(open('na-token', { token: 't1.wrong' }), /Authorization Violation|AUTHORIZATION_VIOLATION/i);
    await assert.rejects(open('na-token', { token: 'nodot' }), /Authorization Violation|AUTHORIZATION_VIOLATION/i);
  });

  it('an unrouted user, and a wrong password, see -ERR Authorization Violation', async () => {
    await assert.rejects(open('na', { user: 'mallory', pass: 'x' }), (err: Error & { code?: string }) => err.code === 'AUTHORIZATION_VIOLATION');
    await assert.rejects(open('na', { user: 'alice', pass: 'wrong' }), (err: Error & { code?: string }) => err.code === 'AUTHORIZATION_VIOLATION');
    const r = raw('na');
    await r.waitFor('\r\n');
    r.socket.write('CONNECT {"user":"mallory","pass":"x"}\r\nPING\r\n');
    await r.closed;
    assert.match(r.text(), /^INFO [^\r\n]+\r\n-ERR 'Authorization Violation'\r\n$/);
  });

  it('a command before CONNECT is an Authorization Violation, as with nats-server', async () => {
    const r = raw('na');
    await r.waitFor('\r\n');
    r.socket.write('PING\r\n');
    await r.closed;
    assert.match(r.text(), /\r\n-ERR 'Authorization Violation'\r\n$/);
  });

  it('a tenant whose server is down sees -ERR Server Unavailable', async () => {
    const r = raw('na');
    await r.waitFor('\r\n');
    r.socket.write('CONNECT {"user":"carol","pass":"x"}\r\n');
    await r.closed;
    assert.match(r.text(), /\r\n-ERR 'Server Unavailable'\r\n$/);
  });

  it('a backend that cannot honour the announced max_payload is refused before CONNECT reaches it', async () => {
    await assert.rejects(open('na-big', { user: 'alice', pass: 'alice-pw' }), /Server Unavailable/i);
    const logLine = await proxy.waitForLog((l) => typeof l.msg === 'string' && l.msg.includes('max_payload'));
    assert.match(logLine.msg, /smaller than the announced 8388608/);
    await assert.rejects(open('na-v9', { user: 'alice', pass: 'alice-pw' }), /Server Unavailable/i);
    await proxy.waitForLog((l) => typeof l.msg === 'string' && l.msg.includes('older than the announced 9.0.0'));
  });

  it('headers: false is announced, and the client then refuses to send headers itself', async () => {
    const nc = await open('na-nohdr', { user: 'alice', pass: 'alice-pw' });
    assert.equal(nc.info?.headers, false);
    const { headers } = await import('nats');
    assert.throws(() => nc.publish('x', sc.encode('y'), { headers: headers() }), /headers/i);
  });

  it('a client that never sends CONNECT gets Authentication Timeout', async () => {
    const r = raw('na');
    await r.closed;
    assert.match(r.text(), /^INFO [^\r\n]+\r\n-ERR 'Authentication Timeout'\r\n$/);
  });

  it('maxConnections: the next client gets INFO and -ERR maximum connections exceeded', async () => {
    const held = raw('na-one');
    await held.waitFor('\r\n');
    const refused = raw('na-one');
    await refused.closed;
    assert.match(refused.text(), /^INFO [^\r\n]+\r\n-ERR 'maximum connections exceeded'\r\n$/);
    held.socket.destroy();
  });

  it('cold start: clients of a sleeping tenant wait for its wake and get through; one that never wakes gets -ERR at the deadline', async () => {
    const sleepers = await Promise.all(Array.from({ length: 5 }, () => open('na', { user: 'sleepy', pass: 'sleepy-pw' })));
    const got = new Promise<string>((resolve) => sleepers[0]?.subscribe('wake', { max: 1, callback: (_err, m) => resolve(sc.decode(m.data)) }));
    await sleepers[0]?.flush();
    sleepers[4]?.publish('wake', sc.encode('awake'));
    assert.equal(await got, 'awake');
    const admin = (proxy.ready as unknown as { admin: { port: number } }).admin;
    const text = await (await fetch(`http://127.0.0.1:${admin.port}/metrics`)).text();
    assert.match(text, /polyproxy_cold_start_wakes_total 1\n/);
    const started = Date.now();
    const r = raw('na');
    await r.waitFor('\r\n');
    r.socket.write('CONNECT {"user":"never","pass":"x"}\r\n');
    await r.closed;
    assert.match(r.text(), /\r\n-ERR 'Server Unavailable'\r\n$/);
    assert.ok(Date.now() - started >= COLD_START_DEADLINE_MS - 50, 'held until the deadline');
  });

  it('counts sessions per tenant in /metrics', async () => {
    const admin = (proxy.ready as unknown as { admin: { port: number } }).admin;
    const text = await (await fetch(`http://127.0.0.1:${admin.port}/metrics`)).text();
    assert.match(text, /polyproxy_resource_connections_total\{resource="alice"\} [1-9]/);
    assert.match(text, /polyproxy_resource_connections_total\{resource="bob"\} [1-9]/);
    assert.match(text, /polyproxy_resource_connections_total\{resource="t1"\} [1-9]/);
  });

  it('terminates TLS: INFO says tls_required, nats.js upgrades, the backend sees plaintext', async () => {
    const nc = await open('na-tls', { user: 'bob', pass: 'bob-pw', tls: { caFile: pki.caCert } });
    assert.equal(nc.info?.tls_required, true);
    const got = new Promise<string>((resolve) => nc.subscribe('tls', { max: 1, callback: (_err, m) => resolve(sc.decode(m.data)) }));
    await nc.flush();
    nc.publish('tls', sc.encode('secure'));
    assert.equal(await got, 'secure');
  });
});

describe('nats listener drain', { skip: missing ?? undefined }, () => {
  it('a client still before CONNECT at the drain deadline gets -ERR Server Shutdown', async () => {
    const drainProxy = await startCli([
      '--config',
      await writeConfig({
        workers: 1,
        shutdownTimeoutSeconds: 0.5,
        security: { allowBackends: ['127.0.0.0/8'] },
        routes: { alice: `127.0.0.1:${natsA.port}` },
        listeners: [{ name: 'na', protocol: 'nats', host: '127.0.0.1', port: 0 }],
      }),
    ]);
    try {
      const socket = net.connect(drainProxy.port('na'), '127.0.0.1');
      sockets.add(socket);
      let seen = '';
      socket.setEncoding('latin1');
      socket.on('data', (t: string) => (seen += t));
      socket.on('error', () => {});
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      while (!seen.includes('\r\n')) await new Promise((resolve) => setTimeout(resolve, 10));
      drainProxy.child.kill('SIGTERM');
      await closed;
      assert.match(seen, /^INFO [^\r\n]+\r\n-ERR 'Server Shutdown'\r\n$/);
    } finally {
      await drainProxy.stop();
    }
  });
});
