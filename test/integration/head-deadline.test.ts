/**
 * Issue 16 (slowloris on every listener kind): the listeners served by
 * node:http — ws-bridge and fastcgi — close a client that trickles its
 * request head within their deadline (ws-bridge: handshakeTimeoutMs for the
 * upgrade request; fastcgi: requestTimeoutMs), checked every 500 ms instead
 * of Node's default 30 s sweep, while a well-behaved client is served.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import WebSocket from 'ws';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { answer, fakeServer } from '../helpers/fastcgi-server.ts';
import { startApi } from '../helpers/ws-api.ts';
import type { TestApi } from '../helpers/ws-api.ts';

const DEADLINE_MS = 1000;
/** The deadline, the 500 ms check, and room for a busy machine — well under Node's 30 s default check. */
const CLOSED_WITHIN_MS = 4000;

/** Sends `head` and then one byte every 200 ms, never finishing; resolves with how long until the proxy closed it. */
function trickle(port: number, head: string): Promise<number> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect({ port, host: '127.0.0.1' }, () => socket.write(head));
    const timer = setInterval(() => {
      if (!socket.destroyed) socket.write('a');
    }, 200);
    const giveUp = setTimeout(() => socket.destroy(), 20_000);
    socket.on('error', () => {});
    socket.resume();
    socket.on('close', () => {
      clearInterval(timer);
      clearTimeout(giveUp);
      resolve(Date.now() - started);
    });
  });
}

describe('slow request heads on ws-bridge and fastcgi listeners (issue 16)', () => {
  let api: TestApi;
  let fcgi: Awaited<ReturnType<typeof fakeServer>>;
  let cli: RunningCli;

  before(async () => {
    api = await startApi();
    fcgi = await fakeServer((req) => answer(req, 'Content-Type: text/plain\r\n\r\nhi'));
    const config = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      security: { allowPrivateBackends: true },
      listeners: [
        { name: 'ws', protocol: 'ws-bridge', host: '127.0.0.1', port: 0, api: api.url, handshakeTimeoutMs: DEADLINE_MS },
        { name: 'php', protocol: 'fastcgi', host: '127.0.0.1', port: 0, backends: [fcgi.address], documentRoot: '/srv', requestTimeoutMs: DEADLINE_MS },
      ],
    });
    cli = await startCli(['--config', config]);
  });

  after(async () => {
    await cli?.stop();
    await api?.close();
    await fcgi?.close();
  });

  it('ws-bridge: an upgrade request head that never ends is closed after handshakeTimeoutMs; a good client connects meanwhile', async () => {
    const port = cli.port('ws');
    const slow = trickle(port, 'GET /slow HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Slow: ');
    const ws = new WebSocket(`ws://127.0.0.1:${port}/good`);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.close();
    const closedAfter = await slow;
    assert.ok(closedAfter >= DEADLINE_MS - 50 && closedAfter < CLOSED_WITHIN_MS, `closed after ${closedAfter} ms`);
  });

  it('fastcgi: a request head that never ends is closed after requestTimeoutMs; a good client is served meanwhile', async () => {
    const port = cli.port('php');
    const slow = trickle(port, 'GET /index.php HTTP/1.1\r\nHost: php.test\r\nX-Slow: ');
    const res = await request(`http://127.0.0.1:${port}/index.php`);
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), 'hi');
    const closedAfter = await slow;
    assert.ok(closedAfter >= DEADLINE_MS - 50 && closedAfter < CLOSED_WITHIN_MS, `closed after ${closedAfter} ms`);
  });
});
