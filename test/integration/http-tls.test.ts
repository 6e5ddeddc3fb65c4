/**
 * HTTPS on the http listener through the real CLI: the certificate is
 * chosen by SNI (exact, one-label wildcard, exact over wildcard, a default
 * for no SNI or an unknown name), ALPN prefers h2 (issue 20) and gives
 * http/1.1 to clients offering only that, requests inside TLS route by Host to two node:http
 * backends (https.request, undici, curl) with X-Forwarded-Proto: https, and
 * the X-Proxy-* telemetry headers are absent by default and present with
 * `telemetryHeaders: true` (X-Proxy-Cache hit on the second request).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { makeTestPki } from '../helpers/certs.ts';
import type { TestPki } from '../helpers/certs.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';

const execFileAsync = promisify(execFile);

interface Echo {
  tag: string;
  url: string;
  host: string;
  proto: string | undefined;
  /** Request headers starting with x-proxy- (the proxy must not send any). */
  proxyHeaders: string[];
}

async function startBackend(tag: string): Promise<{ server: http.Server; endpoint: string }> {
  const server = http.createServer((req, res) => {
    const echo: Echo = {
      tag,
      url: req.url ?? '/',
      host: req.headers.host ?? '',
      proto: req.headers['x-forwarded-proto'] as string | undefined,
      proxyHeaders: Object.keys(req.headers).filter((h) => h.startsWith('x-proxy-')),
    };
    const body = JSON.stringify(echo);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  server.keepAliveTimeout = 60000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, endpoint: `127.0.0.1:${(server.address() as AddressInfo).port}` };
}

interface Handshake {
  /** The served certificate's subject CN. */
  cn: string;
  fingerprint: string;
  alpn: string | false;
  authorized: boolean;
  authorizationError: string | null;
}

/** A bare TLS handshake against `port`, reporting what the proxy served. */
function handshake(port: number, ca: Buffer, options: { servername?: string; alpn?: string[] } = {}): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      ca,
      rejectUnauthorized: false,
      // Node sends SNI unless servername is '' (and never for an IP address).
      servername: options.servername ?? '',
      ...(options.alpn === undefined ? {} : { ALPNProtocols: options.alpn }),
    });
    socket.once('secureConnect', () => {
      const cert = socket.getPeerX509Certificate();
      const result: Handshake = {
        cn: /CN=([^\n]*)/.exec(cert?.subject ?? '')?.[1] ?? '',
        fingerprint: cert?.fingerprint256 ?? '',
        alpn: socket.alpnProtocol ?? false,
        authorized: socket.authorized,
        authorizationError: socket.authorizationError === null ? null : String(socket.authorizationError),
      };
      socket.end();
      resolve(result);
    });
    socket.once('error', reject);
  });
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Echo;
  alpn: string | false;
}

/** One HTTPS request with SNI = Host, verified against the test CA. */
function get(port: number, ca: Buffer, host: string, path = '/', servername = host): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path, ca, servername, headers: { host }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          const socket = res.socket as tls.TLSSocket;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Echo, alpn: socket.alpnProtocol ?? false });
        } catch (err) {
          reject(err as Error);
        }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('http listener with tls', () => {
  let pki: TestPki;
  let ca: Buffer;
  let fp: { default: string; a: string; b: string };
  const backends: http.Server[] = [];
  let cli: RunningCli;
  let web = 0;
  let tele = 0;

  before(async () => {
    pki = await makeTestPki({ serverNames: ['localhost', '127.0.0.1'], extraServers: { a: ['a.example.com', 'exact.foo.test'], b: ['*.foo.test'] } });
    ca = await readFile(pki.caCert);
    const pem = async (file: string): Promise<string> => new X509Certificate(await readFile(file)).fingerprint256;
    const [a, b] = pki.extraServers.a !== undefined && pki.extraServers.b !== undefined ? [pki.extraServers.a, pki.extraServers.b] : assert.fail('extraServers missing');
    fp = { default: await pem(pki.serverCert), a: await pem(a.cert), b: await pem(b.cert) };
    const backendA = await startBackend('A');
    const backendB = await startBackend('B');
    backends.push(backendA.server, backendB.server);
    const tlsBlock = {
      cert: pki.serverCert,
      key: pki.serverKey,
      certificates: [
        { names: ['a.example.com', 'EXACT.foo.test'], cert: a.cert, key: a.key },
        { names: ['*.foo.test'], cert: b.cert, key: b.key },
      ],
    };
    const file = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: { 'a.example.com': backendA.endpoint, '*.foo.test': backendB.endpoint, localhost: backendA.endpoint },
      listeners: [
        { name: 'web', protocol: 'http', host: '127.0.0.1', port: 0, tls: tlsBlock },
        { name: 'tele', protocol: 'http', host: '127.0.0.1', port: 0, tls: tlsBlock, telemetryHeaders: true },
      ],
    });
    cli = await startCli(['--config', file]);
    web = cli.port('web');
    tele = cli.port('tele');
  });

  after(async () => {
    await cli?.stop();
    for (const server of backends) {
      server.closeAllConnections();
      server.close();
    }
    await pki?.cleanup();
  });

  it('serves the certificate SNI names: exact, wildcard, exact over wildcard, case-insensitive', async () => {
    const a = await handshake(web, ca, { servername: 'a.example.com' });
    assert.equal(a.fingerprint, fp.a);
    assert.equal(a.cn, 'polyproxy-test-server-a');
    assert.equal(a.authorized, true, a.authorizationError ?? '');
    const b = await handshake(web, ca, { servername: 'b.foo.test' });
    assert.equal(b.fingerprint, fp.b);
    assert.equal(b.authorized, true, b.authorizationError ?? '');
    assert.equal((await handshake(web, ca, { servername: 'B.Foo.TEST' })).fingerprint, fp.b);
    assert.equal((await handshake(web, ca, { servername: 'exact.foo.test' })).fingerprint, fp.a);
  });

  it('serves the default certificate without SNI or for a name no entry lists', async () => {
    const none = await handshake(web, ca);
    assert.equal(none.fingerprint, fp.default);
    assert.equal(none.cn, 'polyproxy-test-server');
    for (const servername of ['unknown.test', 'a.b.foo.test', 'foo.test', 'example.com', 'localhost']) {
      assert.equal((await handshake(web, ca, { servername })).fingerprint, fp.default, servername);
    }
  });

  it('ALPN picks h2 for a client offering it (issue 20), http/1.1 for one offering only that', async () => {
    assert.equal((await handshake(web, ca, { servername: 'a.example.com', alpn: ['h2', 'http/1.1'] })).alpn, 'h2');
    assert.equal((await handshake(web, ca, { servername: 'a.example.com', alpn: ['http/1.1', 'h2'] })).alpn, 'h2');
    assert.equal((await handshake(web, ca, { servername: 'b.foo.test', alpn: ['http/1.1'] })).alpn, 'http/1.1');
    assert.equal((await handshake(web, ca, { servername: 'b.foo.test' })).alpn, false);
  });

  it('routes HTTPS requests by Host to two backends, with X-Forwarded-Proto: https', async () => {
    const a = await get(web, ca, 'a.example.com', '/one');
    assert.equal(a.status, 200);
    assert.deepEqual({ tag: a.body.tag, url: a.body.url, host: a.body.host, proto: a.body.proto }, { tag: 'A', url: '/one', host: 'a.example.com', proto: 'https' });
    const b = await get(web, ca, 'shop.foo.test', '/two');
    assert.deepEqual({ tag: b.body.tag, url: b.body.url, host: b.body.host, proto: b.body.proto }, { tag: 'B', url: '/two', host: 'shop.foo.test', proto: 'https' });
    // The SNI name picks the certificate; the Host header alone picks the backend.
    const cross = await get(web, ca, 'x.foo.test', '/three', 'a.example.com');
    assert.equal(cross.body.tag, 'B');
  });

  it('undici with a keep-alive agent (SNI a.example.com) reaches both backends by Host', async () => {
    const dispatcher = new Agent({ connect: { ca, servername: 'a.example.com' } });
    try {
      const tags: string[] = [];
      for (const host of ['a.example.com', 'q.foo.test', 'a.example.com']) {
        const res = await request(`https://127.0.0.1:${web}/u`, { dispatcher, headers: { host } });
        assert.equal(res.statusCode, 200);
        const body = (await res.body.json()) as Echo;
        assert.equal(body.proto, 'https');
        tags.push(body.tag);
      }
      assert.deepEqual(tags, ['A', 'B', 'A']);
    } finally {
      await dispatcher.close();
    }
  });

  it('curl --cacert --resolve verifies the SNI certificate and speaks HTTP/2 (ALPN h2)', async () => {
    for (const [host, tag] of [['a.example.com', 'A'], ['c.foo.test', 'B']] as const) {
      const { stdout } = await execFileAsync('/usr/bin/curl', [
        '-sS', '--http2', '--cacert', pki.caCert, '--resolve', `${host}:${web}:127.0.0.1`,
        '-w', '\n%{http_version} %{ssl_verify_result}', `https://${host}:${web}/curl`,
      ]);
      const [json, meta] = stdout.split('\n');
      const body = JSON.parse(json ?? '') as Echo;
      assert.equal(body.tag, tag);
      assert.equal(body.proto, 'https');
      assert.equal(body.host, `${host}:${web}`);
      assert.equal(meta, '2 0');
    }
  });

  it('a plaintext request to the TLS listener gets no HTTP answer', async () => {
    const result = await execFileAsync('/usr/bin/curl', ['-sS', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Host: a.example.com', `http://127.0.0.1:${web}/`]).then(
      ({ stdout }) => stdout,
      (err: { stdout?: string }) => err.stdout ?? '',
    );
    assert.equal(result, '000');
  });

  it('telemetry headers are absent by default', async () => {
    for (const host of ['a.example.com', 'a.example.com', 'z.foo.test']) {
      const res = await get(web, ca, host);
      assert.equal(res.status, 200);
      assert.deepEqual(Object.keys(res.headers).filter((h) => h.startsWith('x-proxy-')), []);
      assert.deepEqual(res.body.proxyHeaders, []);
    }
  });

  it('telemetryHeaders: true adds X-Proxy-Resolve-Ms, X-Proxy-Cache (hit the second time) and X-Proxy-Pool', async () => {
    // A Host no other test used, so the first lookup is a cache miss.
    const first = await get(tele, ca, 'telemetry.foo.test', '/t1');
    assert.equal(first.status, 200);
    assert.equal(first.body.tag, 'B');
    assert.equal(first.body.proto, 'https');
    assert.match(String(first.headers['x-proxy-resolve-ms']), /^\d+\.\d{3}$/);
    assert.equal(first.headers['x-proxy-cache'], 'miss');
    assert.match(String(first.headers['x-proxy-pool']), /^(new|reused)$/);
    const second = await get(tele, ca, 'telemetry.foo.test', '/t2');
    assert.equal(second.headers['x-proxy-cache'], 'hit');
    assert.match(String(second.headers['x-proxy-resolve-ms']), /^\d+\.\d{3}$/);
    // The request after the first found its backend connection in the pool.
    assert.equal(second.headers['x-proxy-pool'], 'reused');
    // Headers go to the client only, never to the backend.
    assert.deepEqual(second.body.proxyHeaders, []);
  });
});
