/**
 * The HTTP/1.1 client behind HTTP/2 streams (src/protocols/http/h2/h1-backends.ts)
 * through the real CLI: a node:http2 client → polyproxy (h2c) → HTTP/1.1
 * backends. A node:http server for what a real server sends (Content-Length
 * and chunked bodies, HEAD, 204/304, 103 Early Hints, request bodies of
 * both framings, a response cut mid-body, keep-alive reuse), and a raw TCP
 * backend only for what no real server sends on request (a body delimited
 * by the close, a connection closed before any response, a response with
 * both Content-Length and Transfer-Encoding).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type { ClientHttp2Session, IncomingHttpHeaders } from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';

const BIG = Buffer.alloc(300_000, 'abcdefghij');

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

function call(session: ClientHttp2Session, authority: string, path: string, method = 'GET', body: Buffer[] | null = null, extra: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': method, ':path': path, ':authority': authority, ...extra }, { endStream: body === null });
    let headers: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      headers = h;
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ status: Number(headers[':status']), headers, body: Buffer.concat(chunks) }));
    stream.on('error', reject);
    if (body !== null) {
      // Separate writes: the body reaches the proxy in several DATA frames.
      for (const part of body) stream.write(part);
      stream.end();
    }
  });
}

function connect(url: string): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.once('connect', () => resolve(session));
    session.once('error', reject);
  });
}

describe('HTTP/2 streams to HTTP/1.1 backends: the proxy’s own HTTP/1.1 client', () => {
  let server: http.Server;
  let raw: net.Server;
  let cli: RunningCli;
  let session: ClientHttp2Session;
  let hasty: ClientHttp2Session;
  let connections = 0;
  /** What the raw backend answers next: bytes, then close (`end`) or not. */
  let rawReply: { bytes: string; end: boolean } = { bytes: '', end: true };

  before(async () => {
    server = http.createServer((req, res) => {
      const url = req.url ?? '/';
      if (url === '/big') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BIG.length });
        res.end(BIG);
      } else if (url === '/chunked') {
        res.writeHead(200, { 'content-type': 'text/plain', 'x-multi': ['1', '2'] });
        res.write('one,');
        setImmediate(() => {
          res.write('two,');
          res.end('three');
        });
      } else if (url === '/empty') {
        res.writeHead(204);
        res.end();
      } else if (url === '/cached') {
        res.writeHead(304, { etag: '"x"' });
        res.end();
      } else if (url === '/hints') {
        res.writeEarlyHints({ link: '</s.css>; rel=preload' }, () => {
          res.writeHead(200, { 'content-length': 5 });
          res.end('hints');
        });
      } else if (url === '/echo') {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const body = Buffer.concat(chunks);
          res.writeHead(200, { 'content-length': body.length, 'x-te': req.headers['transfer-encoding'] ?? '', 'x-cl': req.headers['content-length'] ?? '' });
          res.end(body);
        });
      } else if (url === '/cut') {
        res.writeHead(200, { 'content-length': 1000 });
        res.write('partial');
        setImmediate(() => req.socket.destroy());
      } else if (url === '/conn') {
        const body = `conn ${(req.socket as net.Socket & { id?: number }).id ?? -1}`;
        res.writeHead(200, { 'content-length': Buffer.byteLength(body), connection: 'keep-alive, x-hop', 'x-hop': 'dropped', 'keep-alive': 'timeout=60' });
        res.end(body);
      } else {
        res.writeHead(200, { 'content-length': 5 });
        res.end('hello');
      }
    });
    server.on('connection', (socket: net.Socket & { id?: number }) => {
      socket.id = ++connections;
    });
    server.keepAliveTimeout = 60000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    raw = net.createServer((socket) => {
      socket.once('data', () => {
        if (rawReply.end) socket.end(rawReply.bytes);
        else socket.write(rawReply.bytes);
      });
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    const file = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: { 'node.test': `127.0.0.1:${(server.address() as AddressInfo).port}`, 'raw.test': `127.0.0.1:${(raw.address() as AddressInfo).port}` },
      listeners: [
        { name: 'h2c', protocol: 'http', host: '127.0.0.1', port: 0 },
        { name: 'hasty', protocol: 'http', host: '127.0.0.1', port: 0, backendTimeoutMs: 300 },
      ],
    });
    cli = await startCli(['--config', file]);
    session = await connect(`http://127.0.0.1:${cli.port('h2c')}`);
    hasty = await connect(`http://127.0.0.1:${cli.port('hasty')}`);
  });

  after(async () => {
    session?.destroy();
    hasty?.destroy();
    await cli?.stop();
    server?.closeAllConnections();
    server?.close();
    raw?.close();
  });

  it('a Content-Length body larger than the socket reads arrives whole', async () => {
    const r = await call(session, 'node.test', '/big');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-length'], String(BIG.length));
    assert.ok(r.body.equals(BIG));
  });

  it('a chunked body arrives decoded, without transfer-encoding; repeated fields stay repeated', async () => {
    const r = await call(session, 'node.test', '/chunked');
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'one,two,three');
    assert.equal(r.headers['transfer-encoding'], undefined);
    assert.equal(r.headers['x-multi'], '1, 2');
  });

  it('a body delimited by the close', async () => {
    rawReply = { bytes: 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nto the end', end: true };
    const r = await call(session, 'raw.test', '/');
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'to the end');
  });

  it('HEAD: the head with its content-length, no body', async () => {
    const r = await call(session, 'node.test', '/big', 'HEAD');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-length'], String(BIG.length));
    assert.equal(r.body.length, 0);
  });

  it('204 and 304 carry no body; the connection stays usable', async () => {
    const [a, b, c] = await Promise.all([call(session, 'node.test', '/empty'), call(session, 'node.test', '/cached'), call(session, 'node.test', '/')]);
    assert.equal(a.status, 204);
    assert.equal(a.body.length, 0);
    assert.equal(b.status, 304);
    assert.equal(b.headers.etag, '"x"');
    assert.equal(c.body.toString(), 'hello');
  });

  it('a 103 Early Hints interim response is skipped: the client gets the final response', async () => {
    const r = await call(session, 'node.test', '/hints');
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'hints');
  });

  it('request bodies: chunked without content-length, as they are with it', async () => {
    const parts = [Buffer.from('alpha-'), Buffer.alloc(100_000, 'b'), Buffer.from('-omega')];
    const whole = Buffer.concat(parts);
    const chunked = await call(session, 'node.test', '/echo', 'POST', parts);
    assert.equal(chunked.status, 200);
    assert.equal(chunked.headers['x-te'], 'chunked');
    assert.ok(chunked.body.equals(whole));
    const sized = await call(session, 'node.test', '/echo', 'PUT', parts, { 'content-length': String(whole.length) });
    assert.equal(sized.headers['x-te'], '');
    assert.equal(sized.headers['x-cl'], String(whole.length));
    assert.ok(sized.body.equals(whole));
  });

  it('keep-alive: sequential requests share one backend connection; Connection and the fields it names are dropped', async () => {
    const first = await call(session, 'node.test', '/conn');
    const second = await call(session, 'node.test', '/conn');
    assert.equal(first.body.toString(), second.body.toString());
    assert.equal(first.headers['x-hop'], undefined);
    assert.equal(first.headers['keep-alive'], undefined);
    assert.equal(first.headers.connection, undefined);
  });

  it('the backend closing mid-body resets that stream only', async () => {
    const cut = call(session, 'node.test', '/cut');
    await assert.rejects(cut, /ERR_HTTP2_STREAM_ERROR|stream/i);
    const ok = await call(session, 'node.test', '/');
    assert.equal(ok.body.toString(), 'hello');
  });

  it('a backend that closes before answering: 502 on that stream', async () => {
    rawReply = { bytes: '', end: true };
    const r = await call(session, 'raw.test', '/', 'GET', null, { accept: 'text/plain' });
    assert.equal(r.status, 502);
  });

  it('a response with both Content-Length and Transfer-Encoding is refused: 502', async () => {
    rawReply = { bytes: 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n', end: false };
    const r = await call(session, 'raw.test', '/', 'GET', null, { accept: 'text/plain' });
    assert.equal(r.status, 502);
  });

  it('backendTimeoutMs: a backend silent before its head gets 504; silent mid-body, the stream is reset', async () => {
    rawReply = { bytes: '', end: false };
    const started = Date.now();
    const silent = await call(hasty, 'raw.test', '/', 'GET', null, { accept: 'text/plain' });
    assert.equal(silent.status, 504);
    assert.ok(Date.now() - started >= 250, `answered after ${Date.now() - started} ms`);
    rawReply = { bytes: 'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial', end: false };
    await assert.rejects(call(hasty, 'raw.test', '/'), /ERR_HTTP2_STREAM_ERROR|stream/i);
    const ok = await call(hasty, 'node.test', '/');
    assert.equal(ok.body.toString(), 'hello');
  });
});
