/**
 * The http listener through the real CLI, with real node:http backends and
 * real clients (undici, fetch, curl, ws): Host routing (exact, wildcard),
 * every error status, smuggling attempts over raw sockets answered 400 (and
 * a fresh connection still works), HEAD/204/304 framing on one keep-alive
 * connection, 100-continue, a WebSocket echo, 64 MB each way checked by
 * sha256, and pool reuse counted by backend 'connection' events.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Pool, request } from 'undici';
import { WebSocket, WebSocketServer } from 'ws';
import { ROOT, startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';

const execFileAsync = promisify(execFile);
const MB = 1024 * 1024;
const BIG = 64 * MB;

interface Backend {
  server: http.Server;
  endpoint: string;
  connections: number;
}

/** A backend that names itself, echoes what it was asked, and serves the framing cases. */
async function startBackend(tag: string): Promise<Backend> {
  const backend: Backend = { server: http.createServer(), endpoint: '', connections: 0 };
  const server = backend.server;
  server.keepAliveTimeout = 60000;
  server.on('connection', () => backend.connections++);
  server.on('request', (req, res) => {
    const url = req.url ?? '/';
    if (url === '/hash') {
      // Hashes a streamed upload.
      const hash = createHash('sha256');
      let n = 0;
      req.on('data', (chunk: Buffer) => {
        n += chunk.length;
        hash.update(chunk);
      });
      req.on('end', () => res.end(JSON.stringify({ bytes: n, sha256: hash.digest('hex') })));
      return;
    }
    if (url.startsWith('/download')) {
      // 64 MB, deterministic, chunked (no Content-Length), with backpressure.
      const block = Buffer.alloc(MB);
      let sent = 0;
      const pump = (): void => {
        while (sent < BIG) {
          block.fill(sent / MB);
          sent += MB;
          if (!res.write(Buffer.from(block))) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    if (url === '/204') {
      res.writeHead(204).end();
      return;
    }
    if (url === '/304') {
      res.writeHead(304, { etag: '"x"' }).end();
      return;
    }
    if (url === '/hang') return; // never answers: the backend timeout's case
    if (url === '/reset') {
      req.socket.destroy();
      return;
    }
    const body = JSON.stringify({ tag, url, host: req.headers.host, xff: req.headers['x-forwarded-for'], proto: req.headers['x-forwarded-proto'], xfh: req.headers['x-forwarded-host'], connection: req.headers.connection ?? null });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'keep-alive': 'timeout=60' });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (data, binary) => ws.send(binary ? data : `${tag}:${String(data)}`)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  backend.endpoint = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return backend;
}

/** Writes raw bytes on a fresh connection and reads until the proxy closes (or `ms` pass). */
function raw(port: number, bytes: string | Buffer, ms = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let got = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(got);
    }, ms);
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => {
      got += text;
    });
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    socket.write(bytes);
  });
}

describe('http listener', () => {
  let a: Backend;
  let b: Backend;
  /** Only on a lone route: its deliberate hangs and resets do not open the breaker of A or B (balanced over in both.test). */
  let c: Backend;
  let cli: RunningCli;
  let port = 0;
  let base = '';

  before(async () => {
    a = await startBackend('A');
    b = await startBackend('B');
    c = await startBackend('C');
    const file = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      security: { allowBackends: ['127.0.0.0/8'] },
      resolver: { module: path.join(ROOT, 'test/fixtures/http-errors-resolver.ts') },
      routes: {
        'a.test': a.endpoint,
        '*.b.test': b.endpoint,
        'both.test': [a.endpoint, b.endpoint],
        'c.test': c.endpoint,
        'refused.test': '127.0.0.1:1',
      },
      listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: 0, backendTimeoutMs: 1000, requestTimeoutMs: 1000 }],
    });
    cli = await startCli(['--config', file]);
    port = cli.port('web');
    base = `http://127.0.0.1:${port}`;
  });

  after(async () => {
    await cli?.stop();
    for (const backend of [a, b, c]) {
      backend?.server.closeAllConnections();
      backend?.server.close();
    }
  });

  async function get(host: string, url = '/', headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
    const res = await request(`${base}${url}`, { headers: { host, ...headers } });
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
  }

  it('routes by Host: exact and wildcard, with X-Forwarded-* and hop-by-hop headers stripped', async () => {
    const one = await get('a.test', '/x', { connection: 'keep-alive, x-secret', 'x-secret': 'hop', 'x-forwarded-for': '10.0.0.1' });
    assert.equal(one.status, 200);
    const seen = JSON.parse(one.body) as Record<string, unknown>;
    assert.deepEqual(seen, { tag: 'A', url: '/x', host: 'a.test', xff: '10.0.0.1, 127.0.0.1', proto: 'http', xfh: 'a.test', connection: null });
    assert.equal(one.headers['keep-alive'], undefined, 'hop-by-hop response header removed');
    const two = JSON.parse((await get('API.B.test:8080', '/y')).body) as Record<string, unknown>;
    assert.equal(two.tag, 'B');
    assert.equal(two.host, 'API.B.test:8080');
    const tags = new Set<unknown>();
    for (let i = 0; i < 4; i++) tags.add((JSON.parse((await get('both.test')).body) as { tag: string }).tag);
    assert.deepEqual([...tags].sort(), ['A', 'B'], 'a balanced list uses both backends');
  });

  it('answers each failure with its status, as HTML or JSON', async () => {
    const cases: Array<[string, string, number]> = [
      ['nowhere.test', '/', 404],
      ['forbidden.test', '/', 403],
      ['down.test', '/', 503],
      ['slowresolve.test', '/', 504],
      ['c.test', '/hang', 504],
      ['refused.test', '/', 502],
      ['c.test', '/reset', 502],
    ];
    for (const [host, url, status] of cases) {
      const html = await get(host, url);
      assert.equal(html.status, status, `${host}${url}`);
      assert.match(String(html.headers['content-type']), /text\/html/);
      assert.match(html.body, new RegExp(`<h1>${status} `));
      const json = await get(host, url, { accept: 'application/json' });
      assert.equal(json.status, status);
      assert.equal((JSON.parse(json.body) as { error: { status: number } }).error.status, status);
    }
    // fetch (undici's WHATWG client) cannot set Host: it sends 127.0.0.1, which nothing routes.
    const res = await fetch(`${base}/`);
    assert.equal(res.status, 404);
    await res.text();
  });

  it('refuses smuggling and header injection with 400, and a fresh connection still works', async () => {
    const attempts = [
      'POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde',
      'POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a.test\r\nX-A: one\r\n two\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a.test\r\nX-A: o\0ne\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a.test\r\nX-A: o\rne\r\n\r\n',
      'GET / HTTP/1.1\nHost: a.test\n\n',
      'GET / HTTP/1.1\r\nHost: a.test\r\nX A: b\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.b.test\r\n\r\n',
      'GET / HTTP/1.1\r\n\r\n',
      'GET /a b HTTP/1.1\r\nHost: a.test\r\n\r\n',
      // Issue 15: 0xA0 next to framing values, repeated Content-Lengths, chunk extensions outside the grammar.
      'POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: \xa0chunked\r\n\r\n0\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip,\xa0chunked\xa0\r\n\r\n0\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\xa0\r\n\r\nabcde',
      'POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5, 5\r\n\r\nabcde',
      'POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nabcde',
      'POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n2;\r\nab\r\n0\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n2;a="b\r\nab\r\n0\r\n\r\n',
      'GET http://user@a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n',
    ];
    for (const attempt of attempts) {
      const answer = await raw(port, Buffer.from(attempt, 'latin1'));
      assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/, JSON.stringify(attempt));
      assert.match(answer, /connection: close/);
      // The proxy's own page, not a backend's 400 passed through.
      assert.match(answer, /x-polyproxy-error: PP_ERR_PROTOCOL\r\n/, JSON.stringify(attempt));
      const after = await get('a.test', '/after');
      assert.equal(after.status, 200);
    }
    const big = await raw(port, `GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: ${'x'.repeat(70 * 1024)}\r\n\r\n`);
    assert.match(big, /^HTTP\/1\.1 431 /);
  });

  it('routes an absolute-form request by its target, which the backend gets in origin form with that Host (issue 15)', async () => {
    // Routed by Host, this went to a.test's backend, which acts on the target's authority (RFC 9112 §3.2.2).
    const suspended = await raw(port, 'GET http://forbidden.test/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n');
    assert.match(suspended, /^HTTP\/1\.1 403 /);
    const routed = await raw(port, 'GET HTTP://A.test:8080/abs?x=1 HTTP/1.1\r\nHost: nowhere.test\r\nConnection: close\r\n\r\n');
    assert.match(routed, /^HTTP\/1\.1 200 /);
    const seen = JSON.parse(routed.slice(routed.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
    assert.deepEqual([seen.tag, seen.url, seen.host, seen.xfh], ['A', '/abs?x=1', 'A.test:8080', 'A.test:8080']);
    // Asterisk form: routed by Host, forwarded as is. CONNECT: no tunnels (501).
    const star = await raw(port, 'OPTIONS * HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n');
    assert.match(star, /"tag":"A","url":"\*"/);
    const connect = await raw(port, 'CONNECT forbidden.test:443 HTTP/1.1\r\nHost: a.test\r\n\r\n');
    assert.match(connect, /^HTTP\/1\.1 501 Not Implemented\r\n/);
    assert.match(connect, /x-polyproxy-error: PP_ERR_PROTOCOL\r\n/);
  });

  it('keeps framing right for HEAD, 204 and 304 on one keep-alive connection, pipelined', async () => {
    const before = a.connections;
    const reqs = ['HEAD /h', 'GET /204', 'GET /304', 'GET /last'].map((line) => `${line} HTTP/1.1\r\nHost: a.test\r\n\r\n`).join('');
    const answer = await raw(port, reqs, 1500);
    const statuses = [...answer.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => m[1]);
    assert.deepEqual(statuses, ['200', '204', '304', '200']);
    assert.match(answer, /"url":"\/last"/);
    assert.ok(!answer.includes('"url":"/h"'), 'no body after HEAD');
    assert.equal(a.connections - before <= 1, true);
  });

  it('times out a request head that does not complete with 408', async () => {
    const answer = await raw(port, 'GET / HTTP/1.1\r\nHost: a.t', 4000);
    assert.match(answer, /^HTTP\/1\.1 408 /);
  });

  it('reuses pooled backend connections: 100 sequential requests, few backend connections', async () => {
    const pool = new Pool(base, { connections: 1 });
    const before = b.connections;
    for (let i = 0; i < 100; i++) {
      const res = await pool.request({ path: `/n${i}`, method: 'GET', headers: { host: 'pool.b.test' } });
      assert.equal(res.statusCode, 200);
      await res.body.text();
    }
    await pool.close();
    assert.ok(b.connections - before <= 2, `backend saw ${b.connections - before} connections`);
  });

  it('streams a 64 MB upload and a 64 MB download, checked by sha256', async () => {
    const sent = createHash('sha256');
    let left = BIG;
    const upload = Readable.from(
      (function* () {
        while (left > 0) {
          const chunk = randomBytes(Math.min(MB, left));
          left -= chunk.length;
          sent.update(chunk);
          yield chunk;
        }
      })(),
    );
    const up = await request(`${base}/hash`, { method: 'POST', headers: { host: 'a.test' }, body: upload });
    const result = (await up.body.json()) as { bytes: number; sha256: string };
    assert.equal(result.bytes, BIG);
    assert.equal(result.sha256, sent.digest('hex'));

    const down = await request(`${base}/download`, { headers: { host: 'a.test' } });
    assert.equal(down.headers['transfer-encoding'], 'chunked');
    const got = createHash('sha256');
    let n = 0;
    for await (const chunk of down.body) {
      got.update(chunk as Buffer);
      n += (chunk as Buffer).length;
    }
    const expected = createHash('sha256');
    for (let i = 0; i < BIG / MB; i++) expected.update(Buffer.alloc(MB, i));
    assert.equal(n, BIG);
    assert.equal(got.digest('hex'), expected.digest('hex'));
  });

  it('reads a body sent with its head only once the backend is there (first request to a host: routed and connected asynchronously)', async () => {
    // Head and a 400 KiB body in one write: the proxy must not take the body for pipelined bytes.
    const body = randomBytes(400 * 1024);
    const head = `POST /hash HTTP/1.1\r\nHost: upload.b.test\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
    const answer = await raw(port, Buffer.concat([Buffer.from(head, 'latin1'), body]));
    assert.match(answer, /^HTTP\/1\.1 200 /);
    const result = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { bytes: number; sha256: string };
    assert.equal(result.bytes, body.length);
    assert.equal(result.sha256, createHash('sha256').update(body).digest('hex'));
  });

  it('works with curl, including Expect: 100-continue on an upload', async () => {
    const { stdout } = await execFileAsync('/usr/bin/curl', ['-sS', '-H', 'Host: a.test', `${base}/curl`]);
    assert.equal((JSON.parse(stdout) as { url: string }).url, '/curl');
    const body = randomBytes(2 * MB);
    const file = path.join(await (await import('node:fs/promises')).mkdtemp(path.join((await import('node:os')).tmpdir(), 'pp-http-')), 'body.bin');
    await (await import('node:fs/promises')).writeFile(file, body);
    const { stdout: out, stderr } = await execFileAsync('/usr/bin/curl', ['-sS', '-v', '-H', 'Host: a.test', '-H', 'Expect: 100-continue', '--data-binary', `@${file}`, `${base}/hash`]);
    assert.match(stderr, /HTTP\/1\.1 100 Continue/);
    assert.equal((JSON.parse(out) as { sha256: string }).sha256, createHash('sha256').update(body).digest('hex'));
  });

  it('passes a WebSocket upgrade through to the routed backend (ws echo)', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/chat`, { headers: { host: 'chat.b.test' } });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const replies: string[] = [];
    const done = new Promise<void>((resolve) => {
      ws.on('message', (data) => {
        replies.push(String(data));
        if (replies.length === 3) resolve();
      });
    });
    for (const m of ['one', 'two', 'three']) ws.send(m);
    await done;
    assert.deepEqual(replies, ['B:one', 'B:two', 'B:three']);
    const big = randomBytes(3 * MB);
    const echoed = new Promise<Buffer>((resolve) => ws.once('message', (data) => resolve(data as Buffer)));
    ws.send(big);
    assert.ok((await echoed).equals(big));
    ws.close();
    await new Promise((resolve) => ws.once('close', resolve));
  });
});
