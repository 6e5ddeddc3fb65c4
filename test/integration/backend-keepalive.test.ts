/**
 * Issue 16, defect 3 (keepalive on both legs), for the listeners that are
 * not pipelines: ws-bridge's connections to its API and the fastcgi
 * gateway's connections to its FastCGI servers follow the listener's
 * `tcpKeepAliveMs` (first probe after that long idle; 0 = off), as the
 * client legs and every other protocol's backend legs do. And the tcp fast
 * path: its client leg inherits keepalive from the listening socket, its
 * backend leg gets it a second or two after connecting (handle-relay.ts).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import WebSocket from 'ws';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { answer, fakeServer } from '../helpers/fastcgi-server.ts';
import { API_BASE, startApi } from '../helpers/ws-api.ts';
import type { TestApi } from '../helpers/ws-api.ts';

/** `ss` lists each socket's timers (iproute2); without it these tests are skipped. */
function ssAvailable(): boolean {
  try {
    execFileSync('ss', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The proxy's established connections to `port`, with their timers. */
function legsTo(port: number): string[] {
  return execFileSync('ss', ['-tnoH', 'state', 'established', `( dport = :${port} )`], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.trim() !== '');
}

/** Seconds until the keepalive timer's next probe ("timer:(keepalive,6.9sec,0)"), or null without one. */
function keepaliveSeconds(line: string): number | null {
  const m = /timer:\(keepalive,(?:(\d+)min)?([\d.]+)?(ms|sec)?/.exec(line);
  if (m === null) return null;
  const minutes = m[1] === undefined ? 0 : Number(m[1]) * 60;
  const rest = m[2] === undefined ? 0 : Number(m[2]) / (m[3] === 'ms' ? 1000 : 1);
  return minutes + rest;
}

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const KEEPALIVE_MS = 7000;

describe('TCP keepalive on ws-bridge and fastcgi backend connections (issue 16, #3)', { skip: ssAvailable() ? false : 'ss (iproute2) is not installed' }, () => {
  let apiOn: TestApi;
  let apiOff: TestApi;
  let fcgiOn: Awaited<ReturnType<typeof fakeServer>>;
  let fcgiOff: Awaited<ReturnType<typeof fakeServer>>;
  let cli: RunningCli;

  before(async () => {
    apiOn = await startApi();
    apiOff = await startApi();
    // Keeps the connection (FCGI_KEEP_CONN is set by the gateway): it stays idle in the gateway's pool.
    fcgiOn = await fakeServer((req) => answer(req, 'Content-Type: text/plain\r\n\r\nhi'));
    fcgiOff = await fakeServer((req) => answer(req, 'Content-Type: text/plain\r\n\r\nhi'));
    const common = { host: '127.0.0.1', port: 0 };
    const config = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      security: { allowPrivateBackends: true },
      listeners: [
        { ...common, name: 'ws-on', protocol: 'ws-bridge', api: apiOn.url, tcpKeepAliveMs: KEEPALIVE_MS },
        { ...common, name: 'ws-off', protocol: 'ws-bridge', api: apiOff.url, tcpKeepAliveMs: 0 },
        { ...common, name: 'php-on', protocol: 'fastcgi', backends: [fcgiOn.address], documentRoot: '/srv', tcpKeepAliveMs: KEEPALIVE_MS },
        { ...common, name: 'php-off', protocol: 'fastcgi', backends: [fcgiOff.address], documentRoot: '/srv', tcpKeepAliveMs: 0 },
      ],
    });
    cli = await startCli(['--config', config]);
  });

  after(async () => {
    await cli?.stop();
    await apiOn?.close();
    await apiOff?.close();
    await fcgiOn?.close();
    await fcgiOff?.close();
  });

  const apiPort = (api: TestApi): number => api.port;
  const fcgiPort = (address: string): number => Number(address.slice(address.lastIndexOf(':') + 1));

  async function wsConnect(listener: string, api: TestApi): Promise<WebSocket> {
    const ws = new WebSocket(`ws://127.0.0.1:${cli.port(listener)}/client-${listener}`);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    await api.waitFor((r) => r.method === 'GET' && r.path === `${API_BASE}client-${listener}`);
    return ws;
  }

  it(`ws-bridge: the API connection probes after tcpKeepAliveMs (${KEEPALIVE_MS} ms)`, async () => {
    const ws = await wsConnect('ws-on', apiOn);
    try {
      await until('the API connection', () => legsTo(apiPort(apiOn)).length > 0);
      for (const leg of legsTo(apiPort(apiOn))) {
        const seconds = keepaliveSeconds(leg);
        assert.notEqual(seconds, null, leg);
        assert.ok((seconds as number) <= KEEPALIVE_MS / 1000, leg);
      }
    } finally {
      ws.close();
    }
  });

  it('ws-bridge: tcpKeepAliveMs 0 leaves the API connection without keepalive', async () => {
    const ws = await wsConnect('ws-off', apiOff);
    try {
      await until('the API connection', () => legsTo(apiPort(apiOff)).length > 0);
      for (const leg of legsTo(apiPort(apiOff))) assert.equal(keepaliveSeconds(leg), null, leg);
    } finally {
      ws.close();
    }
  });

  it(`fastcgi: the FastCGI connection probes after tcpKeepAliveMs (${KEEPALIVE_MS} ms)`, async () => {
    const res = await request(`http://127.0.0.1:${cli.port('php-on')}/index.php`);
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), 'hi');
    await until('the idle FastCGI connection', () => legsTo(fcgiPort(fcgiOn.address)).length > 0);
    for (const leg of legsTo(fcgiPort(fcgiOn.address))) {
      const seconds = keepaliveSeconds(leg);
      assert.notEqual(seconds, null, leg);
      assert.ok((seconds as number) <= KEEPALIVE_MS / 1000, leg);
    }
  });

  it('fastcgi: tcpKeepAliveMs 0 leaves the FastCGI connection without keepalive', async () => {
    const res = await request(`http://127.0.0.1:${cli.port('php-off')}/index.php`);
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    await until('the idle FastCGI connection', () => legsTo(fcgiPort(fcgiOff.address)).length > 0);
    for (const leg of legsTo(fcgiPort(fcgiOff.address))) assert.equal(keepaliveSeconds(leg), null, leg);
  });
});

describe('TCP keepalive on the tcp fast path (bare handles)', { skip: ssAvailable() ? false : 'ss (iproute2) is not installed' }, () => {
  let echo: net.Server;
  let cli: RunningCli;
  const clients: net.Socket[] = [];

  before(async () => {
    echo = net.createServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    const config = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      security: { allowPrivateBackends: true },
      listeners: [{ name: 'tcp', protocol: 'tcp', host: '127.0.0.1', port: 0, backend: `127.0.0.1:${(echo.address() as AddressInfo).port}`, tcpKeepAliveMs: KEEPALIVE_MS }],
    });
    cli = await startCli(['--config', config]);
  });

  after(async () => {
    for (const c of clients) c.destroy();
    await cli?.stop();
    echo?.close();
  });

  async function echoed(): Promise<net.Socket> {
    const socket = net.connect(cli.port('tcp'), '127.0.0.1');
    clients.push(socket);
    socket.write('x');
    await once(socket, 'data');
    return socket;
  }

  it(`both legs probe after tcpKeepAliveMs (${KEEPALIVE_MS} ms): the client's at once, the backend's armed within two seconds`, async () => {
    // The first connection fills the route cache; the second takes the bare-handle path.
    await echoed();
    const second = await echoed();
    const clientLeg = legsFrom(cli.port('tcp')).find((line) => line.includes(`:${second.localPort} `));
    assert.ok(clientLeg !== undefined, 'the client leg');
    assert.ok((keepaliveSeconds(clientLeg) ?? Infinity) <= KEEPALIVE_MS / 1000, clientLeg);
    const echoPort = (echo.address() as AddressInfo).port;
    await until('keepalive on every backend leg', () => {
      const legs = legsTo(echoPort);
      return legs.length === 2 && legs.every((leg) => keepaliveSeconds(leg) !== null);
    }, 4000);
    for (const leg of legsTo(echoPort)) assert.ok((keepaliveSeconds(leg) as number) <= KEEPALIVE_MS / 1000, leg);
  });
});

/** The proxy's established connections from its listening `port` (the client legs), with their timers. */
function legsFrom(port: number): string[] {
  return execFileSync('ss', ['-tnoH', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.trim() !== '');
}
