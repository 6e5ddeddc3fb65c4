/**
 * Core's HTTP error pages, shared by the http protocol, the ws-bridge and
 * the fastcgi gateway: status by kind (or the error's own), HTML / JSON /
 * plain text, the raw bytes for sockets and the same through node:http.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../src/core/errors.ts';
import type { FailureKind } from '../../../src/core/errors.ts';
import { HttpStatusError, errorPage, errorResponse, sendErrorPage, statusOf } from '../../../src/core/http-error-response.ts';

describe('http error pages', () => {
  it('maps every kind to its status; an HttpStatusError keeps its own', () => {
    const expected: Record<FailureKind, number> = {
      NOT_FOUND: 404,
      FORBIDDEN: 403,
      UNAVAILABLE: 503,
      TIMEOUT: 504,
      BACKEND_UNREACHABLE: 502,
      PROTOCOL: 400,
      HANDSHAKE_TIMEOUT: 408,
      TLS_REQUIRED: 403,
      TOO_MANY: 503,
    LIMITED: 429,
      SHUTTING_DOWN: 503,
      INTERNAL: 500,
    };
    for (const [kind, status] of Object.entries(expected)) assert.equal(statusOf(new PolyproxyError(kind as FailureKind, 'x')), status, kind);
    assert.equal(statusOf(new HttpStatusError('PROTOCOL', 413, 'too big')), 413);
    assert.equal(statusOf(new HttpStatusError('FORBIDDEN', 409, 'taken')), 409);
  });

  it('raw response: status line, headers, HTML page, Connection: close; HEAD gets the head only', () => {
    const text = errorResponse(new PolyproxyError('NOT_FOUND', 'no route to 10.0.0.1'), 'shop.test').toString();
    const [head, body] = text.split('\r\n\r\n') as [string, string];
    assert.equal(
      head,
      `HTTP/1.1 404 Not Found\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-polyproxy-error: PP_ERR_NOT_FOUND\r\nconnection: close\r\ncache-control: no-store`,
    );
    assert.match(body, /<h1>404 Not Found<\/h1><p>No route for host &#34;shop.test&#34;.<\/p>/);
    assert.ok(!body.includes('10.0.0.1'), 'internals stay out of the page');
    const headOnly = errorResponse(new PolyproxyError('NOT_FOUND', 'x'), 'shop.test', { headRequest: true }).toString();
    assert.ok(headOnly.endsWith('\r\n\r\n'));
    assert.match(headOnly, new RegExp(`content-length: ${Buffer.byteLength(body)}\r\n`));
  });

  it('JSON when Accept prefers it, over any format', () => {
    for (const format of ['html', 'text'] as const) {
      const page = errorPage(new PolyproxyError('TIMEOUT', 'slow'), undefined, { accept: 'application/json, text/html;q=0.5', format });
      assert.equal(page.status, 504);
      assert.deepEqual(JSON.parse(page.body), { error: { status: 504, code: 'PP_ERR_TIMEOUT', message: 'The backend for this host did not answer in time.' } });
      assert.deepEqual(page.headers.slice(0, 2), ['content-type', 'application/json']);
    }
    assert.deepEqual(errorPage(new PolyproxyError('TIMEOUT', 'slow'), undefined, { accept: 'text/html, application/json' }).headers.slice(0, 2), ['content-type', 'text/html; charset=utf-8']);
  });

  it('plain text: the detail alone; a given detail replaces the default sentence', () => {
    const page = errorPage(new PolyproxyError('FORBIDDEN', 'banned'), undefined, { format: 'text', detail: 'banned' });
    assert.equal(page.status, 403);
    assert.equal(page.body, 'banned');
    assert.deepEqual(page.headers, ['content-type', 'text/plain; charset=utf-8', 'content-length', '6', 'x-polyproxy-error', 'PP_ERR_FORBIDDEN']);
    assert.equal(errorPage(new PolyproxyError('TOO_MANY', 'x'), undefined, { format: 'text' }).body, 'Too many connections.');
  });

  it('client-side statuses show the message; server-side ones a fixed sentence', () => {
    assert.equal(errorPage(new HttpStatusError('PROTOCOL', 413, 'limit is 10 bytes'), undefined, { format: 'text' }).body, 'limit is 10 bytes');
    assert.equal(errorPage(new HttpStatusError('PROTOCOL', 426, 'use Upgrade'), undefined, { format: 'text' }).body, 'use Upgrade');
    assert.equal(errorPage(new PolyproxyError('INTERNAL', 'TypeError at foo.ts:3'), undefined, { format: 'text' }).body, 'Internal error.');
    assert.equal(errorPage(new PolyproxyError('UNAVAILABLE', 'breaker open for 10.0.0.1:9000'), 'php.test', { format: 'text' }).body, 'Host "php.test" is unavailable.');
    assert.equal(errorPage(new HttpStatusError('PROTOCOL', 413, 'x'), undefined).reason, 'Content Too Large');
  });

  it('sendErrorPage: the same through node:http, closing unless told to keep the connection, with extra headers', async () => {
    let close = true;
    const server = http.createServer((req, res) => sendErrorPage(res, new HttpStatusError('PROTOCOL', 405, 'POST only'), undefined, { accept: req.headers.accept, format: 'text', close, headers: { allow: 'POST' } }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const first = await fetch(`http://127.0.0.1:${port}/`);
      assert.equal(first.status, 405);
      assert.equal(await first.text(), 'POST only');
      assert.equal(first.headers.get('allow'), 'POST');
      assert.equal(first.headers.get('connection'), 'close');
      assert.equal(first.headers.get('x-polyproxy-error'), 'PP_ERR_PROTOCOL');
      assert.equal(first.headers.get('cache-control'), 'no-store');
      close = false;
      const second = await fetch(`http://127.0.0.1:${port}/`);
      await second.text();
      assert.equal(second.headers.get('connection'), 'keep-alive');
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
