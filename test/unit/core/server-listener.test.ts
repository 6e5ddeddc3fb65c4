/**
 * ServerListener, the base of the listeners that run their own node:http
 * server (ws-bridge, fastcgi gateway): binding, maxConnections refused with
 * the 503 page in the listener's format, unparsable requests answered 400
 * and counted, error pages for its requests, and drain (the listening
 * socket closes at once, idle() waits for the sessions, drained() after).
 */
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import net from 'node:net';
import type { Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { PolyproxyError } from '../../../src/core/errors.ts';
import type { ErrorFormat } from '../../../src/core/http-error-response.ts';
import { ServerListener } from '../../../src/core/server-listener.ts';
import { errorCounts } from '../../helpers/errors-total.ts';

const silent = pino({ level: 'silent' });

/** Sessions are TCP connections, as in the fastcgi gateway; GET /fail answers a backend failure. */
class TestListener extends ServerListener {
  readonly sockets = new Set<Socket>();
  drainedCalls = 0;

  constructor(name: string, maxConnections: number, errorFormat: ErrorFormat) {
    super({ name, protocol: 'test', host: '127.0.0.1', port: 0, reusePort: false, maxConnections, errorFormat }, { keepAliveTimeout: 5000 }, silent);
    this.server.on('connection', (socket: Socket) => {
      if (!this.admit(socket, this.sockets.size)) return;
      this.counters.open++;
      this.sockets.add(socket);
      socket.once('close', () => {
        this.sockets.delete(socket);
        this.counters.open--;
        this.settle();
      });
    });
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      if (this.refusedRequest(req, res)) return;
      if (req.url === '/fail') {
        const error = new PolyproxyError('BACKEND_UNREACHABLE', 'backend 10.1.2.3:9000 refused');
        this.countFailure(error);
        this.sendError(req, res, error, { resourceId: 'app.test' });
        return;
      }
      res.end('ok');
    });
  }

  get sessions(): number {
    return this.sockets.size;
  }

  destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  protected override drained(): void {
    this.drainedCalls++;
  }
}

const started: TestListener[] = [];
after(async () => {
  for (const l of started) {
    await l.stopAccepting();
    l.destroyAll();
  }
});

async function start(name: string, maxConnections = 0, format: ErrorFormat = 'html'): Promise<{ listener: TestListener; port: number }> {
  const listener = new TestListener(name, maxConnections, format);
  started.push(listener);
  const address = await listener.listen();
  assert.deepEqual(listener.address, address);
  return { listener, port: address.port };
}

/** One raw HTTP exchange on a connection of its own: everything the server sends until it closes. */
function raw(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    let got = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (got += d));
    socket.on('close', () => resolve(got));
    socket.on('error', reject);
  });
}

/** A connection that stays open (a keep-alive client between requests). */
function hold(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
    socket.on('error', reject);
  });
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.ok(check());
}

describe('ServerListener', () => {
  it('a failure answered on a request: counted by kind, the page in the listener format without internals', async () => {
    const { listener, port } = await start('srv-fail');
    const html = await raw(port, 'GET /fail HTTP/1.1\r\nhost: x\r\n\r\n');
    assert.match(html, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
    assert.match(html, /x-polyproxy-error: PP_ERR_BACKEND_UNREACHABLE\r\n/);
    assert.match(html, /connection: close\r\n/);
    assert.match(html, /<p>The backend for host &#34;app.test&#34; could not be reached or failed.<\/p>/);
    assert.ok(!html.includes('10.1.2.3'));
    const json = await raw(port, 'GET /fail HTTP/1.1\r\nhost: x\r\naccept: application/json\r\n\r\n');
    assert.match(json, /\r\n\r\n\{"error":\{"status":502,"code":"PP_ERR_BACKEND_UNREACHABLE"/);
    assert.deepEqual(await errorCounts('srv-fail'), { BACKEND_UNREACHABLE: 2 });
    assert.equal(listener.counters.failed, 2);
    assert.equal(listener.counters.total, 2);
  });

  it('maxConnections: a connection past the limit gets the 503 page at its request, counted as refused, not as an error', async () => {
    const { listener, port } = await start('srv-max', 1);
    const first = await hold(port);
    await until(() => listener.sessions === 1);
    const refused = await raw(port, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    assert.match(refused, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
    assert.match(refused, /x-polyproxy-error: PP_ERR_TOO_MANY\r\n/);
    assert.match(refused, /Too many connections\./);
    assert.deepEqual({ ...listener.counters }, { open: 1, total: 2, refused: 1, failed: 0, bytesIn: 0, bytesOut: 0 });
    assert.deepEqual(await errorCounts('srv-max'), {});
    // The first connection is served; once it is gone there is room again.
    first.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    await new Promise((resolve) => first.once('data', resolve));
    first.destroy();
    await until(() => listener.sessions === 0);
    assert.match(await raw(port, 'GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'), /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nok$/);
  });

  it('a request node:http cannot parse: 400 in the listener format, counted as PROTOCOL (the client\'s fault: not failed)', async () => {
    const { listener, port } = await start('srv-bad', 0, 'text');
    const reply = await raw(port, 'GET / HTTP/1.1\r\nbad header\r\n\r\n');
    assert.match(reply, /^HTTP\/1\.1 400 Bad Request\r\ncontent-type: text\/plain; charset=utf-8\r\n/);
    assert.match(reply, /\r\n\r\nmalformed request \(HPE_[A-Z_]+\)$/);
    assert.deepEqual(await errorCounts('srv-bad'), { PROTOCOL: 1 });
    assert.equal(listener.counters.failed, 0);
  });

  it('drain: stops accepting at once, idle() waits for the open connection, then drained()', async () => {
    const { listener, port } = await start('srv-drain');
    const client = await hold(port);
    await until(() => listener.sessions === 1);
    await listener.stopAccepting();
    assert.equal(listener.draining, true);
    await assert.rejects(hold(port), { code: 'ECONNREFUSED' });
    let idle = false;
    const waiting = listener.idle().then(() => (idle = true));
    for (let i = 0; i < 5; i++) await new Promise(setImmediate);
    assert.equal(idle, false);
    assert.equal(listener.drainedCalls, 0);
    client.destroy();
    await waiting;
    assert.equal(listener.drainedCalls, 1);
  });
});
