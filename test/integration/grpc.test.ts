/**
 * gRPC through the http listener (issue 20): @grpc/grpc-js client →
 * polyproxy (h2c, routed by :authority) → @grpc/grpc-js server, for unary,
 * server-streaming, client-streaming and bidi calls with metadata and
 * trailers passing through; a client deadline that expires cancels the
 * backend's call; the proxy's own grpc-timeout enforcement answers
 * DEADLINE_EXCEEDED as a trailers-only response; a down backend is
 * UNAVAILABLE and an unknown authority NOT_FOUND (trailers-only, not HTML);
 * a route with `protocol: h2` sends ordinary (non-gRPC) requests to an
 * h2c backend.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { IncomingHttpHeaders } from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { request } from 'undici';
import { ROOT, startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { parsePrometheus, sample } from '../helpers/prometheus.ts';

interface Msg {
  text: string;
  n: number;
}

type EchoClient = grpc.Client & {
  Unary(msg: Msg, md: grpc.Metadata, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Msg) => void): grpc.ClientUnaryCall;
  ServerStream(msg: Msg, md?: grpc.Metadata): grpc.ClientReadableStream<Msg>;
  ClientStream(cb: (err: grpc.ServiceError | null, res?: Msg) => void): grpc.ClientWritableStream<Msg>;
  Bidi(): grpc.ClientDuplexStream<Msg, Msg>;
  Slow(msg: Msg, md: grpc.Metadata, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Msg) => void): grpc.ClientUnaryCall;
};

const definition = protoLoader.loadSync(path.join(ROOT, 'test/fixtures/grpc/echo.proto'), { keepCase: true, defaults: true });
const proto = grpc.loadPackageDefinition(definition) as unknown as { polyproxy: { test: { Echo: grpc.ServiceClientConstructor } } };
const Echo = proto.polyproxy.test.Echo;

async function startGrpcServer(tag: string, cancelled: string[]): Promise<{ server: grpc.Server; endpoint: string }> {
  const server = new grpc.Server();
  server.addService(Echo.service, {
    Unary(call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
      const md = new grpc.Metadata();
      md.set('x-backend', tag);
      call.sendMetadata(md);
      const method = call.getPath();
      const xff = call.metadata.get('x-forwarded-for')[0];
      cb(null, { text: `${tag}:${call.request.text}:${String(xff)}:${method}`, n: call.request.n + 1 }, trailer('unary'));
    },
    ServerStream(call: grpc.ServerWritableStream<Msg, Msg>) {
      for (let i = 0; i < call.request.n; i++) call.write({ text: `${tag}:${i}`, n: i });
      call.end(trailer('server-stream'));
    },
    ClientStream(call: grpc.ServerReadableStream<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
      const texts: string[] = [];
      call.on('data', (m: Msg) => texts.push(m.text));
      call.on('end', () => cb(null, { text: `${tag}:${texts.join(',')}`, n: texts.length }));
    },
    Bidi(call: grpc.ServerDuplexStream<Msg, Msg>) {
      call.on('data', (m: Msg) => call.write({ text: `${tag}:${m.text.toUpperCase()}`, n: m.n * 2 }));
      call.on('end', () => call.end());
    },
    Slow(call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
      const timer = setTimeout(() => cb(null, { text: 'late', n: 0 }), 5000);
      call.on('cancelled', () => {
        clearTimeout(timer);
        cancelled.push(call.request.text);
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err === null ? resolve(p) : reject(err))));
  return { server, endpoint: `127.0.0.1:${port}` };
}

function trailer(kind: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('x-trailer', kind);
  return md;
}

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function unary(client: EchoClient, msg: Msg, options: grpc.CallOptions = {}): Promise<{ res: Msg; headers: grpc.Metadata; trailers: grpc.Metadata }> {
  return new Promise((resolve, reject) => {
    let headers = new grpc.Metadata();
    const call = client.Unary(msg, new grpc.Metadata(), options, (err, res) => {
      if (err !== null) reject(err);
      else
        call.once('status', (status: grpc.StatusObject) => {
          resolve({ res: res as Msg, headers, trailers: status.metadata });
        });
    });
    call.on('metadata', (md: grpc.Metadata) => {
      headers = md;
    });
  });
}

describe('gRPC through the http listener', () => {
  const cancelled: string[] = [];
  let a: { server: grpc.Server; endpoint: string };
  let b: { server: grpc.Server; endpoint: string };
  let plainH2: http2.Http2Server;
  let cli: RunningCli;
  let port = 0;
  let admin = '';
  const clients: grpc.Client[] = [];

  const client = (authority: string): EchoClient => {
    const c = new Echo(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': authority }) as unknown as EchoClient;
    clients.push(c);
    return c;
  };

  before(async () => {
    a = await startGrpcServer('A', cancelled);
    b = await startGrpcServer('B', cancelled);
    plainH2 = http2.createServer();
    plainH2.on('stream', (stream, headers) => {
      // A backend that keeps no deadline and never answers (grpc-js servers enforce grpc-timeout themselves and would race the proxy).
      if (String(headers[':path']).startsWith('/hang')) return;
      stream.respond({ ':status': 200, 'content-type': 'text/plain', 'x-saw-scheme': String(headers[':scheme']) });
      stream.end(`h2 backend saw ${String(headers[':method'])} ${String(headers[':path'])} for ${String(headers[':authority'])}`);
    });
    await new Promise<void>((resolve) => plainH2.listen(0, '127.0.0.1', resolve));
    const file = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      admin: { host: '127.0.0.1', port: 0 },
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: {
        // Plain routes: gRPC (content-type application/grpc) goes to HTTP/2 backends whatever the route says.
        'a.grpc.test': a.endpoint,
        'b.grpc.test': { endpoint: b.endpoint, protocol: 'h2' },
        'down.grpc.test': `127.0.0.1:${await deadPort()}`,
        'h2.test': { endpoint: `127.0.0.1:${(plainH2.address() as AddressInfo).port}`, protocol: 'h2' },
      },
      listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 }],
    });
    cli = await startCli(['--config', file]);
    port = cli.port('web');
    admin = `http://127.0.0.1:${(cli.ready as unknown as { admin: AddressInfo }).admin.port}`;
  });

  after(async () => {
    for (const c of clients) c.close();
    await cli?.stop();
    a?.server.forceShutdown();
    b?.server.forceShutdown();
    plainH2?.close();
  });

  it('unary: two tenants by :authority, metadata, trailers and X-Forwarded-For pass through', async () => {
    const before = parsePrometheus(await (await request(`${admin}/metrics`)).body.text());
    const ra = await unary(client('a.grpc.test'), { text: 'hi', n: 41 });
    assert.equal(ra.res.n, 42);
    assert.equal(ra.res.text, 'A:hi:127.0.0.1:/polyproxy.test.Echo/Unary');
    assert.deepEqual(ra.headers.get('x-backend'), ['A']);
    assert.deepEqual(ra.trailers.get('x-trailer'), ['unary']);
    const rb = await unary(client('B.GRPC.TEST:443'), { text: 'yo', n: 1 });
    assert.equal(rb.res.text, 'B:yo:127.0.0.1:/polyproxy.test.Echo/Unary');
    // Twenty concurrent calls on one channel, each its own backend stream.
    const c = client('a.grpc.test');
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => unary(c, { text: `m${i}`, n: i })));
    assert.deepEqual(
      results.map((r) => r.res.n),
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    const now = parsePrometheus(await (await request(`${admin}/metrics`)).body.text());
    assert.equal(sample(now, 'polyproxy_http2_backend_streams_total', { listener: 'web' }) - sample(before, 'polyproxy_http2_backend_streams_total', { listener: 'web' }), 22);
  });

  it('server streaming, client streaming and bidi', async () => {
    const c = client('a.grpc.test');
    const streamed = await new Promise<{ msgs: Msg[]; trailers: grpc.Metadata }>((resolve, reject) => {
      const msgs: Msg[] = [];
      const call = c.ServerStream({ text: '', n: 50 });
      call.on('data', (m: Msg) => msgs.push(m));
      call.on('status', (s: grpc.StatusObject) => resolve({ msgs, trailers: s.metadata }));
      call.on('error', reject);
    });
    assert.equal(streamed.msgs.length, 50);
    assert.equal(streamed.msgs[49]?.text, 'A:49');
    assert.deepEqual(streamed.trailers.get('x-trailer'), ['server-stream']);

    const summed = await new Promise<Msg>((resolve, reject) => {
      const call = c.ClientStream((err, res) => (err === null ? resolve(res as Msg) : reject(err)));
      for (const text of ['x', 'y', 'z']) call.write({ text, n: 0 });
      call.end();
    });
    assert.deepEqual(summed, { text: 'A:x,y,z', n: 3 });

    const replies = await new Promise<Msg[]>((resolve, reject) => {
      const call = client('b.grpc.test').Bidi();
      const got: Msg[] = [];
      call.on('data', (m: Msg) => {
        got.push(m);
        // Ping-pong: the next message goes after the previous reply came back through the proxy.
        if (got.length < 5) call.write({ text: `w${got.length}`, n: got.length });
        else call.end();
      });
      call.on('end', () => resolve(got));
      call.on('error', reject);
      call.write({ text: 'w0', n: 0 });
    });
    assert.deepEqual(
      replies.map((m) => m.text),
      ['B:W0', 'B:W1', 'B:W2', 'B:W3', 'B:W4'],
    );
  });

  it('a client deadline that expires: DEADLINE_EXCEEDED, and the backend call is cancelled', async () => {
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      client('a.grpc.test').Slow({ text: 'deadline-1', n: 0 }, new grpc.Metadata(), { deadline: Date.now() + 300 }, (e) => resolve(e as grpc.ServiceError));
    });
    assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED);
    // The cancellation reaches the backend (RST_STREAM through the proxy).
    for (let i = 0; i < 100 && !cancelled.includes('deadline-1'); i++) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.ok(cancelled.includes('deadline-1'), 'the backend saw the call cancelled');
  });

  it('the proxy enforces grpc-timeout itself: a trailers-only DEADLINE_EXCEEDED', async () => {
    // A raw client that sends grpc-timeout but keeps no deadline of its own, to a backend that keeps none either and never answers.
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const headers = await new Promise<IncomingHttpHeaders>((resolve, reject) => {
        const stream = session.request({ ':method': 'POST', ':path': '/hang/polyproxy.test.Echo/Slow', ':authority': 'h2.test', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '200m' });
        stream.on('response', resolve);
        stream.on('error', reject);
        // One empty message (5-byte frame header, length 0 = Msg{}), stream left open.
        stream.write(Buffer.from([0, 0, 0, 0, 0]));
      });
      assert.equal(headers[':status'], 200);
      assert.equal(headers['content-type'], 'application/grpc');
      assert.equal(headers['grpc-status'], String(grpc.status.DEADLINE_EXCEEDED));
      assert.equal(headers['x-polyproxy-error'], 'PP_ERR_TIMEOUT');
    } finally {
      session.close();
    }
  });

  it('a down backend: UNAVAILABLE, trailers-only, not HTML', async () => {
    const err = await unary(client('down.grpc.test'), { text: 'x', n: 0 }).then(
      () => assert.fail('the call succeeded'),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(err.code, grpc.status.UNAVAILABLE);
    assert.match(err.details, /down\.grpc\.test/);
    assert.deepEqual(err.metadata.get('x-polyproxy-error'), ['PP_ERR_BACKEND_UNREACHABLE']);
  });

  it('an unknown authority: NOT_FOUND on that call; calls to other authorities on the same channel target go on', async () => {
    const err = await unary(client('nobody.grpc.test'), { text: 'x', n: 0 }).then(
      () => assert.fail('the call succeeded'),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(err.code, grpc.status.NOT_FOUND);
    assert.equal(err.details, 'No route for host "nobody.grpc.test".');
    // Raw: one connection, a gRPC call to an unknown authority and one to a known one.
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const call = (authority: string): Promise<IncomingHttpHeaders> =>
        new Promise((resolve, reject) => {
          const stream = session.request({ ':method': 'POST', ':path': '/polyproxy.test.Echo/Unary', ':authority': authority, 'content-type': 'application/grpc', te: 'trailers' });
          let head: IncomingHttpHeaders = {};
          stream.on('response', (h) => {
            head = h;
          });
          stream.on('trailers', (t) => {
            head = { ...head, ...t };
          });
          stream.on('end', () => resolve(head));
          stream.on('error', reject);
          stream.resume();
          stream.end(Buffer.from([0, 0, 0, 0, 0]));
        });
      const [unknown, known] = await Promise.all([call('nobody.grpc.test'), call('a.grpc.test')]);
      assert.equal(unknown['grpc-status'], String(grpc.status.NOT_FOUND));
      assert.equal(known['grpc-status'], '0');
    } finally {
      session.close();
    }
  });

  it('a route with protocol: h2 sends ordinary requests to an h2c backend', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const reply = await new Promise<{ headers: IncomingHttpHeaders; body: string }>((resolve, reject) => {
        const stream = session.request({ ':method': 'GET', ':path': '/page?q=1', ':authority': 'h2.test' });
        let headers: IncomingHttpHeaders = {};
        let body = '';
        stream.on('response', (h) => {
          headers = h;
        });
        stream.setEncoding('utf8');
        stream.on('data', (c: string) => {
          body += c;
        });
        stream.on('end', () => resolve({ headers, body }));
        stream.on('error', reject);
      });
      assert.equal(reply.headers[':status'], 200);
      assert.equal(reply.headers['x-saw-scheme'], 'http');
      assert.equal(reply.body, 'h2 backend saw GET /page?q=1 for h2.test');
    } finally {
      session.close();
    }
  });
});
