/**
 * The response side alone (ResponseWriter over a fake owner and client):
 * a small whole response in one write; heads split at every offset; bodies
 * framed by Content-Length, chunked and the close; bytes past the response
 * reported; 1xx passed to HTTP/1.1 clients only; 101 only after an Upgrade
 * request; backpressure; the connection closing after the response when
 * the request or the client says so; a malformed head refused.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { PolyproxyError } from '../../../../src/core/errors.ts';
import type { HttpHead } from '../../../../src/protocols/http/head-parser.ts';
import { parseRequestHead } from '../../../../src/protocols/http/head-parser.ts';
import { RESP_BODY, RESP_HEAD, ResponseWriter } from '../../../../src/protocols/http/response.ts';
import type { ResponseOwner } from '../../../../src/protocols/http/response.ts';

const b = (text: string): Buffer => Buffer.from(text, 'latin1');

class FakeClient {
  readonly writes: Buffer[] = [];
  accept = true;
  writableLength = 0;
  write(chunk: Buffer): boolean {
    this.writes.push(Buffer.from(chunk));
    return this.accept;
  }
  cork(): void {}
  uncork(): void {}
  text(): string {
    return Buffer.concat(this.writes).toString('latin1');
  }
}

class Owner implements ResponseOwner {
  readonly fake = new FakeClient();
  readonly client = this.fake as unknown as Socket;
  readonly limits = { maxHeadBytes: 1024, maxHeaders: 20 };
  readonly currentRequest: HttpHead;
  clientEnded = false;
  draining = false;
  activity = 0;
  pauses = 0;
  completed: Buffer[] = [];
  failures: PolyproxyError[] = [];
  switched: Array<{ head: HttpHead; rest: string }> = [];
  readonly response = new ResponseWriter(this);

  constructor(request = 'GET / HTTP/1.1\r\nHost: app.test\r\n\r\n') {
    this.currentRequest = (parseRequestHead(b(request)) as { value: HttpHead }).value;
    this.response.attached();
  }
  backendActivity(): void {
    this.activity++;
  }
  pauseBackend(): void {
    this.pauses++;
  }
  responseComplete(extra: Buffer): void {
    this.completed.push(Buffer.from(extra));
  }
  backendFailed(err: PolyproxyError): void {
    this.failures.push(err);
  }
  switchProtocols(head: HttpHead, rest: Buffer): void {
    this.switched.push({ head, rest: rest.toString('latin1') });
  }
  telemetry(): string {
    return 'x-proxy-pool: reused\r\n';
  }
}

const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello';

describe('ResponseWriter', () => {
  it('a small whole response leaves in one write, with the telemetry lines, and completes', () => {
    const owner = new Owner();
    owner.response.onBackendBytes(b(OK), false);
    assert.equal(owner.fake.writes.length, 1);
    assert.match(owner.fake.text(), /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(owner.fake.text(), /x-proxy-pool: reused\r\n/);
    assert.ok(owner.fake.text().endsWith('\r\n\r\nhello'));
    assert.deepEqual(owner.completed, [Buffer.alloc(0)]);
    assert.equal(owner.response.responseStarted, true);
    assert.equal(owner.response.gotBackendBytes, true);
    assert.equal(owner.response.closeAfter, false);
    assert.equal(owner.activity, 1);
  });

  it('a response split at every offset arrives whole and completes once', () => {
    const bytes = b(OK);
    for (let cut = 1; cut < bytes.length; cut++) {
      const owner = new Owner();
      owner.response.onBackendBytes(bytes.subarray(0, cut), false);
      owner.response.onBackendBytes(bytes.subarray(cut), false);
      assert.ok(owner.fake.text().endsWith('\r\n\r\nhello'), `cut ${cut}`);
      assert.equal(owner.completed.length, 1, `cut ${cut}`);
    }
  });

  it('reports the bytes a backend sent past the response (the connection is not reused then)', () => {
    const owner = new Owner();
    owner.response.onBackendBytes(b('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe'), false);
    owner.response.onBackendBytes(b('lloEXTRA'), false);
    assert.equal(owner.completed[0]?.toString(), 'EXTRA');
  });

  it('a chunked body passes through and completes at its last chunk', () => {
    const owner = new Owner();
    const body = '3\r\nabc\r\n0\r\n\r\n';
    owner.response.onBackendBytes(b('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'), false);
    assert.equal(owner.response.bState, RESP_BODY);
    for (const ch of body) owner.response.onBackendBytes(b(ch), false);
    assert.ok(owner.fake.text().endsWith(`\r\n\r\n${body}`));
    assert.equal(owner.completed.length, 1);
  });

  it('a body framed by the close: never complete by itself, and the client connection closes after it', () => {
    const owner = new Owner();
    owner.response.onBackendBytes(b('HTTP/1.1 200 OK\r\n\r\nsome'), false);
    owner.response.onBackendBytes(b(' more'), false);
    assert.ok(owner.fake.text().endsWith('some more'));
    assert.equal(owner.completed.length, 0);
    assert.equal(owner.response.closeAfter, true);
  });

  it('closes after the response when the request asked or the client sent its FIN', () => {
    const close = new Owner('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    close.response.onBackendBytes(b(OK), false);
    assert.equal(close.response.closeAfter, true);
    assert.match(close.fake.text(), /\r\nconnection: close\r\n/i);
    const ended = new Owner();
    ended.clientEnded = true;
    ended.response.onBackendBytes(b(OK), false);
    assert.equal(ended.response.closeAfter, true);
  });

  it('while the listener drains, a keep-alive response says Connection: close (the client reconnects elsewhere)', () => {
    const draining = new Owner();
    draining.draining = true;
    draining.response.onBackendBytes(b(OK), false);
    assert.equal(draining.response.closeAfter, true);
    assert.match(draining.fake.text(), /\r\nconnection: close\r\n/i);
  });

  it('passes 100 Continue to an HTTP/1.1 client, not to an HTTP/1.0 one', () => {
    const v11 = new Owner();
    v11.response.onBackendBytes(b(`HTTP/1.1 100 Continue\r\n\r\n${OK}`), false);
    assert.match(v11.fake.text(), /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/);
    const v10 = new Owner('GET / HTTP/1.0\r\nHost: a\r\n\r\n');
    v10.response.onBackendBytes(b(`HTTP/1.1 100 Continue\r\n\r\n${OK}`), false);
    assert.match(v10.fake.text(), /^HTTP\/1\.1 200 OK/);
  });

  it('101: switches protocols after an Upgrade request (with the bytes past the head), fails without one', () => {
    const up = new Owner('GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n');
    up.response.onBackendBytes(b('HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nFRAME'), false);
    assert.equal(up.switched.length, 1);
    assert.equal(up.switched[0]?.head.status, 101);
    assert.equal(up.switched[0]?.rest, 'FRAME');
    const plain = new Owner();
    plain.response.onBackendBytes(b('HTTP/1.1 101 Switching Protocols\r\n\r\n'), false);
    assert.equal(plain.failures[0]?.kind, 'BACKEND_UNREACHABLE');
    assert.equal(plain.fake.writes.length, 0);
  });

  it('backpressure: a client write that returns false pauses the backend', () => {
    const owner = new Owner();
    owner.response.onBackendBytes(b('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n'), false);
    owner.fake.accept = false;
    owner.response.onBackendBytes(b('x'.repeat(10)), false);
    assert.equal(owner.pauses, 1);
  });

  it('a malformed response head fails with a code and writes nothing', () => {
    const owner = new Owner();
    owner.response.onBackendBytes(b('HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n'), false);
    assert.equal(owner.failures.length, 1);
    assert.equal(owner.fake.writes.length, 0);
    assert.equal(owner.response.responseStarted, false);
  });

  it('reset and attached ready it for the next response', () => {
    const owner = new Owner();
    owner.response.onBackendBytes(b(OK), false);
    owner.response.reset();
    owner.response.attached();
    assert.equal(owner.response.bState, RESP_HEAD);
    assert.equal(owner.response.responseStarted, false);
    assert.equal(owner.response.gotBackendBytes, false);
    owner.response.onBackendBytes(b(OK), false);
    assert.equal(owner.completed.length, 2);
  });
});
