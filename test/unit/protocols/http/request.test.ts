/**
 * The request side alone (RequestReader over a fake owner, client and
 * backend): heads whole, byte by byte and split at every offset; the head
 * rewritten with X-Forwarded-*; bodies framed by Content-Length and
 * chunked, written through to the backend, pipelined bytes held with the
 * client paused; malformed heads and too many pipelined bytes refused;
 * a body-less request's head sent again as it was.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { PolyproxyError } from '../../../../src/core/errors.ts';
import type { HttpHead } from '../../../../src/protocols/http/head-parser.ts';
import { READ_HEAD, REQ_BODY, REQ_DONE, ROUTING, RequestReader } from '../../../../src/protocols/http/request.ts';
import type { RequestOwner } from '../../../../src/protocols/http/request.ts';

const b = (text: string): Buffer => Buffer.from(text, 'latin1');

/** A stand-in socket: records writes (copied: borrowed buffers are reused) and pause/resume. */
class FakeSocket {
  readonly writes: Buffer[] = [];
  paused = false;
  corked = 0;
  writableNeedDrain = false;
  writableLength = 0;
  remoteAddress = '192.0.2.7';
  /** What write() returns (false: backpressure). */
  accept = true;
  write(chunk: Buffer): boolean {
    this.writes.push(Buffer.from(chunk));
    return this.accept;
  }
  cork(): void {
    this.corked++;
  }
  uncork(): void {
    this.corked--;
  }
  pause(): this {
    this.paused = true;
    return this;
  }
  resume(): this {
    this.paused = false;
    return this;
  }
  text(): string {
    return Buffer.concat(this.writes).toString('latin1');
  }
}

class Owner implements RequestOwner {
  readonly client = new FakeSocket() as unknown as Socket;
  readonly backend = new FakeSocket();
  readonly limits = { maxHeadBytes: 1024, maxHeaders: 20 };
  readonly proto = 'https';
  state = READ_HEAD;
  attached = false;
  heads: HttpHead[] = [];
  pending = 0;
  activity = 0;
  failures: PolyproxyError[] = [];
  readonly request: RequestReader = new RequestReader(this);
  readonly prefaceCheck = false;
  checkPreface(): boolean {
    return false;
  }
  get backendSocket(): Socket | null {
    return this.attached ? (this.backend as unknown as Socket) : null;
  }
  headPending(): void {
    this.pending++;
  }
  headReceived(head: HttpHead): void {
    this.heads.push(head);
    this.state = ROUTING;
  }
  backendActivity(): void {
    this.activity++;
  }
  requestFailed(err: PolyproxyError): void {
    this.failures.push(err);
  }
  /** Attaches the fake backend and sends, as the session does once routed. */
  send(): void {
    this.attached = true;
    this.request.send(this.backend as unknown as Socket);
  }
  get fakeClient(): FakeSocket {
    return this.client as unknown as FakeSocket;
  }
}

const GET = 'GET /p?q=1 HTTP/1.1\r\nHost: app.test\r\nAccept: */*\r\n\r\n';

describe('RequestReader', () => {
  it('parses a head whole, byte by byte and split at every offset; partial heads start the request timeout', () => {
    const bytes = b(GET);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const owner = new Owner();
      if (cut > 0) owner.request.onClientBytes(bytes.subarray(0, cut), false);
      if (cut < bytes.length) owner.request.onClientBytes(bytes.subarray(cut), false);
      assert.equal(owner.heads.length, 1, `cut ${cut}`);
      assert.equal(owner.heads[0]?.method, 'GET');
      assert.equal(owner.heads[0]?.host, 'app.test');
      assert.equal(owner.pending, cut > 0 && cut < bytes.length ? 1 : 0, `cut ${cut}`);
      assert.equal(owner.request.buf.length, 0);
    }
    const owner = new Owner();
    for (const byte of bytes) owner.request.onClientBytes(Buffer.from([byte]), false);
    assert.equal(owner.heads.length, 1);
  });

  it('copies what must outlive a transient read (a partial head in the shared buffer)', () => {
    const owner = new Owner();
    const shared = b(GET);
    owner.request.onClientBytes(shared.subarray(0, 10), true);
    shared.fill(0x21, 0, 10); // the shared read buffer is reused by the next read
    owner.request.onClientBytes(b(GET.slice(10)), false);
    assert.equal(owner.heads[0]?.method, 'GET');
  });

  it('a body-less request: the rewritten head goes out at once, the request is done; resend sends it again', () => {
    const owner = new Owner();
    owner.request.onClientBytes(b(GET), false);
    owner.send();
    assert.equal(owner.state, REQ_DONE);
    assert.equal(owner.request.reqDone, true);
    const sent = owner.backend.text();
    assert.match(sent, /^GET \/p\?q=1 HTTP\/1\.1\r\n/);
    assert.match(sent, /\r\nx-forwarded-for: 192\.0\.2\.7\r\nx-forwarded-proto: https\r\nx-forwarded-host: app\.test\r\n/);
    assert.ok(sent.endsWith('\r\n\r\n'));
    owner.request.resend(owner.backend as unknown as Socket);
    assert.equal(owner.backend.writes.length, 2);
    assert.deepEqual(owner.backend.writes[1], owner.backend.writes[0]);
  });

  it('a Content-Length body: what came with the head leaves in the same corked write, the rest as it arrives; pipelined bytes wait', () => {
    const owner = new Owner();
    owner.request.onClientBytes(b('POST /f HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10\r\n\r\n0123'), false);
    assert.equal(owner.heads.length, 1);
    assert.equal(owner.request.buf.toString(), '0123', 'held until a backend is attached');
    owner.send();
    assert.equal(owner.state, REQ_BODY);
    assert.equal(owner.backend.corked, 0, 'uncorked again');
    assert.equal(owner.fakeClient.paused, false, 'the rest of the body is read');
    owner.request.onClientBytes(b('45'), false);
    owner.request.onClientBytes(b('6789GET /next HTTP/1.1\r\n'), false);
    assert.ok(owner.backend.text().endsWith('\r\n\r\n0123456789'));
    assert.equal(owner.state, REQ_DONE);
    assert.equal(owner.request.buf.toString(), 'GET /next HTTP/1.1\r\n', 'pipelined: kept for after the response');
    assert.equal(owner.fakeClient.paused, true);
    assert.ok(owner.activity >= 2);
  });

  it('a chunked body ends at its last chunk and trailers', () => {
    const owner = new Owner();
    owner.request.onClientBytes(b('POST /c HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n'), false);
    owner.send();
    const body = '5\r\nhello\r\n0\r\n\r\n';
    for (const ch of body) owner.request.onClientBytes(b(ch), false);
    assert.ok(owner.backend.text().endsWith(`\r\n\r\n${body}`));
    assert.equal(owner.state, REQ_DONE);
  });

  it('backpressure: a backend write that returns false pauses the client', () => {
    const owner = new Owner();
    owner.request.onClientBytes(b('POST /f HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\n'), false);
    owner.send();
    owner.backend.accept = false;
    owner.request.onClientBytes(b('x'.repeat(10)), false);
    assert.equal(owner.fakeClient.paused, true);
  });

  it('refuses a malformed head and too many pipelined bytes with PROTOCOL', () => {
    const bad = new Owner();
    bad.request.onClientBytes(b('GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n'), false);
    assert.equal(bad.failures[0]?.kind, 'PROTOCOL');
    const greedy = new Owner();
    greedy.request.onClientBytes(b(GET), false);
    greedy.request.onClientBytes(Buffer.alloc(1500, 0x61), false); // one read is kept whatever its size
    assert.equal(greedy.failures.length, 0);
    greedy.request.onClientBytes(Buffer.alloc(1500, 0x61), false);
    assert.equal(greedy.failures[0]?.kind, 'PROTOCOL');
    assert.match(greedy.failures[0]?.message ?? '', /pipelined/);
  });

  it('reset readies the next request and keeps pipelined bytes', () => {
    const owner = new Owner();
    owner.request.onClientBytes(b(GET + GET), false);
    owner.send();
    assert.equal(owner.request.buf.toString(), GET);
    owner.request.reset();
    owner.state = READ_HEAD;
    owner.request.tryHead(owner.request.buf, false);
    assert.equal(owner.heads.length, 2);
  });
});
