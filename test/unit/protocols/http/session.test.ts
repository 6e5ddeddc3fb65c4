/**
 * src/protocols/http/session.ts, the per-connection coordinator, through a
 * real Listener on port 0 with raw client bytes and node:http backends:
 * each keep-alive request routed on its own Host, bodies streamed, the
 * request-head (408), keep-alive and backend (504) deadlines, a 101 handing
 * both sockets to the relay; and normalizeHost.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { EndpointHealth } from '../../../../src/core/health.ts';
import { Listener } from '../../../../src/core/listener.ts';
import type { ListenerSettings } from '../../../../src/core/listener.ts';
import type { Resolver } from '../../../../src/core/resolver.ts';
import { Router } from '../../../../src/core/router.ts';
import { SsrfGuard } from '../../../../src/core/ssrf-guard.ts';
import { createHttpProtocol } from '../../../../src/protocols/http/connection.ts';
import type { HttpProtocolOptions } from '../../../../src/protocols/http/connection.ts';
import { normalizeHost } from '../../../../src/protocols/http/session.ts';

const servers: Array<net.Server | http.Server> = [];
const listeners: Listener[] = [];
const clients: net.Socket[] = [];
let hosts: Record<string, string>;

/** A backend answering `<name> <method> <url> <body>`; /slow never answers; upgrades echo. */
async function backend(name: string): Promise<string> {
  const server = http.createServer((req, res) => {
    if (req.url === '/slow') return;
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (text: string) => (body += text));
    req.on('end', () => {
      const text = `${name} ${req.method} ${req.url} ${body}`;
      res.writeHead(200, { 'content-length': Buffer.byteLength(text), 'x-forwarded-host': String(req.headers['x-forwarded-host']) });
      res.end(text);
    });
  });
  server.on('upgrade', (_req, socket: net.Socket, head: Buffer) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function proxy(options: HttpProtocolOptions = {}): Promise<number> {
  const resolver: Resolver = { resolve: (host) => (hosts[host] === undefined ? null : { endpoint: hosts[host] }) };
  const router = new Router({ sources: [{ name: 'test', resolver }], guard: new SsrfGuard({ allowPrivateBackends: true, allowBackends: [] }), cacheTtlMs: 60_000, cacheMaxEntries: 100, resolveTimeoutMs: 1000, health: new EndpointHealth() });
  const settings: ListenerSettings = { name: 'web', protocol: 'http', host: '127.0.0.1', port: 0, connectTimeoutMs: 1000, idleTimeoutMs: 0, handshakeTimeoutMs: 5000, firstResponseTimeoutMs: 0, tcpKeepAliveMs: 0, maxConnections: 0, maxOpeningBytes: 65536, reusePort: false };
  const listener = new Listener(settings, createHttpProtocol(options), router, null, pino({ level: 'silent' }));
  listeners.push(listener);
  return (await listener.listen()).port;
}

/** A raw client: `text()` is everything received so far; `until(pattern)` waits for it. */
function client(port: number): { socket: net.Socket; text: () => string; until: (pattern: RegExp) => Promise<string>; closed: Promise<void> } {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  clients.push(socket);
  let got = '';
  socket.setEncoding('latin1');
  socket.on('data', (text: string) => (got += text));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    socket,
    text: () => got,
    until: async (pattern) => {
      while (!pattern.test(got)) {
        if (socket.destroyed) throw new Error(`closed before ${String(pattern)}; got ${JSON.stringify(got)}`);
        await new Promise((resolve) => {
          socket.once('data', resolve);
          socket.once('close', resolve);
        });
      }
      return got;
    },
    closed,
  };
}

before(async () => {
  hosts = { 'a.test': await backend('A'), 'b.test': await backend('B') };
});

after(async () => {
  for (const c of clients) c.destroy();
  for (const l of listeners) {
    l.destroyAll('test over');
    await l.stopAccepting();
  }
  for (const s of servers) {
    if (s instanceof http.Server) s.closeAllConnections();
    s.close();
  }
});

describe('http session', () => {
  it('routes each keep-alive request on its own Host, in order, on one connection', async () => {
    const c = client(await proxy());
    c.socket.write('GET /one HTTP/1.1\r\nHost: A.test:8080\r\n\r\nGET /two HTTP/1.1\r\nHost: b.test\r\n\r\n');
    const text = await c.until(/B GET \/two $/);
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nA GET \/one HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nB GET \/two $/);
    assert.match(text, /x-forwarded-host: A\.test:8080/i);
    assert.equal(c.socket.destroyed, false, 'kept alive');
  });

  it('streams a request body framed by Content-Length and by chunked', async () => {
    const c = client(await proxy());
    c.socket.write('POST /p HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhel');
    c.socket.write('lo');
    await c.until(/A POST \/p hello$/);
    c.socket.write('POST /c HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n');
    c.socket.write('2\r\nde\r\n0\r\n\r\n');
    await c.until(/A POST \/c abcde$/);
  });

  it('an unrouted Host gets the 404 page; a request without Host gets 400', async () => {
    const port = await proxy();
    const c = client(port);
    c.socket.write('GET / HTTP/1.1\r\nHost: nobody.test\r\n\r\n');
    assert.match(await c.until(/\r\n\r\n/), /^HTTP\/1\.1 404 /);
    const d = client(port);
    d.socket.write('GET / HTTP/1.1\r\n\r\n');
    assert.match(await d.until(/\r\n\r\n/), /^HTTP\/1\.1 400 /);
  });

  it('a head not finished within requestTimeoutMs gets 408; an idle keep-alive connection closes quietly', async () => {
    const port = await proxy({ requestTimeoutMs: 100, keepAliveTimeoutMs: 100 });
    const partial = client(port);
    partial.socket.write('GET / HTTP/1.1\r\nHost: a.te');
    await partial.closed;
    assert.match(partial.text(), /^HTTP\/1\.1 408 /);
    const idle = client(port);
    idle.socket.write('GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n');
    await idle.until(/A GET \/x $/);
    const answered = idle.text();
    await idle.closed;
    assert.equal(idle.text(), answered, 'nothing more was written before the close');
  });

  it('a backend silent past backendTimeoutMs gets 504', async () => {
    const c = client(await proxy({ backendTimeoutMs: 150 }));
    const started = Date.now();
    c.socket.write('GET /slow HTTP/1.1\r\nHost: a.test\r\n\r\n');
    assert.match(await c.until(/\r\n\r\n/), /^HTTP\/1\.1 504 /);
    assert.ok(Date.now() - started >= 140);
  });

  it('a 101 answer hands both sockets to the relay: bytes flow both ways after it', async () => {
    const c = client(await proxy());
    c.socket.write('GET /ws HTTP/1.1\r\nHost: b.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
    await c.until(/^HTTP\/1\.1 101 /);
    await c.until(/\r\n\r\n/);
    c.socket.write('ping over the relay');
    await c.until(/ping over the relay$/);
  });
});

describe('normalizeHost', () => {
  it('lowercases, strips the port and a trailing dot, refuses junk', () => {
    assert.equal(normalizeHost('Example.COM:8080'), 'example.com');
    assert.equal(normalizeHost('[::1]:80'), '[::1]');
    assert.equal(normalizeHost('a.test.'), 'a.test');
    assert.equal(normalizeHost('a/b'), undefined);
    assert.equal(normalizeHost(''), undefined);
    assert.equal(normalizeHost('a:b'), undefined);
    assert.equal(normalizeHost(undefined), undefined);
  });
});
