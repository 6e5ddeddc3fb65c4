/**
 * HTTP/1.1 clients on `protocol: h2` routes (issue 20): the request goes to
 * the h2-only backend as an HTTP/2 stream and the response comes back as
 * HTTP/1.1 — chunked when the backend gave no length, HTTP/2 trailers as
 * chunked trailers only for a client that said `TE: trailers`. The backend
 * is a bare node:http2 server (h2c, no HTTP/1.1 fallback). A connection
 * that reached an h2 route keeps serving the client's later requests,
 * whatever route they take; failures are the HTTP/1.1 status table.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Client } from 'undici';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';

const execFileAsync = promisify(execFile);

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('HTTP/1.1 clients on protocol: h2 routes', () => {
  let h2Backend: http2.Http2Server;
  let h1Backend: http.Server;
  let cli: RunningCli;
  let port = 0;

  before(async () => {
    h2Backend = http2.createServer();
    h2Backend.on('stream', (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        const path = String(headers[':path']);
        const seen = `${String(headers[':method'])} ${path} authority=${String(headers[':authority'])} xff=${String(headers['x-forwarded-for'])} te=${String(headers.te)} body=${body}`;
        if (path === '/trailers') {
          stream.respond({ ':status': 200, 'content-type': 'text/plain' }, { waitForTrailers: true });
          stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'abc123', 'grpc-status': '0' }));
          stream.end(seen);
          return;
        }
        if (path === '/slow') {
          setTimeout(() => {
            stream.respond({ ':status': 200 });
            stream.end('slow done');
          }, 400);
          return;
        }
        if (path === '/length') {
          stream.respond({ ':status': 201, 'content-length': String(Buffer.byteLength(seen)), 'x-h2': 'yes' });
          stream.end(seen);
          return;
        }
        // No content-length: the HTTP/1.1 side chunks it.
        stream.respond({ ':status': 200, 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'] });
        if (headers[':method'] === 'HEAD') stream.end();
        else {
          stream.write(seen.slice(0, 5));
          setImmediate(() => stream.end(seen.slice(5)));
        }
      });
    });
    await new Promise<void>((resolve) => h2Backend.listen(0, '127.0.0.1', resolve));
    h1Backend = http.createServer((req, res) => {
      if (req.url === '/echo-trailers') {
        // The request body back, chunked, with trailer fields after it.
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          res.writeHead(200, { trailer: 'x-length' });
          res.write(`${String(req.headers['content-length'])}/${String(req.headers['transfer-encoding'])}:`);
          res.addTrailers({ 'x-length': String(Buffer.concat(chunks).length) });
          res.end(Buffer.concat(chunks));
        });
        return;
      }
      res.end(`h1 backend: ${String(req.method)} ${String(req.url)} host=${String(req.headers.host)} xff=${String(req.headers['x-forwarded-for'])}`);
    });
    await new Promise<void>((resolve) => h1Backend.listen(0, '127.0.0.1', resolve));
    const file = await writeConfig({
      workers: 1,
      logLevel: 'error',
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: {
        'h2.test': { endpoint: `127.0.0.1:${(h2Backend.address() as AddressInfo).port}`, protocol: 'h2' },
        'h1.test': `127.0.0.1:${(h1Backend.address() as AddressInfo).port}`,
        'down.test': { endpoint: `127.0.0.1:${await deadPort()}`, protocol: 'h2' },
      },
      listeners: [
        { name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 },
        { name: 'quick', protocol: 'http', host: '127.0.0.1', port: 0, requestTimeoutMs: 500 },
      ],
    });
    cli = await startCli(['--config', file]);
    port = cli.port('web');
  });

  after(async () => {
    await cli?.stop();
    h2Backend?.close();
    h1Backend?.closeAllConnections();
    h1Backend?.close();
  });

  it('curl --http1.1 GET: the h2-only backend answers, chunked back (no length), X-Forwarded-For set', async () => {
    const { stdout } = await execFileAsync('/usr/bin/curl', ['-sS', '--http1.1', '-D', '-', '-H', 'Host: h2.test', `http://127.0.0.1:${port}/page?q=1`]);
    const [head, body] = stdout.split('\r\n\r\n');
    assert.match(head as string, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(head as string, /\r\ntransfer-encoding: chunked/i);
    assert.match(head as string, /\r\nset-cookie: a=1\r\nset-cookie: b=2/i);
    assert.equal(body, 'GET /page?q=1 authority=h2.test xff=127.0.0.1 te=undefined body=');
  });

  it('curl --http1.1 POST with a chunked body, and a response with Content-Length; HEAD', async () => {
    const posted = await new Promise<string>((resolve, reject) => {
      const child = execFile('/usr/bin/curl', ['-sS', '--http1.1', '-D', '-', '-H', 'Host: h2.test', '-H', 'Transfer-Encoding: chunked', '--data-binary', '@-', `http://127.0.0.1:${port}/length`], (err, stdout) => (err === null ? resolve(stdout) : reject(err)));
      child.stdin?.end('hello chunked world');
    });
    const [head, body] = posted.split('\r\n\r\n');
    assert.match(head as string, /^HTTP\/1\.1 201 Created\r\n/);
    assert.match(head as string, /\r\ncontent-length: \d+/i);
    assert.match(head as string, /\r\nx-h2: yes/i);
    assert.equal(body, 'POST /length authority=h2.test xff=127.0.0.1 te=undefined body=hello chunked world');
    const { stdout } = await execFileAsync('/usr/bin/curl', ['-sS', '--http1.1', '-I', '-H', 'Host: h2.test', `http://127.0.0.1:${port}/`]);
    assert.match(stdout, /^HTTP\/1\.1 200 OK\r\n/);
  });

  it('HTTP/2 trailers: chunked trailers for a client that sent TE: trailers, none for one that did not', async () => {
    const get = (te: boolean): Promise<{ body: string; trailers: NodeJS.Dict<string> }> =>
      new Promise((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/trailers', headers: { host: 'h2.test', ...(te ? { te: 'trailers' } : {}) }, agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            body += c;
          });
          res.on('end', () => resolve({ body, trailers: res.trailers }));
        });
        req.on('error', reject);
      });
    const wanted = await get(true);
    assert.equal(wanted.body, 'GET /trailers authority=h2.test xff=127.0.0.1 te=trailers body=');
    assert.deepEqual(wanted.trailers, { 'x-checksum': 'abc123', 'grpc-status': '0' });
    const plain = await get(false);
    assert.deepEqual(plain.trailers, {});
  });

  it('undici, one keep-alive connection: an h2 route, then an HTTP/1.1 route, then the h2 route again; unknown host 404; backend down 502', async () => {
    const client = new Client(`http://127.0.0.1:${port}`, { pipelining: 1 });
    try {
      const a = await client.request({ path: '/one', method: 'POST', headers: { host: 'h2.test' }, body: 'x'.repeat(100_000) });
      assert.equal(a.statusCode, 200);
      assert.equal(await a.body.text(), `POST /one authority=h2.test xff=127.0.0.1 te=undefined body=${'x'.repeat(100_000)}`);
      const b = await client.request({ path: '/two', method: 'GET', headers: { host: 'h1.test' } });
      assert.equal(await b.body.text(), 'h1 backend: GET /two host=h1.test xff=127.0.0.1');
      const c = await client.request({ path: '/three', method: 'GET', headers: { host: 'h2.test' } });
      assert.equal(await c.body.text(), 'GET /three authority=h2.test xff=127.0.0.1 te=undefined body=');
      // The HTTP/1.1 route on the bridged connection: request bodies with a length and chunked, the backend's chunked trailers for a client that sent TE: trailers.
      const sized = await client.request({ path: '/echo-trailers', method: 'POST', headers: { host: 'h1.test', te: 'trailers' }, body: 'y'.repeat(70_000) });
      assert.equal(await sized.body.text(), `70000/undefined:${'y'.repeat(70_000)}`);
      assert.deepEqual(sized.trailers, { 'x-length': '70000' });
      const chunked = await client.request({ path: '/echo-trailers', method: 'POST', headers: { host: 'h1.test' }, body: Readable.from([Buffer.from('a'.repeat(1000)), Buffer.from('b')]) });
      assert.equal(await chunked.body.text(), `undefined/chunked:${'a'.repeat(1000)}b`);
      assert.deepEqual(chunked.trailers, {});
      const missing = await client.request({ path: '/', method: 'GET', headers: { host: 'nobody.test', accept: 'application/json' } });
      assert.equal(missing.statusCode, 404);
      assert.equal(missing.headers['x-polyproxy-error'], 'PP_ERR_NOT_FOUND');
      await missing.body.dump();
    } finally {
      await client.close();
    }
    const down = new Client(`http://127.0.0.1:${port}`);
    try {
      const r = await down.request({ path: '/', method: 'GET', headers: { host: 'down.test' } });
      assert.equal(r.statusCode, 502);
      assert.equal(r.headers['x-polyproxy-error'], 'PP_ERR_BACKEND_UNREACHABLE');
      await r.body.dump();
    } finally {
      await down.close();
    }
  });
  it('a later request on a bridged connection with more than maxHeaders fields gets 431 and is not forwarded; one at the limit passes', async () => {
    const client = new Client(`http://127.0.0.1:${port}`, { pipelining: 1 });
    const fields = (n: number): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-f${i}`, String(i)]));
    try {
      // The first request bridges the connection; node:http parses the ones after it.
      const first = await client.request({ path: '/first', method: 'GET', headers: { host: 'h2.test' } });
      assert.equal(first.statusCode, 200);
      await first.body.dump();
      // Host, undici's Connection and 98 more = 100 fields (the listener's default maxHeaders): forwarded.
      const atLimit = await client.request({ path: '/at-limit', method: 'GET', headers: { host: 'h2.test', ...fields(98) } });
      assert.equal(atLimit.statusCode, 200);
      assert.match(await atLimit.body.text(), /^GET \/at-limit /);
      // 101: refused, as the listener's own parser refuses a first request like it.
      const over = await client.request({ path: '/over', method: 'GET', headers: { host: 'h2.test', ...fields(99) } });
      assert.equal(over.statusCode, 431);
      await over.body.dump();
    } finally {
      await client.close();
    }
  });
  it('a later request head on a bridged connection must arrive within requestTimeoutMs: 408 and closed, as on the listener itself', async () => {
    const socket = net.connect(cli.port('quick'), '127.0.0.1');
    let received = '';
    socket.on('data', (d: Buffer) => {
      received += d.toString('latin1');
    });
    const closed = once(socket, 'close');
    socket.write('GET /first HTTP/1.1\r\nHost: h2.test\r\n\r\n');
    const deadline = Date.now() + 5000;
    while (!received.includes('body=') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.match(received, /^HTTP\/1\.1 200 /);
    // Half a head, then silence.
    const started = Date.now();
    socket.write('GET /second HTTP/1.1\r\nHost: h2.test\r\n');
    const gaveUp = new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('the bridged connection was not closed within 5 s')), 5000).unref());
    try {
      await Promise.race([closed, gaveUp]);
    } finally {
      socket.destroy();
    }
    const took = Date.now() - started;
    assert.match(received, /HTTP\/1\.1 408 /);
    assert.ok(took >= 400 && took < 3000, `closed after ${took} ms`);
  });

  // Last: it stops the proxy.
  it('SIGTERM: a bridged request in flight finishes, answered with Connection: close, and the proxy exits', async () => {
    const reply = new Promise<{ status: number; connection: string | undefined; body: string }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/slow', headers: { host: 'h2.test' }, agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            body += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body }));
        })
        .on('error', reject);
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const stopped = cli.stop();
    const r = await reply;
    assert.equal(r.status, 200);
    assert.equal(r.body, 'slow done');
    assert.equal(r.connection, 'close');
    await stopped;
  });
});
