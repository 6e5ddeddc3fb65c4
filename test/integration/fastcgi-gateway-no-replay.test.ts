/**
 * The FastCGI gateway under core's retry rule (issue 15): a request on a
 * kept FCGI_KEEP_CONN connection that the application closes after reading
 * it, before any output (a php-fpm worker recycled, or crashed, as the
 * request arrived). A POST or PATCH may have run: 502, and the application
 * saw it once. A GET is sent once more on a fresh connection and succeeds.
 *
 * The backend is a raw FastCGI responder on node:net: it answers a
 * connection's first request; a later request on the same connection is
 * read whole and the connection closed without a record.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { decodeNameValuePairs } from '../../src/fastcgi/name-value.ts';
import { FCGI_BEGIN_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT, RecordParser, encodeEndRequest, encodeRecord } from '../../src/fastcgi/records.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';

/** `METHOD uri` → times the application read it. */
const seen = new Map<string, number>();
let backend: net.Server;
let cli: RunningCli;

function startResponder(): Promise<net.Server> {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    let served = 0;
    let params: Buffer[] = [];
    const parser = new RecordParser((type, _id, content) => {
      if (type === FCGI_BEGIN_REQUEST) params = [];
      else if (type === FCGI_PARAMS && content.length > 0) params.push(Buffer.from(content));
      else if (type === FCGI_STDIN && content.length === 0) {
        const p = decodeNameValuePairs(Buffer.concat(params));
        const key = `${p.get('REQUEST_METHOD')} ${p.get('REQUEST_URI')}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
        served++;
        if (served > 1 && (p.get('REQUEST_URI') ?? '').startsWith('/drop')) {
          socket.destroy(); // read, maybe run, never answered
          return;
        }
        socket.write(Buffer.concat([encodeRecord(FCGI_STDOUT, 1, Buffer.from(`Content-Type: text/plain\r\n\r\nok ${key}`)), encodeRecord(FCGI_STDOUT, 1), encodeEndRequest(1, 0)]));
      }
    });
    socket.on('data', (chunk: Buffer) => parser.push(chunk));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

before(async () => {
  backend = await startResponder();
  const file = await writeConfig({
    workers: 1,
    logLevel: 'error',
    listeners: [
      {
        name: 'php',
        protocol: 'fastcgi',
        host: '127.0.0.1',
        port: 0,
        documentRoot: '/srv',
        backends: [`127.0.0.1:${(backend.address() as AddressInfo).port}`],
        maxConnectionsPerBackend: 1,
        healthCheckIntervalMs: 60000,
      },
    ],
  });
  cli = await startCli(['--config', file]);
});

after(async () => {
  await cli?.stop();
  await new Promise<void>((resolve) => backend?.close(() => resolve()));
});

function request(method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers = body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)), 'content-type': 'text/plain' };
    const req = http.request({ host: '127.0.0.1', port: cli.port('php'), path, method, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('fastcgi gateway: no replay of non-idempotent requests on a kept connection (issue 15)', () => {
  const cases = [
    { name: 'a body-less POST', method: 'POST', path: '/drop-post.php', body: undefined },
    { name: 'a POST with an empty body', method: 'POST', path: '/drop-post-empty.php', body: '' },
    { name: 'a body-less PATCH', method: 'PATCH', path: '/drop-patch.php', body: undefined },
  ];
  for (const c of cases) {
    it(`${c.name}: 502, and the application saw it exactly once`, async () => {
      assert.equal((await request('GET', `/warm${c.path}`)).status, 200); // a kept connection for the next request
      const reply = await request(c.method, c.path, c.body);
      assert.equal(reply.status, 502);
      assert.equal(seen.get(`${c.method} ${c.path}`), 1);
    });
  }

  it('a GET is sent once more on a fresh connection and succeeds', async () => {
    assert.equal((await request('GET', '/warm-get.php')).status, 200);
    const reply = await request('GET', '/drop-get.php');
    assert.equal(reply.status, 200);
    assert.equal(reply.body, 'ok GET /drop-get.php');
    assert.equal(seen.get('GET /drop-get.php'), 2);
  });
});
