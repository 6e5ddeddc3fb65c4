/**
 * src/protocols/smtp/session.ts through a real Listener on port 0, a raw
 * client and a small SMTP backend on loopback: the proxy's banner and the
 * commands it answers before a greeting, routing by EHLO domain (550 and
 * the dialogue goes on for an unrouted one, 421 and close for "try later")
 * or by the first RCPT domain, and the replay the backend sees.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { ResolveError } from '../../../../src/core/errors.ts';
import { EndpointHealth } from '../../../../src/core/health.ts';
import { Listener } from '../../../../src/core/listener.ts';
import type { Resolver } from '../../../../src/core/resolver.ts';
import { Router } from '../../../../src/core/router.ts';
import { SsrfGuard } from '../../../../src/core/ssrf-guard.ts';
import { createSmtpProtocol } from '../../../../src/protocols/smtp/session.ts';
import type { SmtpOptions } from '../../../../src/protocols/smtp/session.ts';

const servers: net.Server[] = [];
const listeners: Listener[] = [];
const clients: net.Socket[] = [];
/** Every command line the backend received, in order. */
const backendSaw: string[] = [];
let backendEndpoint: string;

/** A minimal SMTP server: a banner, EHLO with extensions, 250 to everything, 354 for DATA, 221 for QUIT. */
async function smtpBackend(): Promise<string> {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.write('220 backend.test ESMTP\r\n');
    let buffered = '';
    let inData = false;
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => {
      buffered += text;
      let end: number;
      while ((end = buffered.indexOf('\r\n')) >= 0) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        backendSaw.push(line);
        if (inData) {
          if (line === '.') {
            inData = false;
            socket.write('250 2.0.0 queued\r\n');
          }
        } else if (/^EHLO /i.test(line)) socket.write('250-backend.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n');
        else if (/^DATA$/i.test(line)) {
          inData = true;
          socket.write('354 go ahead\r\n');
        } else if (/^QUIT$/i.test(line)) socket.end('221 2.0.0 bye\r\n');
        else socket.write('250 2.0.0 ok\r\n');
      }
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function proxy(routeBy: SmtpOptions['routeBy']): Promise<number> {
  const resolver: Resolver = {
    resolve: (domain) => {
      if (domain === 'a.test') return { endpoint: backendEndpoint };
      if (domain === 'busy.test') throw new ResolveError('UNAVAILABLE');
      return null;
    },
  };
  const router = new Router({ sources: [{ name: 'test', resolver }], guard: new SsrfGuard({ allowPrivateBackends: true, allowBackends: [] }), cacheTtlMs: 60_000, cacheMaxEntries: 100, resolveTimeoutMs: 1000, health: new EndpointHealth() });
  const module = createSmtpProtocol({ routeBy, hostname: 'mx.proxy.test', maxLineLength: 1000, replayTimeoutMs: 2000 });
  const listener = new Listener(
    { name: 'mail', protocol: 'smtp', host: '127.0.0.1', port: 0, connectTimeoutMs: 1000, idleTimeoutMs: 0, handshakeTimeoutMs: 5000, firstResponseTimeoutMs: 0, tcpKeepAliveMs: 0, maxConnections: 0, maxOpeningBytes: 65536, reusePort: false },
    module,
    router,
    null,
    pino({ level: 'silent' }),
  );
  listeners.push(listener);
  return (await listener.listen()).port;
}

/** A raw client; `send(line)` writes it with CRLF and resolves with the next complete reply (its last line has a space after the code). */
function client(port: number): { send: (line: string) => Promise<string>; next: () => Promise<string>; closed: Promise<void> } {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  clients.push(socket);
  socket.setEncoding('latin1');
  let buffered = '';
  socket.on('data', (text: string) => (buffered += text));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const next = async (): Promise<string> => {
    for (;;) {
      const match = /^(?:\d{3}-[^\r\n]*\r\n)*\d{3}(?: [^\r\n]*)?\r\n/.exec(buffered);
      if (match !== null) {
        buffered = buffered.slice(match[0].length);
        return match[0];
      }
      if (socket.destroyed) throw new Error(`closed; left ${JSON.stringify(buffered)}`);
      await new Promise((resolve) => {
        socket.once('data', resolve);
        socket.once('close', resolve);
      });
    }
  };
  return {
    send: (line) => {
      socket.write(`${line}\r\n`);
      return next();
    },
    next,
    closed,
  };
}

before(async () => {
  backendEndpoint = await smtpBackend();
});

after(async () => {
  for (const c of clients) c.destroy();
  for (const l of listeners) {
    l.destroyAll('test over');
    await l.stopAccepting();
  }
  for (const s of servers) s.close();
});

describe('smtp session, routeBy ehlo', () => {
  it('greets with its own banner and answers NOOP, RSET, HELP, and early MAIL, before the client greets', async () => {
    const c = client(await proxy('ehlo'));
    assert.equal(await c.next(), '220 mx.proxy.test ESMTP polyproxy\r\n');
    assert.equal(await c.send('NOOP'), '250 2.0.0 OK\r\n');
    assert.equal(await c.send('RSET'), '250 2.0.0 OK\r\n');
    assert.match(await c.send('HELP'), /^214 /);
    assert.equal(await c.send('MAIL FROM:<x@y.test>'), '503 5.5.1 Send EHLO/HELO first\r\n');
    assert.match(await c.send('QUIT'), /^221 /);
    await c.closed;
  });

  it('routes by the EHLO domain, answers with the backend\'s extensions, then relays byte for byte', async () => {
    backendSaw.length = 0;
    const c = client(await proxy('ehlo'));
    await c.next();
    const ehlo = await c.send('EHLO a.test');
    assert.match(ehlo, /^250-/);
    assert.match(ehlo, /8BITMIME/);
    assert.equal(await c.send('MAIL FROM:<me@a.test>'), '250 2.0.0 ok\r\n');
    assert.equal(await c.send('RCPT TO:<you@a.test>'), '250 2.0.0 ok\r\n');
    assert.equal(await c.send('DATA'), '354 go ahead\r\n');
    assert.equal(await c.send('Subject: hi\r\n\r\n..dot-stuffed\r\n.'), '250 2.0.0 queued\r\n');
    assert.deepEqual(backendSaw, ['EHLO a.test', 'MAIL FROM:<me@a.test>', 'RCPT TO:<you@a.test>', 'DATA', 'Subject: hi', '', '..dot-stuffed', '.']);
  });

  it('an unrouted domain gets 550 and the client may greet again', async () => {
    const c = client(await proxy('ehlo'));
    await c.next();
    assert.equal(await c.send('EHLO nowhere.test'), '550 5.1.2 Mail for nowhere.test is not accepted here (not routed)\r\n');
    assert.match(await c.send('HELO a.test'), /^250 /);
  });

  it('a domain whose backend is unavailable gets 421 and the connection closes', async () => {
    const c = client(await proxy('ehlo'));
    await c.next();
    assert.equal(await c.send('EHLO busy.test'), '421 4.3.0 Service for busy.test temporarily unavailable, closing connection\r\n');
    await c.closed;
  });
});

describe('smtp session, routeBy rcpt', () => {
  it('answers EHLO and MAIL itself, routes by the first RCPT domain, and replays all three to the backend', async () => {
    backendSaw.length = 0;
    const c = client(await proxy('rcpt'));
    await c.next();
    const ehlo = await c.send('EHLO client.example');
    assert.match(ehlo, /^250[- ]mx\.proxy\.test greets client\.example/);
    assert.equal(await c.send('MAIL FROM:<me@client.example>'), '250 2.1.0 OK\r\n');
    assert.deepEqual(backendSaw, [], 'nothing routed yet');
    assert.match(await c.send('RCPT TO:<nobody@nowhere.test>'), /^550 5\.1\.2 /);
    assert.equal(await c.send('RCPT TO:<you@a.test>'), '250 2.0.0 ok\r\n');
    assert.deepEqual(backendSaw, ['EHLO client.example', 'MAIL FROM:<me@client.example>', 'RCPT TO:<you@a.test>']);
  });
});
