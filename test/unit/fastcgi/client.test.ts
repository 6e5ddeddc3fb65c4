/**
 * The client over raw `net` servers that write exact FastCGI bytes:
 * keep-conn reuse, a stale kept connection retried once, timeouts, an early
 * close, a rejected request, a protocol violation, streamed stdin, the
 * async API (ids, callbacks, the iterator) and the collections.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { FastCgiClient } from '../../../src/fastcgi/client.ts';
import { FastCgiConnection } from '../../../src/fastcgi/connection.ts';
import { parseEndpoint } from '../../../src/core/endpoint.ts';
import { Random, RoundRobin } from '../../../src/fastcgi/collections.ts';
import { JsonData, MultipartFormData, StreamContent, UrlEncodedFormData } from '../../../src/fastcgi/content.ts';
import { FastCgiError } from '../../../src/fastcgi/errors.ts';
import { FastCgiProxy } from '../../../src/fastcgi/proxy.ts';
import { answer, fakeServer } from '../../helpers/fastcgi-server.ts';
import type { Behaviour } from '../../helpers/fastcgi-server.ts';
import { FCGI_OVERLOADED, FCGI_STDERR, FCGI_STDOUT, encodeEndRequest, encodeRecord } from '../../../src/fastcgi/records.ts';
import { GetRequest, PostRequest } from '../../../src/fastcgi/request.ts';

const servers: Array<{ close: () => Promise<void> }> = [];
after(() => Promise.all(servers.map((s) => s.close())));

async function server(behaviour: Behaviour): ReturnType<typeof fakeServer> {
  const s = await fakeServer(behaviour);
  servers.push(s);
  return s;
}

const isCode = (code: string) => (e: unknown) => e instanceof FastCgiError && e.code === code;

describe('FastCGI client', () => {
  it('sends params and body, parses head, body and stderr, and reuses the connection with FCGI_KEEP_CONN', async () => {
    const s = await server((req) =>
      answer(req, `Status: 201 Created\r\nContent-Type: text/plain\r\n\r\n${req.params.get('REQUEST_METHOD')} ${req.params.get('SCRIPT_FILENAME')} ${req.params.get('CONTENT_LENGTH')} ${req.stdin.toString()} #${req.connection}`, [
        encodeRecord(FCGI_STDERR, 1, Buffer.from('warned')),
      ]),
    );
    const client = new FastCgiClient();
    const passed: string[] = [];
    const first = await client.sendRequest(s.address, new PostRequest('/srv/app.php', { a: '1', b: ['x', 'y'] }).addPassThroughCallbacks((chunk, stream) => passed.push(`${stream}:${chunk.length}`)));
    assert.deepEqual(passed, ['stderr:6', `stdout:${first.output.length}`]);
    assert.equal(first.status, 201);
    assert.equal(first.statusText, 'Created');
    assert.equal(first.header('content-type'), 'text/plain');
    assert.equal(first.text(), 'POST /srv/app.php 23 a=1&b%5B%5D=x&b%5B%5D=y #1');
    assert.equal(first.stderr, 'warned');
    assert.equal(first.server, s.address);
    assert.ok(first.durationMs >= 0);
    const second = await client.sendRequest(s.address, new GetRequest('/srv/app.php'));
    assert.equal(second.text(), 'GET /srv/app.php 0  #1');
    assert.equal(s.connections(), 1);
    client.close();
  });

  it('without keepAlive, opens a connection per request', async () => {
    const s = await server((req) => answer(req, `\r\n#${req.connection} flags=${req.flags}`));
    const client = new FastCgiClient({ keepAlive: false });
    assert.equal((await client.sendRequest(s.address, new GetRequest('/x.php'))).text(), '#1 flags=0');
    assert.equal((await client.sendRequest(s.address, new GetRequest('/x.php'))).text(), '#2 flags=0');
    client.close();
  });

  /** Answers a connection's first request; a later one on the same connection is read and the connection closed unanswered (a worker recycled as the request arrived). */
  async function recycling(): Promise<{ address: string; seen: string[] }> {
    const seen: string[] = [];
    const served = new Map<number, number>();
    const s = await server((req) => {
      seen.push(`${req.params.get('REQUEST_METHOD')} #${req.connection}`);
      const n = (served.get(req.connection) ?? 0) + 1;
      served.set(req.connection, n);
      if (n > 1) req.socket.destroy();
      else answer(req, `\r\n#${req.connection}`);
    });
    return { address: s.address, seen };
  }

  it('retries an idempotent request once on a fresh connection when a kept one closes before any output', async () => {
    const s = await recycling();
    const client = new FastCgiClient();
    assert.equal((await client.sendRequest(s.address, new GetRequest('/x.php'))).text(), '#1');
    assert.equal((await client.sendRequest(s.address, new GetRequest('/x.php'))).text(), '#2');
    assert.deepEqual(s.seen, ['GET #1', 'GET #1', 'GET #2']);
    client.close();
  });

  it('never sends a POST twice: a kept connection closing after it was sent fails it (core retry rule)', async () => {
    const s = await recycling();
    const client = new FastCgiClient();
    assert.equal((await client.sendRequest(s.address, new GetRequest('/x.php'))).text(), '#1');
    await assert.rejects(client.sendRequest(s.address, new PostRequest('/x.php', 'body')), isCode('FCGI_ERR_CONNECTION_CLOSED'));
    assert.deepEqual(s.seen, ['GET #1', 'POST #1']);
    client.close();
  });

  it('fails with FCGI_ERR_READ_TIMEOUT, FCGI_ERR_CONNECTION_CLOSED, FCGI_ERR_REJECTED and FCGI_ERR_PROTOCOL', async () => {
    const silent = await server(() => {});
    const closing = await server((req) => req.socket.end(encodeRecord(FCGI_STDOUT, 1, Buffer.from('partial'))));
    const overloaded = await server((req) => req.socket.write(encodeEndRequest(1, 0, FCGI_OVERLOADED)));
    const garbage = await server((req) => req.socket.write(Buffer.from('HTTP/1.1 200 OK\r\n\r\n')));
    const client = new FastCgiClient({ readWriteTimeoutMs: 100 });
    await assert.rejects(client.sendRequest(silent.address, new GetRequest('/x.php')), isCode('FCGI_ERR_READ_TIMEOUT'));
    await assert.rejects(client.sendRequest(closing.address, new GetRequest('/x.php')), isCode('FCGI_ERR_CONNECTION_CLOSED'));
    await assert.rejects(client.sendRequest(overloaded.address, new GetRequest('/x.php')), isCode('FCGI_ERR_REJECTED'));
    await assert.rejects(client.sendRequest(garbage.address, new GetRequest('/x.php')), isCode('FCGI_ERR_PROTOCOL'));
    await assert.rejects(client.sendRequest('127.0.0.1:1', new GetRequest('/x.php')), isCode('FCGI_ERR_CONNECT_FAILED'));
    await assert.rejects(client.sendRequest('unix:/nonexistent/php.sock', new GetRequest('/x.php')), isCode('FCGI_ERR_CONNECT_FAILED'));
    client.close();
  });

  it('streams stdin from an async iterable in records, and checks the declared length', async () => {
    const s = await server((req) => answer(req, `\r\n${req.stdin.length} ${req.params.get('CONTENT_LENGTH')} ${req.params.get('CONTENT_TYPE')}`));
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 10; i++) yield Buffer.alloc(100_000, i);
    }
    const client = new FastCgiClient();
    const response = await client.sendRequest(s.address, new PostRequest('/x.php', new StreamContent(chunks(), 1_000_000, 'application/octet-stream')));
    assert.equal(response.text(), '1000000 1000000 application/octet-stream');
    await assert.rejects(client.sendRequest(s.address, new PostRequest('/x.php', new StreamContent(chunks(), 10))), isCode('FCGI_ERR_INVALID_ARGUMENT'));
    client.close();
  });

  it('encodes JSON, url-encoded and multipart bodies with their content types', async () => {
    const s = await server((req) => answer(req, `\r\n${req.params.get('CONTENT_TYPE')}\n${req.stdin.toString()}`));
    const client = new FastCgiClient();
    assert.equal((await client.sendRequest(s.address, new PostRequest('/x.php', new JsonData({ a: [1] })))).text(), 'application/json\n{"a":[1]}');
    assert.equal((await client.sendRequest(s.address, new PostRequest('/x.php', new UrlEncodedFormData({ q: 'a b&c' })))).text(), 'application/x-www-form-urlencoded\nq=a+b%26c');
    const multipart = new MultipartFormData({ name: 'x' }, { file: { filename: 'a.txt', content: 'hello', contentType: 'text/plain' } }, 'BOUNDARY');
    assert.equal(
      (await client.sendRequest(s.address, new PostRequest('/x.php', multipart))).text(),
      'multipart/form-data; boundary=BOUNDARY\n--BOUNDARY\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--BOUNDARY\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--BOUNDARY--\r\n',
    );
    client.close();
  });

  it('async requests: ids, readResponse, callbacks, and responses in completion order', async () => {
    const s = await server((req) => {
      const delay = Number(req.params.get('DELAY'));
      setTimeout(() => answer(req, `\r\n${delay}`), delay);
    });
    const client = new FastCgiClient();
    const slow = client.sendAsyncRequest(s.address, new GetRequest('/x.php', { params: { DELAY: 150 } }));
    const fast = client.sendAsyncRequest(s.address, new GetRequest('/x.php', { params: { DELAY: 10 } }));
    assert.notEqual(slow, fast);
    assert.equal(client.hasUnhandledResponses(), true);
    const order: string[] = [];
    for await (const response of client.responses()) order.push(response.text());
    assert.deepEqual(order, ['10', '150']);
    assert.equal(client.hasUnhandledResponses(), false);

    const seen: string[] = [];
    const failures: string[] = [];
    client.sendAsyncRequest(s.address, new GetRequest('/x.php', { params: { DELAY: 20 } }).addResponseCallbacks((r) => seen.push(r.text())));
    client.sendAsyncRequest('127.0.0.1:1', new GetRequest('/x.php').addFailureCallbacks((e) => failures.push((e as FastCgiError).code)));
    await client.waitForResponses();
    assert.deepEqual(seen, ['20']);
    assert.deepEqual(failures, ['FCGI_ERR_CONNECT_FAILED']);

    const id = client.sendAsyncRequest(s.address, new GetRequest('/x.php', { params: { DELAY: 300 } }));
    await assert.rejects(client.readResponse(id, 20), isCode('FCGI_ERR_READ_TIMEOUT'));
    assert.equal((await client.readResponse(id)).text(), '300');
    await assert.rejects(client.readResponse(id), isCode('FCGI_ERR_UNKNOWN_REQUEST'));
    client.close();
  });

  it('Proxy spreads requests round-robin, or randomly with the given source', async () => {
    const a = await server((req) => answer(req, '\r\na'));
    const b = await server((req) => answer(req, '\r\nb'));
    const rr = new FastCgiProxy(RoundRobin.of(a.address, b.address));
    const got: string[] = [];
    for (let i = 0; i < 4; i++) got.push((await rr.sendRequest(new GetRequest('/x.php'))).text());
    assert.deepEqual(got, ['a', 'b', 'a', 'b']);
    rr.close();
    const rolls = [0.9, 0.1, 0.6, 0.4];
    const random = new FastCgiProxy(new Random([a.address, b.address], () => rolls.shift() ?? 0));
    const picked: string[] = [];
    for (let i = 0; i < 4; i++) picked.push((await random.sendRequest(new GetRequest('/x.php'))).text());
    assert.deepEqual(picked, ['b', 'a', 'b', 'a']);
    random.close();
  });

  it('a connection paused by its consumer just before END_REQUEST serves the next request (regression: gateway hang after a large response)', async () => {
    const s = await server((req) => answer(req, `\r\n#${req.connection}`));
    const conn = await FastCgiConnection.open(parseEndpoint(s.address));
    const run = (pauseOnOutput: boolean): Promise<string> =>
      new Promise((resolve, reject) => {
        let out = '';
        conn.begin(Buffer.alloc(0), {
          onStdout(chunk) {
            out += chunk.toString();
            if (pauseOnOutput) conn.pause(); // backpressure; END_REQUEST arrives in the same chunk
          },
          onStderr() {},
          onEnd: () => resolve(out),
          onError: reject,
        }, { keepConn: true, timeoutMs: 1000, endStdin: true });
      });
    assert.equal(await run(true), '\r\n#1');
    assert.equal(await run(false), '\r\n#1');
    conn.destroy();
  });
});
