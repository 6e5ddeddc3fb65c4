/**
 * HTTP/2 over TLS to backends (issue 20: "h2c, or h2 over TLS"): a route
 * with `protocol: h2` and `tls` reaches its backend with ALPN h2, SNI and
 * the certificate verified against the route's CA. A @grpc/grpc-js server
 * with TLS credentials behind the proxy serves a grpc-js client that talks
 * h2c to the proxy; curl --http2 over the proxy's TLS port reaches a
 * node:http2 secure server. A backend whose certificate does not verify,
 * or that does not choose h2 in ALPN, is a 502 (gRPC: UNAVAILABLE).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { makeTestPki } from '../helpers/certs.ts';
import type { TestPki } from '../helpers/certs.ts';
import { ROOT, startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';

const execFileAsync = promisify(execFile);

interface Msg {
  text: string;
  n: number;
}
type EchoClient = grpc.Client & {
  Unary(msg: Msg, md: grpc.Metadata, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Msg) => void): grpc.ClientUnaryCall;
  ServerStream(msg: Msg, md?: grpc.Metadata): grpc.ClientReadableStream<Msg>;
};

const definition = protoLoader.loadSync(path.join(ROOT, 'test/fixtures/grpc/echo.proto'), { keepCase: true, defaults: true });
const Echo = (grpc.loadPackageDefinition(definition) as unknown as { polyproxy: { test: { Echo: grpc.ServiceClientConstructor } } }).polyproxy.test.Echo;

function unary(client: EchoClient, msg: Msg): Promise<{ res: Msg; trailers: grpc.Metadata }> {
  return new Promise((resolve, reject) => {
    const call = client.Unary(msg, new grpc.Metadata(), {}, (err, res) => {
      if (err !== null) reject(err);
      else call.once('status', (status: grpc.StatusObject) => resolve({ res: res as Msg, trailers: status.metadata }));
    });
  });
}

describe('HTTP/2 over TLS to backends', () => {
  let pki: TestPki;
  let grpcServer: grpc.Server;
  let grpcPort = 0;
  let h2Server: http2.Http2SecureServer;
  let h1Only: https.Server;
  let cli: RunningCli;
  let port = 0;
  let tlsPort = 0;
  const clients: grpc.Client[] = [];
  const sniSeen: string[] = [];

  const client = (authority: string): EchoClient => {
    const c = new Echo(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': authority }) as unknown as EchoClient;
    clients.push(c);
    return c;
  };

  before(async () => {
    pki = await makeTestPki({ serverNames: ['backend.internal', '127.0.0.1', 'proxy.test', 'web.tls.test'] });
    const ca = readFileSync(pki.caCert);
    const cert = readFileSync(pki.serverCert);
    const key = readFileSync(pki.serverKey);

    grpcServer = new grpc.Server();
    grpcServer.addService(Echo.service, {
      Unary(call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
        const md = new grpc.Metadata();
        md.set('x-trailer', 'over-tls');
        cb(null, { text: `tls:${call.request.text}:${String(call.metadata.get('x-forwarded-for')[0])}`, n: call.request.n + 1 }, md);
      },
      ServerStream(call: grpc.ServerWritableStream<Msg, Msg>) {
        for (let i = 0; i < call.request.n; i++) call.write({ text: `s${i}`, n: i });
        call.end();
      },
    });
    grpcPort = await new Promise<number>((resolve, reject) =>
      grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], false), (err, p) => (err === null ? resolve(p) : reject(err))),
    );

    h2Server = http2.createSecureServer({ cert, key, allowHTTP1: false });
    h2Server.on('stream', (stream, headers) => {
      const socket = stream.session?.socket as { servername?: string | false } | undefined;
      sniSeen.push(String(socket?.servername));
      stream.respond({ ':status': 200, 'content-type': 'text/plain' });
      stream.end(`h2 over TLS: ${String(headers[':method'])} ${String(headers[':path'])} scheme=${String(headers[':scheme'])} authority=${String(headers[':authority'])}`);
    });
    await new Promise<void>((resolve) => h2Server.listen(0, '127.0.0.1', resolve));

    // A TLS backend that speaks only HTTP/1.1 (ALPN http/1.1).
    h1Only = https.createServer({ cert, key, ALPNProtocols: ['http/1.1'] }, (_req, res) => res.end('h1 only'));
    await new Promise<void>((resolve) => h1Only.listen(0, '127.0.0.1', resolve));

    const h2Port = (h2Server.address() as AddressInfo).port;
    const file = await writeConfig({
      workers: 1,
      logLevel: 'error',
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: {
        // Verified by name (SNI backend.internal) and the test CA.
        'grpc.tls.test': { endpoint: `127.0.0.1:${grpcPort}`, protocol: 'h2', tls: { servername: 'backend.internal', ca: pki.caCert } },
        // No servername: the certificate is checked against the endpoint's IP address.
        'web.tls.test': { endpoint: `127.0.0.1:${h2Port}`, protocol: 'h2', tls: { ca: pki.caCert } },
        'sni.tls.test': { endpoint: `127.0.0.1:${h2Port}`, protocol: 'h2', tls: { ca: pki.caCert, servername: 'backend.internal' } },
        // The system CAs do not know the test CA.
        'untrusted.tls.test': { endpoint: `127.0.0.1:${grpcPort}`, protocol: 'h2', tls: true },
        'h1only.tls.test': { endpoint: `127.0.0.1:${(h1Only.address() as AddressInfo).port}`, protocol: 'h2', tls: { ca: pki.caCert } },
      },
      listeners: [
        { name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 },
        { name: 'secure', protocol: 'http', host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey } },
      ],
    });
    cli = await startCli(['--config', file]);
    port = cli.port('web');
    tlsPort = cli.port('secure');
  });

  after(async () => {
    for (const c of clients) c.close();
    await cli?.stop();
    grpcServer?.forceShutdown();
    h2Server?.close();
    h1Only?.close();
    await pki?.cleanup();
  });

  it('grpc-js client (h2c) → proxy → grpc-js server with TLS credentials: unary and server streaming', async () => {
    const c = client('grpc.tls.test');
    const r = await unary(c, { text: 'hello', n: 1 });
    assert.equal(r.res.text, 'tls:hello:127.0.0.1');
    assert.equal(r.res.n, 2);
    assert.deepEqual(r.trailers.get('x-trailer'), ['over-tls']);
    const msgs = await new Promise<Msg[]>((resolve, reject) => {
      const got: Msg[] = [];
      const call = c.ServerStream({ text: '', n: 20 });
      call.on('data', (m: Msg) => got.push(m));
      call.on('end', () => resolve(got));
      call.on('error', reject);
    });
    assert.equal(msgs.length, 20);
    // Concurrent calls share the pooled TLS session.
    const many = await Promise.all(Array.from({ length: 10 }, (_, i) => unary(c, { text: `m${i}`, n: i })));
    assert.deepEqual(
      many.map((m) => m.res.n),
      Array.from({ length: 10 }, (_, i) => i + 1),
    );
  });

  it('curl --http2 over the TLS listener → h2 over TLS backend, :scheme https; SNI from servername, none for an IP', async () => {
    const { stdout } = await execFileAsync('/usr/bin/curl', [
      '-sS',
      '--http2',
      '--cacert',
      pki.caCert,
      '--resolve',
      `web.tls.test:${tlsPort}:127.0.0.1`,
      '-w',
      '\n%{http_version} %{http_code}',
      `https://web.tls.test:${tlsPort}/page?x=1`,
    ]);
    assert.equal(stdout, `h2 over TLS: GET /page?x=1 scheme=https authority=web.tls.test:${tlsPort}\n2 200`);
    const sni = await execFileAsync('/usr/bin/curl', ['-sS', '--http2-prior-knowledge', '-H', 'Host: sni.tls.test', `http://127.0.0.1:${port}/`]);
    assert.equal(sni.stdout, 'h2 over TLS: GET / scheme=https authority=sni.tls.test');
    assert.deepEqual(sniSeen.slice(0, 2), ['false', 'backend.internal']);
  });

  it('curl --http1.1 over the TLS listener → the same h2-over-TLS backend (HTTP/1.1 translated to an HTTP/2 stream)', async () => {
    const { stdout } = await execFileAsync('/usr/bin/curl', ['-sS', '--http1.1', '--cacert', pki.caCert, '--resolve', `web.tls.test:${tlsPort}:127.0.0.1`, '-w', '\n%{http_version} %{http_code}', `https://web.tls.test:${tlsPort}/h1`]);
    assert.equal(stdout, `h2 over TLS: GET /h1 scheme=https authority=web.tls.test:${tlsPort}\n1.1 200`);
  });

  it('a certificate the route does not trust: UNAVAILABLE for gRPC, 502 for HTTP, naming the TLS failure', async () => {
    const err = await unary(client('untrusted.tls.test'), { text: 'x', n: 0 }).then(
      () => assert.fail('the call succeeded'),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(err.code, grpc.status.UNAVAILABLE);
    assert.deepEqual(err.metadata.get('x-polyproxy-error'), ['PP_ERR_BACKEND_UNREACHABLE']);
    const { stdout } = await execFileAsync('/usr/bin/curl', ['-sS', '--http2-prior-knowledge', '-H', 'Host: untrusted.tls.test', '-H', 'Accept: application/json', '-w', '\n%{http_code}', `http://127.0.0.1:${port}/`]);
    assert.match(stdout, /\n502$/);
  });

  it('a TLS backend that does not choose h2 in ALPN: 502', async () => {
    const { stdout } = await execFileAsync('/usr/bin/curl', ['-sS', '--http2-prior-knowledge', '-H', 'Host: h1only.tls.test', '-w', '\n%{http_code}', `http://127.0.0.1:${port}/`]);
    assert.match(stdout, /\n502$/);
  });
});
