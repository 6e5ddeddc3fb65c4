/**
 * HTTP/2 on the http listener through the real CLI (issue 20): curl
 * --http2 over TLS (ALPN h2) and --http2-prior-knowledge in cleartext (the
 * preface on the HTTP/1.1 port) reach two tenants routed by :authority
 * over ONE client connection; an unknown authority gets 404 on its stream
 * while the connection's other streams succeed; the listener's http2
 * settings reach the client; a header list past maxHeaderListSize resets
 * that stream only; a rapid-reset flood (node:http2 creating and
 * cancelling streams) is cut off with GOAWAY ENHANCE_YOUR_CALM while new
 * connections are served; PING, SETTINGS and CONTINUATION floods are cut
 * off with a GOAWAY and counted; `http2.enabled: false` keeps HTTP/1.1 only;
 * SIGTERM sends GOAWAY and the stream in flight finishes.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import http2 from 'node:http2';
import type { ClientHttp2Session, IncomingHttpHeaders } from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { request } from 'undici';
import { makeTestPki } from '../helpers/certs.ts';
import type { TestPki } from '../helpers/certs.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { parsePrometheus, sample } from '../helpers/prometheus.ts';

const execFileAsync = promisify(execFile);

interface Echo {
  tag: string;
  url: string;
  host: string;
  xff: string | undefined;
  proto: string | undefined;
  xhost: string | undefined;
}

async function startBackend(tag: string): Promise<{ server: http.Server; endpoint: string }> {
  const server = http.createServer((req, res) => {
    const send = (): void => {
      const one = (name: string): string | undefined => req.headers[name] as string | undefined;
      const body = JSON.stringify({ tag, url: req.url ?? '/', host: req.headers.host ?? '', xff: one('x-forwarded-for'), proto: one('x-forwarded-proto'), xhost: one('x-forwarded-host') } satisfies Echo);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (req.url === '/slow') setTimeout(send, 600);
    else if (req.url === '/echo-body') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        res.writeHead(200, { 'content-length': body.length });
        res.end(body);
      });
    } else send();
  });
  server.keepAliveTimeout = 60000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, endpoint: `127.0.0.1:${(server.address() as AddressInfo).port}` };
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function get(session: ClientHttp2Session, authority: string, path: string, extra: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'GET', ':path': path, ':authority': authority, ...extra });
    let headers: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      headers = h;
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ status: Number(headers[':status']), headers, body: Buffer.concat(chunks).toString('utf8') }));
    stream.on('error', reject);
  });
}

function connect(url: string, options: http2.SecureClientSessionOptions = {}): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url, options);
    session.once('connect', () => resolve(session));
    session.once('error', reject);
  });
}

function close(session: ClientHttp2Session): Promise<void> {
  return new Promise((resolve) => session.close(() => resolve()));
}

describe('http listener: HTTP/2', () => {
  let pki: TestPki;
  const backends: http.Server[] = [];
  let cli: RunningCli;
  let admin = '';
  let h2c = 0;
  let tls = 0;
  let tuned = 0;
  let guarded = 0;
  let h1only = 0;

  before(async () => {
    pki = await makeTestPki({ serverNames: ['localhost', '127.0.0.1', 'a.test', 'b.test'] });
    const a = await startBackend('A');
    const b = await startBackend('B');
    backends.push(a.server, b.server);
    const file = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      admin: { host: '127.0.0.1', port: 0 },
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: { 'a.test': a.endpoint, 'b.test': b.endpoint },
      listeners: [
        { name: 'h2c', protocol: 'http', host: '127.0.0.1', port: 0 },
        { name: 'tls', protocol: 'http', host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey } },
        {
          name: 'tuned',
          protocol: 'http',
          host: '127.0.0.1',
          port: 0,
          http2: { maxConcurrentStreams: 7, initialWindowSize: 100000, connectionWindowSize: 4 * 1024 * 1024, maxHeaderListSize: 4096 },
        },
        { name: 'guarded', protocol: 'http', host: '127.0.0.1', port: 0, http2: { maxResets: 50, resetWindowMs: 60000 } },
        { name: 'h1only', protocol: 'http', host: '127.0.0.1', port: 0, http2: { enabled: false } },
      ],
    });
    cli = await startCli(['--config', file]);
    admin = `http://127.0.0.1:${(cli.ready as unknown as { admin: AddressInfo }).admin.port}`;
    h2c = cli.port('h2c');
    tls = cli.port('tls');
    tuned = cli.port('tuned');
    guarded = cli.port('guarded');
    h1only = cli.port('h1only');
  });

  after(async () => {
    await cli?.stop();
    for (const server of backends) {
      server.closeAllConnections();
      server.close();
    }
    await pki?.cleanup();
  });

  const scrape = async (): Promise<Map<string, number>> => parsePrometheus(await (await request(`${admin}/metrics`)).body.text());

  /** curl with two transfers, one per tenant, on one connection (--next keeps it); returns each body and `http_version num_connects`. */
  async function curlTwoTenants(base: string, flags: string[]): Promise<Array<{ echo: Echo; meta: string }>> {
    const args = ['-sS', ...flags, '-H', 'Host: a.test', '-w', '\n%{http_version} %{num_connects}\n', `${base}/one`, '--next', ...flags, '-H', 'Host: b.test', '-w', '\n%{http_version} %{num_connects}\n', `${base}/two`];
    const { stdout } = await execFileAsync('/usr/bin/curl', args);
    const lines = stdout.trim().split('\n');
    assert.equal(lines.length, 4, stdout);
    return [0, 2].map((i) => ({ echo: JSON.parse(lines[i] as string) as Echo, meta: lines[i + 1] as string }));
  }

  it('curl --http2-prior-knowledge: cleartext HTTP/2 on the HTTP/1.1 port, routed by :authority', async () => {
    // One curl per tenant: curl 7.88.1 (Debian 12) fails its own second transfer on a reused h2c
    // prior-knowledge connection ("Error in the HTTP2 framing layer", also against a bare
    // node:http2 server); two tenants on one cleartext connection are shown with node:http2 below.
    const before = await scrape();
    for (const [host, tag] of [['a.test', 'A'], ['b.test', 'B']] as const) {
      const { stdout } = await execFileAsync('/usr/bin/curl', ['-sS', '--http2-prior-knowledge', '-H', `Host: ${host}`, '-w', '\n%{http_version}', `http://127.0.0.1:${h2c}/${tag}`]);
      const [json, version] = stdout.split('\n');
      const echo = JSON.parse(json as string) as Echo;
      assert.equal(echo.tag, tag);
      assert.equal(echo.url, `/${tag}`);
      assert.equal(echo.host, host);
      assert.equal(echo.proto, 'http');
      assert.equal(echo.xff, '127.0.0.1');
      assert.equal(version, '2');
    }
    const now = await scrape();
    assert.equal(sample(now, 'polyproxy_http_connections_total', { listener: 'h2c', version: 'h2' }) - sample(before, 'polyproxy_http_connections_total', { listener: 'h2c', version: 'h2' }), 2);
    assert.equal(sample(now, 'polyproxy_http_requests_total', { listener: 'h2c', version: 'h2' }) - sample(before, 'polyproxy_http_requests_total', { listener: 'h2c', version: 'h2' }), 2);
  });

  it('node:http2 with prior knowledge: two tenants by :authority over one cleartext connection', async () => {
    const before = await scrape();
    const session = await connect(`http://127.0.0.1:${h2c}`);
    try {
      const [a, b] = await Promise.all([get(session, 'a.test', '/one'), get(session, 'b.test:9999', '/two')]);
      assert.equal((JSON.parse(a.body) as Echo).tag, 'A');
      assert.equal((JSON.parse(b.body) as Echo).tag, 'B');
      assert.equal((JSON.parse(b.body) as Echo).host, 'b.test:9999');
    } finally {
      await close(session);
    }
    const now = await scrape();
    assert.equal(sample(now, 'polyproxy_http_connections_total', { listener: 'h2c', version: 'h2' }) - sample(before, 'polyproxy_http_connections_total', { listener: 'h2c', version: 'h2' }), 1);
    assert.equal(sample(now, 'polyproxy_http_requests_total', { listener: 'h2c', version: 'h2' }) - sample(before, 'polyproxy_http_requests_total', { listener: 'h2c', version: 'h2' }), 2);
  });

  it('HEAD over HTTP/2 to an HTTP/1.1 backend: the head with its content-length, no body (node:http2 ends a HEAD stream\'s writable side up front)', async () => {
    const session = await connect(`http://127.0.0.1:${h2c}`);
    try {
      const reply = await get(session, 'a.test', '/head', { ':method': 'HEAD' });
      assert.equal(reply.status, 200);
      assert.equal(reply.body, '');
      assert.ok(Number(reply.headers['content-length']) > 0, 'the backend\'s content-length passes');
      // The connection goes on serving.
      assert.equal((JSON.parse((await get(session, 'b.test', '/after')).body) as Echo).tag, 'B');
    } finally {
      await close(session);
    }
    const out = await execFileAsync('curl', ['-s', '-I', '--max-time', '5', '--http2-prior-knowledge', '-H', 'Host: a.test', `http://127.0.0.1:${h2c}/head`]);
    assert.match(out.stdout, /^HTTP\/2 200/);
  });

  it('curl --http2 over TLS: ALPN h2, two tenants by :authority over one connection, X-Forwarded-Proto https', async () => {
    const before = await scrape();
    const [one, two] = await curlTwoTenants(`https://127.0.0.1:${tls}`, ['--http2', '--cacert', pki.caCert]);
    assert.equal(one?.echo.tag, 'A');
    assert.equal(one?.echo.proto, 'https');
    assert.equal(one?.echo.xhost, 'a.test');
    assert.equal(two?.echo.tag, 'B');
    assert.equal(one?.meta, '2 1');
    assert.equal(two?.meta, '2 0');
    const now = await scrape();
    assert.equal(sample(now, 'polyproxy_http_connections_total', { listener: 'tls', version: 'h2' }) - sample(before, 'polyproxy_http_connections_total', { listener: 'tls', version: 'h2' }), 1);
  });

  it('HTTP/1.1 still works on the same ports (cleartext, and TLS with ALPN http/1.1)', async () => {
    const { stdout } = await execFileAsync('/usr/bin/curl', ['-sS', '-H', 'Host: a.test', '-w', '\n%{http_version}', `http://127.0.0.1:${h2c}/h1`]);
    assert.equal((JSON.parse(stdout.split('\n')[0] as string) as Echo).tag, 'A');
    assert.equal(stdout.split('\n')[1], '1.1');
    const tlsOut = await execFileAsync('/usr/bin/curl', ['-sS', '--http1.1', '--cacert', pki.caCert, '-H', 'Host: b.test', '-w', '\n%{http_version}', `https://127.0.0.1:${tls}/h1`]);
    assert.equal((JSON.parse(tlsOut.stdout.split('\n')[0] as string) as Echo).tag, 'B');
    assert.equal(tlsOut.stdout.split('\n')[1], '1.1');
    const sample1 = await scrape();
    assert.ok(sample(sample1, 'polyproxy_http_requests_total', { listener: 'h2c', version: 'h1' }) >= 1);
  });

  it('an unknown authority gets 404 on its stream while the other streams of the connection succeed', async () => {
    const session = await connect(`http://127.0.0.1:${h2c}`);
    try {
      const [a, unknown, b, json] = await Promise.all([
        get(session, 'a.test', '/x'),
        get(session, 'nobody.test', '/x'),
        get(session, 'B.TEST:8080', '/y'),
        get(session, 'nobody.test', '/z', { accept: 'application/json' }),
      ]);
      assert.equal(a.status, 200);
      assert.equal((JSON.parse(a.body) as Echo).tag, 'A');
      assert.equal(b.status, 200);
      assert.equal((JSON.parse(b.body) as Echo).tag, 'B');
      assert.equal((JSON.parse(b.body) as Echo).host, 'B.TEST:8080');
      assert.equal(unknown.status, 404);
      assert.equal(unknown.headers['x-polyproxy-error'], 'PP_ERR_NOT_FOUND');
      assert.match(unknown.body, /No route for host &#34;nobody.test&#34;/);
      assert.equal(json.status, 404);
      assert.deepEqual(JSON.parse(json.body), { error: { status: 404, code: 'PP_ERR_NOT_FOUND', message: 'No route for host "nobody.test".' } });
      // The connection is still good.
      assert.equal((await get(session, 'a.test', '/again')).status, 200);
    } finally {
      await close(session);
    }
  });

  it('request bodies stream to an HTTP/1.1 backend and back', async () => {
    const session = await connect(`http://127.0.0.1:${h2c}`);
    try {
      const body = Buffer.alloc(300_000, 'x');
      const reply = await new Promise<Buffer>((resolve, reject) => {
        const stream = session.request({ ':method': 'POST', ':path': '/echo-body', ':authority': 'a.test' });
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => resolve(Buffer.concat(chunks)));
        stream.on('error', reject);
        stream.end(body);
      });
      assert.equal(reply.length, body.length);
      assert.ok(reply.equals(body));
    } finally {
      await close(session);
    }
  });

  it('the listener’s http2 settings reach the client; a header list past maxHeaderListSize is answered 431 on that stream only', async () => {
    const session = await connect(`http://127.0.0.1:${tuned}`);
    try {
      await get(session, 'a.test', '/warm');
      const settings = session.remoteSettings;
      assert.equal(settings.maxConcurrentStreams, 7);
      assert.equal(settings.initialWindowSize, 100000);
      assert.equal(settings.maxHeaderListSize, 4096);
      assert.equal(settings.enableConnectProtocol, true); // RFC 8441: WebSockets over HTTP/2
      // The connection window: 65535 plus the WINDOW_UPDATE the proxy sent.
      assert.equal(session.state.remoteWindowSize, 4 * 1024 * 1024);
      // RFC 9113 §10.5.1: 431 (Request Header Fields Too Large); the connection and its other streams go on.
      const big = await get(session, 'a.test', '/big', { 'x-big': 'v'.repeat(6000) });
      assert.equal(big.status, 431);
      assert.match(big.body, /header/i);
      const many: Record<string, string> = {};
      for (let i = 0; i < 120; i++) many[`x-f${i}`] = 'v';
      assert.equal((await get(session, 'a.test', '/many', many)).status, 431);
      assert.equal((await get(session, 'b.test', '/after')).status, 200);
    } finally {
      await close(session);
    }
  });

  it('a rapid-reset flood is cut off with GOAWAY ENHANCE_YOUR_CALM; other connections are served', async () => {
    const before = await scrape();
    const bystander = await connect(`http://127.0.0.1:${guarded}`);
    const attacker = await connect(`http://127.0.0.1:${guarded}`);
    attacker.on('error', () => {});
    const goaway = new Promise<number>((resolve) => attacker.once('goaway', (code: number) => resolve(code)));
    try {
      for (let i = 0; i < 200 && !attacker.destroyed && !attacker.closed; i++) {
        const stream = attacker.request({ ':method': 'GET', ':path': '/slow', ':authority': 'a.test' });
        stream.on('error', () => {});
        stream.close(http2.constants.NGHTTP2_CANCEL);
        if (i % 20 === 19) await new Promise((resolve) => setImmediate(resolve));
      }
      assert.equal(await goaway, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      assert.equal((await get(bystander, 'a.test', '/still-here')).status, 200);
      const fresh = await connect(`http://127.0.0.1:${guarded}`);
      assert.equal((await get(fresh, 'b.test', '/fresh')).status, 200);
      await close(fresh);
      const now = await scrape();
      assert.equal(sample(now, 'polyproxy_http2_goaway_total', { listener: 'guarded', reason: 'rapid_reset' }) - sample(before, 'polyproxy_http2_goaway_total', { listener: 'guarded', reason: 'rapid_reset' }), 1);
    } finally {
      attacker.destroy();
      await close(bystander);
    }
  });

  it('PING, SETTINGS and CONTINUATION floods and an oversized HPACK table are cut off with GOAWAY and counted; the proxy keeps serving', async () => {
    const frame = (type: number, flags: number, stream: number, payload: Buffer): Buffer => {
      const head = Buffer.alloc(9);
      head.writeUIntBE(payload.length, 0, 3);
      head[3] = type;
      head[4] = flags;
      head.writeUInt32BE(stream, 5);
      return Buffer.concat([head, payload]);
    };
    const floods: Record<string, Buffer[]> = {
      ping: Array.from({ length: 50000 }, () => frame(6, 0, 0, Buffer.alloc(8))),
      settings: Array.from({ length: 50000 }, () => frame(4, 0, 0, Buffer.alloc(0))),
      // HEADERS without END_HEADERS on stream 1, then empty CONTINUATION frames without end.
      continuation: [frame(1, 0x1, 1, Buffer.from([0x82])), ...Array.from({ length: 50000 }, () => frame(9, 0, 1, Buffer.alloc(0)))],
      // An HPACK dynamic table size update to 100,000 bytes, past the 4,096 the proxy announced (RFC 7541 §4.2, §6.3).
      hpack: [frame(1, 0x5, 1, Buffer.from([0x3f, 0x81, 0x8d, 0x06, 0x82, 0x84, 0x86]))],
    };
    const before = await scrape();
    for (const [kind, frames] of Object.entries(floods)) {
      // The client does not read while it floods (the proxy's ACKs pile up), then reads what came.
      const received = await new Promise<Buffer>((resolve, reject) => {
        const socket = net.connect(h2c, '127.0.0.1');
        const chunks: Buffer[] = [];
        socket.pause();
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('close', () => resolve(Buffer.concat(chunks)));
        socket.on('error', reject);
        socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), frame(4, 0, 0, Buffer.alloc(0)), ...frames]));
        setTimeout(() => socket.resume(), 500);
      });
      // Walk the frames the proxy sent: the last is a GOAWAY (type 7) with an error code.
      let at = 0;
      let goaway: number | null = null;
      while (at + 9 <= received.length) {
        const length = received.readUIntBE(at, 3);
        if (received[at + 3] === 7 && at + 9 + 8 <= received.length) goaway = received.readUInt32BE(at + 9 + 4);
        at += 9 + length;
      }
      assert.ok(goaway !== null && goaway !== 0, `${kind}: GOAWAY with an error code, got ${String(goaway)}`);
      if (kind === 'hpack') assert.equal(goaway, http2.constants.NGHTTP2_COMPRESSION_ERROR);
    }
    const now = await scrape();
    const delta = (reason: string): number => sample(now, 'polyproxy_http2_goaway_total', { listener: 'h2c', reason }) - sample(before, 'polyproxy_http2_goaway_total', { listener: 'h2c', reason });
    assert.equal(delta('flood'), 3);
    // nghttp2 reports the HPACK failure as a plain protocol error (NGHTTP2_ERR_PROTO), counted as such.
    assert.equal(delta('protocol'), 1);
    const session = await connect(`http://127.0.0.1:${h2c}`);
    assert.equal((await get(session, 'a.test', '/after-floods')).status, 200);
    await close(session);
  });

  it('http2.enabled false: ALPN is http/1.1 only and the h2c preface is not served', async () => {
    const result = await execFileAsync('/usr/bin/curl', ['-sS', '-m', '5', '--http2-prior-knowledge', '-H', 'Host: a.test', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${h1only}/`]).then(
      ({ stdout }) => stdout,
      (err: { stdout?: string }) => err.stdout ?? '',
    );
    assert.notEqual(result, '200');
    const h1 = await execFileAsync('/usr/bin/curl', ['-sS', '-H', 'Host: a.test', '-o', '/dev/null', '-w', '%{http_code} %{http_version}', `http://127.0.0.1:${h1only}/`]);
    assert.equal(h1.stdout, '200 1.1');
  });
});

describe('http listener: HTTP/2 drain', () => {
  it('SIGTERM sends GOAWAY and the stream in flight finishes', async () => {
    const backend = await startBackend('A');
    const file = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      shutdownTimeoutSeconds: 10,
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: { 'a.test': backend.endpoint },
      listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 }],
    });
    const cli = await startCli(['--config', file]);
    try {
      const session = await connect(`http://127.0.0.1:${cli.port('web')}`);
      session.on('error', () => {});
      const goaway = new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
      const slow = get(session, 'a.test', '/slow');
      // The request reached the backend before the signal.
      await new Promise((resolve) => setTimeout(resolve, 150));
      cli.child.kill('SIGTERM');
      assert.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR);
      const reply = await slow;
      assert.equal(reply.status, 200);
      assert.equal((JSON.parse(reply.body) as Echo).url, '/slow');
      const exit = await cli.exited;
      assert.equal(exit.code, 0);
    } finally {
      await cli.stop();
      backend.server.closeAllConnections();
      backend.server.close();
    }
  });
});
