/**
 * Trailers from HTTP/1.1 backends to HTTP/2 clients (issue 20): a chunked
 * response's trailer fields reach the client as a trailing HEADERS frame
 * (node:http2's 'trailers'); a chunked response without trailers, and one
 * with Content-Length, end as before.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type { IncomingHttpHeaders } from 'node:http2';
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
  let cli: RunningCli;
  let port = 0;

  before(async () => {
    backend = http.createServer((req, res) => {
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
    const file = await writeConfig({
      workers: 1,
      logLevel: 'error',
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: { 'h1.test': `127.0.0.1:${(backend.address() as AddressInfo).port}` },
      listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 }],
    });
    cli = await startCli(['--config', file]);
    port = cli.port('web');
  });

  after(async () => {
    await cli?.stop();
    backend?.close();
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
});
