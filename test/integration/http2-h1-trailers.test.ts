/**
 * Trailers across HTTP versions (issue 20): a chunked response's trailer
 * fields from an HTTP/1.1 backend reach the HTTP/2 client as a trailing
 * HEADERS frame (node:http2's 'trailers'); a chunked response without
 * trailers, and one with Content-Length, end as before. Request trailers
 * go the other way: an HTTP/2 client's trailing HEADERS reach an HTTP/1.1
 * backend as chunked trailer fields and an HTTP/2 backend as trailers, and
 * an HTTP/1.1 client's chunked trailers reach an HTTP/2 backend; fields
 * RFC 9110 §6.5.1 keeps out of trailers (authorization, content-length...)
 * are dropped on the way.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type { IncomingHttpHeaders } from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';

interface Reply {
  headers: IncomingHttpHeaders;
  body: string;
  trailers: IncomingHttpHeaders | null;
}

describe('HTTP/1.1 backend trailers to HTTP/2 clients', () => {
  let backend: http.Server;
  let h2backend: http2.Http2Server;
  let cli: RunningCli;
  let port = 0;

  before(async () => {
    backend = http.createServer((req, res) => {
      if (req.url === '/echo-trailers') {
        req.resume();
        req.on('end', () => res.end(JSON.stringify({ framing: req.headers['transfer-encoding'] ?? null, trailers: req.trailers })));
        return;
      }
      if (req.url === '/trailers') {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum, x-status' });
        res.write('part one, ');
        setImmediate(() => {
          res.addTrailers({ 'x-checksum': 'sha256=abc', 'x-status': 'done' });
          res.end('part two');
        });
        return;
      }
      if (req.url === '/chunked') {
        res.write('no ');
        res.end('trailers');
        return;
      }
      res.end('sized');
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    h2backend = http2.createServer();
    h2backend.on('stream', (stream) => {
      let trailers: IncomingHttpHeaders | null = null;
      stream.on('trailers', (t: IncomingHttpHeaders) => {
        trailers = t;
      });
      stream.resume();
      stream.on('end', () => {
        stream.respond({ ':status': 200 });
        stream.end(JSON.stringify({ trailers }));
      });
    });
    await new Promise<void>((resolve) => h2backend.listen(0, '127.0.0.1', resolve));
    const file = await writeConfig({
      workers: 1,
      logLevel: 'error',
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: { 'h1.test': `127.0.0.1:${(backend.address() as AddressInfo).port}`, 'h2.test': { endpoint: `127.0.0.1:${(h2backend.address() as AddressInfo).port}`, protocol: 'h2' } },
      listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 }],
    });
    cli = await startCli(['--config', file]);
    port = cli.port('web');
  });

  after(async () => {
    await cli?.stop();
    backend?.close();
    h2backend?.close();
  });

  function get(session: http2.ClientHttp2Session, path: string): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const stream = session.request({ ':path': path, ':authority': 'h1.test', te: 'trailers' });
      let headers: IncomingHttpHeaders = {};
      let trailers: IncomingHttpHeaders | null = null;
      let body = '';
      stream.on('response', (h) => {
        headers = h;
      });
      stream.on('trailers', (t) => {
        trailers = t;
      });
      stream.setEncoding('utf8');
      stream.on('data', (c: string) => {
        body += c;
      });
      stream.on('end', () => resolve({ headers, body, trailers }));
      stream.on('error', reject);
    });
  }

  it('chunked trailers become HTTP/2 trailers; responses without them end as before', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const [withTrailers, chunked, sized] = await Promise.all([get(session, '/trailers'), get(session, '/chunked'), get(session, '/sized')]);
      assert.equal(withTrailers.headers[':status'], 200);
      assert.equal(withTrailers.body, 'part one, part two');
      assert.equal(withTrailers.trailers?.['x-checksum'], 'sha256=abc');
      assert.equal(withTrailers.trailers?.['x-status'], 'done');
      assert.equal(chunked.body, 'no trailers');
      assert.equal(chunked.trailers, null);
      assert.equal(sized.body, 'sized');
      assert.equal(sized.trailers, null);
    } finally {
      session.close();
    }
  });

  /** A POST whose body ends with trailing HEADERS (x-checksum, and authorization, which must not pass). */
  function postWithTrailers(session: http2.ClientHttp2Session, authority: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const stream = session.request({ ':method': 'POST', ':path': '/echo-trailers', ':authority': authority }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'sha256=def', authorization: 'Bearer nope' }));
      let body = '';
      stream.setEncoding('utf8');
      stream.on('data', (c: string) => {
        body += c;
      });
      stream.on('end', () => resolve(body));
      stream.on('error', reject);
      stream.end('request body');
    });
  }

  it('an HTTP/2 client’s request trailers reach an HTTP/1.1 backend as chunked trailers and an HTTP/2 backend as trailers', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const h1 = JSON.parse(await postWithTrailers(session, 'h1.test')) as { framing: string | null; trailers: Record<string, string> };
      assert.equal(h1.framing, 'chunked');
      assert.deepEqual(h1.trailers, { 'x-checksum': 'sha256=def' });
      const h2 = JSON.parse(await postWithTrailers(session, 'h2.test')) as { trailers: Record<string, string> | null };
      assert.equal(h2.trailers?.['x-checksum'], 'sha256=def');
      assert.equal(h2.trailers?.authorization, undefined);
    } finally {
      session.close();
    }
  });

  it('an HTTP/1.1 client’s chunked trailers reach an HTTP/2 backend on an h2 route', async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      let got = '';
      socket.setEncoding('latin1');
      socket.on('data', (c: string) => {
        got += c;
        if (/\r\n\r\n[\s\S]*\}/.test(got)) {
          socket.destroy();
          resolve(got);
        }
      });
      socket.on('error', reject);
      socket.on('end', () => reject(new Error(`closed without a whole answer: ${JSON.stringify(got)}`)));
      socket.write('POST /echo-trailers HTTP/1.1\r\nHost: h2.test\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: sha256=ghi\r\nAuthorization: Bearer nope\r\n\r\n');
    });
    assert.match(reply, /^HTTP\/1\.1 200 /);
    const body = JSON.parse(reply.slice(reply.indexOf('{'))) as { trailers: Record<string, string> | null };
    assert.equal(body.trailers?.['x-checksum'], 'sha256=ghi');
    assert.equal(body.trailers?.authorization, undefined);
  });
});
