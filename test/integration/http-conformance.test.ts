/**
 * Differential HTTP/1.1 conformance (issue 15: request smuggling): every
 * raw request of test/fixtures/http-conformance/requests.ts goes through a
 * real in-process http listener to a backend that records the exact bytes
 * it receives and hands them to a real node:http server (llhttp, the
 * reference parser). Each case passes when either the proxy itself refused
 * it (an error page of its own), or every request it forwarded reached the
 * reference whole, accepted, unambiguously framed (at most one
 * Content-Length, never with Transfer-Encoding) and with the meaning the
 * proxy parsed: method, host it routed by, origin-form target and body
 * bytes; and the reference saw no request the proxy did not forward.
 *
 * Responses (responses.ts) the same way round: a backend writes raw bytes,
 * the client records what the proxy forwarded, and a node:http client fed
 * those bytes must agree with what the proxy parsed from the backend's
 * (status, body), or the proxy answered its own 502.
 *
 * Where a case names what the RFCs decide (expect), that is checked too;
 * where llhttp refuses bytes the RFCs allow (llhttpStricter), the suite
 * checks that it does, so the list stays true.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { ChunkedFramer } from '../../src/protocols/http/chunked.ts';
import { HttpParseError, parseRequestHead, parseResponseHead } from '../../src/protocols/http/head-parser.ts';
import { startProxy } from '../../src/supervisor/proxy.ts';
import type { RunningProxy } from '../../src/supervisor/proxy.ts';
import { REQUEST_CASES } from '../fixtures/http-conformance/requests.ts';
import type { RequestCase } from '../fixtures/http-conformance/requests.ts';
import { RESPONSE_CASES } from '../fixtures/http-conformance/responses.ts';
import type { ResponseCase } from '../fixtures/http-conformance/responses.ts';

/** A case that takes longer than this hangs somewhere: it fails instead of stalling the suite. */
const CASE_MS = 3000;

const noop = (): void => {};

// ---- what the proxy parsed (its own parsers, as the listener runs them) --------

interface Message {
  readonly method: string;
  /** Request: the host it was routed by. */
  readonly host: string;
  /** Request: the target as the origin server is to get it. */
  readonly target: string;
  readonly status: number;
  readonly body: Buffer;
}

/** How the proxy's view of a byte stream ends. */
type End = 'done' | 'close' | 'refused' | 'incomplete' | 'cut';

/** The data of a chunked body the framer accepted (sizes, extensions and trailers dropped). */
function dechunk(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', at, 'latin1');
    const size = Number.parseInt(body.toString('latin1', at, lineEnd).split(/[ \t;]/)[0] as string, 16);
    if (size === 0) return Buffer.concat(parts);
    parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
}

/** A request target in origin form (RFC 9112 §3.2.1, §3.2.4): absolute-form ones lose scheme and authority. */
function splitTarget(method: string, target: string, host: string | undefined): { host: string | undefined; path: string } {
  const abs = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)(.*)$/i.exec(target);
  if (abs === null) return { host, path: target };
  const path = abs[3] as string;
  return { host: abs[2], path: path === '' ? (method === 'OPTIONS' ? '*' : '/') : path.startsWith('/') ? path : `/${path}` };
}

/** The body after a head, framed as the proxy frames it; null when the bytes end first, 'error' when the framer refuses them. */
function frameBody(framing: string, contentLength: number, rest: Buffer, source: 'client' | 'backend'): { body: Buffer; used: number } | null | 'error' {
  if (framing === 'none') return { body: Buffer.alloc(0), used: 0 };
  if (framing === 'length') return rest.length < contentLength ? null : { body: rest.subarray(0, contentLength), used: contentLength };
  if (framing === 'close') return { body: rest, used: rest.length };
  let end: number;
  try {
    end = new ChunkedFramer(source).feed(rest);
  } catch {
    return 'error';
  }
  return end < 0 ? null : { body: dechunk(rest.subarray(0, end)), used: end };
}

/** The requests the proxy parses from `bytes`, in order, and how the stream ends. */
function proxyRequests(bytes: Buffer): { messages: Message[]; end: End; status: number } {
  const messages: Message[] = [];
  let buf = bytes;
  while (buf.length > 0) {
    let parsed;
    try {
      parsed = parseRequestHead(buf);
    } catch (err) {
      return { messages, end: 'refused', status: (err as HttpParseError).status };
    }
    if (parsed === undefined) return { messages, end: 'incomplete', status: 0 };
    const head = parsed.value;
    const framed = frameBody(head.framing, head.contentLength, buf.subarray(parsed.consumed), 'client');
    if (framed === 'error') return { messages, end: 'refused', status: 400 };
    if (framed === null) return { messages, end: 'incomplete', status: 0 };
    const { path } = splitTarget(head.method, head.target, head.host);
    messages.push({ method: head.method, host: head.host ?? '', target: path, status: 0, body: framed.body });
    if (!head.keepAlive) return { messages, end: 'close', status: 0 };
    buf = buf.subarray(parsed.consumed + framed.used);
  }
  return { messages, end: 'done', status: 0 };
}

/** The final response the proxy parses from a backend's bytes (interim 1xx skipped). */
function proxyResponse(bytes: Buffer, method: string): { message: Message | null; end: End } {
  let buf = bytes;
  for (;;) {
    let parsed;
    try {
      parsed = parseResponseHead(buf, method);
    } catch (err) {
      assert.ok(err instanceof HttpParseError);
      return { message: null, end: 'refused' };
    }
    if (parsed === undefined) return { message: null, end: 'refused' }; // closed before the head was complete: 502
    const head = parsed.value;
    buf = buf.subarray(parsed.consumed);
    if (head.status < 200) continue;
    const framed = frameBody(head.framing, head.contentLength, buf, 'backend');
    if (framed === 'error' || framed === null) return { message: null, end: 'cut' };
    return { message: { method, host: '', target: '', status: head.status, body: framed.body }, end: 'done' };
  }
}

// ---- the wire: a recording backend in front of the reference, and clients --------

interface RefRequest {
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: string[];
  readonly body: Buffer[];
  complete: boolean;
}

/** What one case produced on the backend side. */
class CaseRecord {
  requests: RefRequest[] = [];
  refErrors: string[] = [];
  received: Buffer[] = [];
  open = 0;
  #idle: (() => void) | null = null;
  /** Response cases: what the raw backend answers. */
  answer = Buffer.alloc(0);

  opened(): void {
    this.open++;
  }

  closed(): void {
    if (--this.open === 0) this.#idle?.();
  }

  /** Resolves once every backend connection of the case is closed. */
  settled(): Promise<void> {
    if (this.open === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#idle = resolve;
    });
  }
}

let current = new CaseRecord();

/** Writes `bytes`, half-closes, and collects what comes back until the proxy closes. */
function exchange(port: number, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, noDelay: true });
    const got: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => got.push(chunk));
    socket.on('error', noop); // a reset after the proxy's answer: what arrived is the answer
    socket.on('close', () => resolve(Buffer.concat(got)));
    socket.setTimeout(CASE_MS, () => {
      socket.destroy();
      reject(new Error('no close from the proxy'));
    });
    socket.end(bytes);
  });
}

interface ClientResponse {
  readonly status: number;
  /** Carries the proxy's own error marker. */
  readonly own: boolean;
}

/**
 * The responses in what the request-side client received: every one of them
 * (the reference's and the proxy's error pages) has a Content-Length.
 */
function splitResponses(bytes: Buffer): ClientResponse[] {
  const out: ClientResponse[] = [];
  let at = 0;
  while (at < bytes.length) {
    const headEnd = bytes.indexOf('\r\n\r\n', at, 'latin1');
    assert.ok(headEnd > 0, `unframed bytes from the proxy: ${JSON.stringify(bytes.toString('latin1', at))}`);
    const head = bytes.toString('latin1', at, headEnd);
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    assert.ok(length !== null, `response without Content-Length: ${JSON.stringify(head)}`);
    out.push({ status: Number(head.slice(9, 12)), own: /\r\nx-polyproxy-error: /i.test(head) });
    at = headEnd + 4 + Number(length[1]);
  }
  return out;
}

/** Field lines named `name` (any case) among raw headers. */
function count(rawHeaders: readonly string[], name: string): number {
  let n = 0;
  for (let k = 0; k < rawHeaders.length; k += 2) if ((rawHeaders[k] as string).toLowerCase() === name) n++;
  return n;
}

/** At most one Content-Length, never with Transfer-Encoding; a request body framed by one of them. */
function assertFraming(rawHeaders: readonly string[], bodyLength: number, what: string): void {
  const cl = count(rawHeaders, 'content-length');
  const te = count(rawHeaders, 'transfer-encoding');
  assert.ok(cl <= 1, `${what}: ${cl} Content-Length fields`);
  assert.ok(cl === 0 || te === 0, `${what}: Content-Length with Transfer-Encoding`);
  if (bodyLength > 0 && what !== 'response') assert.ok(cl === 1 || te > 0, `${what}: a body without framing`);
}

/** Forwarded: the peer agreed; cut: the bytes ended inside a body, the proxy closed; llhttpStricter: counted apart. */
const stats = { requests: 0, requestsRefused: 0, requestsForwarded: 0, requestsCut: 0, responses: 0, responsesRefused: 0, responsesForwarded: 0, responsesCut: 0, llhttpStricter: 0 };

describe('differential HTTP conformance against node:http (llhttp)', () => {
  let proxy: RunningProxy;
  let port = 0;
  const servers: net.Server[] = [];
  /** Response cases: a server that answers any connection with `replayBytes` and closes, for the reference client. */
  let replayBytes: Buffer = Buffer.alloc(0);
  let replayPort = 0;

  before(async () => {
    // The reference: node's own HTTP/1.1 parser, defaults (strict).
    const reference = http.createServer({ noDelay: true });
    reference.on('request', (req, res) => {
      const record: RefRequest = { method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders, body: [], complete: false };
      const owner = current;
      owner.requests.push(record);
      req.on('data', (chunk: Buffer) => record.body.push(chunk));
      req.on('end', () => {
        record.complete = true;
        res.writeHead(200, { 'content-length': '2', connection: 'close' });
        res.end('ok');
      });
    });
    reference.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      current.refErrors.push(err.code ?? 'unknown');
      socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    });
    // The request side's backend: records the bytes and passes them to the reference.
    // No Nagle anywhere: a second small write must not wait for a delayed ACK (40 ms a case).
    const tap = net.createServer({ noDelay: true }, (inbound) => {
      const owner = current;
      owner.opened();
      const outbound = net.connect({ host: '127.0.0.1', port: (reference.address() as AddressInfo).port, noDelay: true });
      let closed = 0;
      const onClose = (): void => {
        inbound.destroy();
        outbound.destroy();
        if (++closed === 2) owner.closed();
      };
      inbound.on('data', (chunk: Buffer) => {
        owner.received.push(chunk);
        outbound.write(chunk);
      });
      inbound.on('end', () => outbound.end());
      outbound.on('data', (chunk: Buffer) => inbound.write(chunk));
      outbound.on('end', () => inbound.end());
      for (const s of [inbound, outbound]) {
        s.on('error', noop);
        s.on('close', onClose);
      }
    });
    // The response side's backend: reads a request head, answers the case's bytes, closes.
    const origin = net.createServer({ noDelay: true }, (socket) => {
      const owner = current;
      owner.opened();
      let seen = '';
      socket.on('data', (chunk: Buffer) => {
        seen += chunk.toString('latin1');
        if (seen.includes('\r\n\r\n')) {
          seen = '';
          socket.end(owner.answer);
        }
      });
      socket.on('error', noop);
      socket.on('close', () => owner.closed());
    });
    const replay = net.createServer({ noDelay: true }, (socket) => {
      socket.on('error', noop);
      socket.on('data', noop);
      socket.end(replayBytes);
    });
    for (const server of [reference, tap, origin, replay]) {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      servers.push(server);
    }
    replayPort = (replay.address() as AddressInfo).port;
    const at = (server: net.Server): string => `127.0.0.1:${(server.address() as AddressInfo).port}`;
    proxy = await startProxy(
      parseConfig(
        {
          workers: 1,
          logLevel: 'silent',
          security: { allowBackends: ['127.0.0.0/8'] },
          routes: { 'a.test': at(tap), 'b.test': at(tap), 'r.test': at(origin) },
          listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: 0, requestTimeoutMs: CASE_MS, backendTimeoutMs: CASE_MS }],
        },
        process.cwd(),
      ),
    );
    port = (proxy.bound[0] as { port: number }).port;
  });

  after(async () => {
    await proxy?.drain(1000);
    for (const server of servers) {
      (server as http.Server).closeAllConnections?.();
      server.close();
    }
  });

  async function runRequest(c: RequestCase): Promise<void> {
    const bytes = Buffer.from(c.bytes, 'latin1');
    const record = new CaseRecord();
    current = record;
    const answer = await exchange(port, bytes);
    await record.settled();
    const view = proxyRequests(bytes);
    const responses = splitResponses(answer);
    const own = responses.findIndex((r) => r.own);
    // Forwarded: the requests answered before the proxy's own error page, if any (it is the last).
    const forwarded = own < 0 ? responses.length : own;
    assert.ok(own < 0 || own === responses.length - 1, 'the proxy answered after its own error page');
    const complete = record.requests.filter((r) => r.complete);
    stats.requests++;

    if (c.llhttpStricter !== undefined) {
      stats.llhttpStricter++;
      assert.ok(record.refErrors.length > 0, `listed as refused by llhttp, but llhttp accepted: ${c.llhttpStricter}`);
      assert.equal(complete.length, 0);
      assert.equal(own, -1, 'listed as forwarded, but the proxy refused it');
      return;
    }

    // A message the proxy cut (it ended early, or failed in its body after the head went out) ends early
    // for the reference too: that is agreement, not a refusal.
    const refused = view.end === 'incomplete' || view.end === 'refused' ? record.refErrors.filter((code) => code !== 'HPE_INVALID_EOF_STATE') : record.refErrors;
    assert.deepEqual(refused, [], 'llhttp refused bytes the proxy forwarded');
    assert.ok(forwarded <= view.messages.length, `the backend answered ${forwarded} requests, the proxy parsed ${view.messages.length}`);
    // Every request the proxy forwarded reached the reference whole, and nothing else did.
    assert.equal(complete.length, forwarded, `the reference parsed ${complete.length} requests, the proxy forwarded ${forwarded}`);
    for (let i = 0; i < forwarded; i++) {
      const mine = view.messages[i] as Message;
      const seen = complete[i] as RefRequest;
      const body = Buffer.concat(seen.body);
      const host = seen.rawHeaders[seen.rawHeaders.findIndex((v, k) => k % 2 === 0 && v.toLowerCase() === 'host') + 1];
      const theirs = splitTarget(seen.method, seen.url, host);
      assert.deepEqual(
        { method: seen.method, host: theirs.host, target: theirs.path, body: body.toString('latin1') },
        { method: mine.method, host: mine.host, target: mine.target, body: mine.body.toString('latin1') },
        `request ${i}: the backend's meaning differs from the proxy's`,
      );
      assertFraming(seen.rawHeaders, body.length, `request ${i}`);
    }
    if (forwarded < view.messages.length) {
      // Parsed but not forwarded: refused while routing (no route, invalid host), with an answer of the proxy's own.
      assert.ok(own >= 0, 'a parsed request was neither forwarded nor refused');
    } else if (view.end === 'refused') {
      assert.ok(own >= 0, `the parser refuses (${view.status}), the listener did not answer so`);
      assert.equal(responses[own]?.status, view.status);
    }
    if (own >= 0) stats.requestsRefused++;
    else if (forwarded > 0) stats.requestsForwarded++;
    else stats.requestsCut++;
    if (c.expect === 'refuse') assert.ok(own >= 0 && forwarded === 0, 'the RFCs say refuse; the proxy did not');
    if (c.expect === 'forward') assert.ok(forwarded > 0 && own < 0, 'the RFCs say forward; the proxy did not');
  }

  it(`requests: ${REQUEST_CASES.length} cases`, async () => {
    const failures: string[] = [];
    for (const c of REQUEST_CASES) {
      try {
        await runRequest(c);
      } catch (err) {
        failures.push(`${c.name} ${JSON.stringify(c.bytes)}: ${(err as Error).message.split('\n')[0]}`);
      }
    }
    assert.deepEqual(failures, []);
  });

  /** What a node:http client makes of `bytes` as the answer to a `method` request (the replay server sends them). */
  function referenceResponse(bytes: Buffer, method: string): Promise<{ status: number; rawHeaders: string[]; body: Buffer } | { error: string }> {
    replayBytes = bytes;
    return new Promise((resolve) => {
      {
        const req = http.request({ host: '127.0.0.1', port: replayPort, method, path: '/r', agent: false, headers: { host: 'r.test', connection: 'close' } }, (res) => {
          const body: Buffer[] = [];
          res.on('data', (chunk: Buffer) => body.push(chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, rawHeaders: res.rawHeaders, body: Buffer.concat(body) }));
          res.on('aborted', () => resolve({ error: 'aborted' }));
          res.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
        });
        req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
        req.end();
      }
    });
  }

  async function runResponse(c: ResponseCase): Promise<void> {
    const method = c.method ?? 'GET';
    const record = new CaseRecord();
    record.answer = Buffer.from(c.bytes, 'latin1');
    current = record;
    const answer = await exchange(port, Buffer.from(`${method} /r HTTP/1.1\r\nHost: r.test\r\nConnection: close\r\n\r\n`, 'latin1'));
    await record.settled();
    const view = proxyResponse(record.answer, method);
    const own = /\r\nx-polyproxy-error: /i.test(answer.toString('latin1', 0, Math.max(0, answer.indexOf('\r\n\r\n', 0, 'latin1'))));
    stats.responses++;
    if (own) {
      stats.responsesRefused++;
      assert.equal(view.end, 'refused', `the proxy answered its own error page, its parser does not refuse (${JSON.stringify(answer.toString('latin1'))})`);
      assert.match(answer.toString('latin1'), /^HTTP\/1\.1 502 /);
      assert.notEqual(c.expect, 'forward', 'the RFCs say forward; the proxy did not');
      return;
    }
    assert.notEqual(view.end, 'refused', `the parser refuses, the proxy forwarded: ${JSON.stringify(answer.toString('latin1'))}`);
    const seen = await referenceResponse(answer, method);
    if (c.llhttpStricter !== undefined) {
      stats.llhttpStricter++;
      assert.ok('error' in seen, `listed as refused by llhttp, but llhttp accepted: ${c.llhttpStricter}`);
      assert.equal(own, false);
      return;
    }
    if (view.end === 'done') {
      const message = view.message as Message;
      assert.ok(!('error' in seen), `llhttp refused what the proxy forwarded (${'error' in seen ? seen.error : ''}): ${JSON.stringify(answer.toString('latin1'))}`);
      assert.deepEqual({ status: seen.status, body: seen.body.toString('latin1') }, { status: message.status, body: message.body.toString('latin1') }, "the client's meaning differs from the proxy's");
      assertFraming(seen.rawHeaders, seen.body.length, 'response');
      stats.responsesForwarded++;
    } else if (view.end === 'cut') {
      stats.responsesCut++;
      // The head went out, the body did not end as framed: the client must not see a complete response.
      assert.ok('error' in seen, `the proxy cut the response, llhttp saw a complete one: ${JSON.stringify(answer.toString('latin1'))}`);
    }
    if (c.expect === 'refuse') assert.ok(own, 'the RFCs say refuse (502); the proxy did not');
    if (c.expect === 'forward') assert.equal(view.end, 'done', 'the RFCs say forward; the proxy did not');
  }

  it(`responses: ${RESPONSE_CASES.length} cases`, async (t) => {
    const failures: string[] = [];
    for (const c of RESPONSE_CASES) {
      try {
        await runResponse(c);
      } catch (err) {
        failures.push(`${c.name} ${JSON.stringify(c.bytes)}: ${(err as Error).message.split('\n')[0]}`);
      }
    }
    // The figures README's Security section quotes.
    t.diagnostic(`conformance: ${JSON.stringify(stats)}`);
    assert.deepEqual(failures, []);
  });
});
