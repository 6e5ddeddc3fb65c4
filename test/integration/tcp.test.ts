/**
 * Raw TCP listeners through the real CLI: Redis behind a fixed backend (a
 * real client: SET/GET, a 1 MB value, pipelining, 100 concurrent clients), a
 * resolver module routing by the client's first bytes (replayed to the
 * backend), a silent client routed after the wait, SNI routing with TLS
 * termination, and 1 GB each way with the proxy's memory staying flat.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { createClient } from 'redis';
import { makeTestPki } from '../helpers/certs.ts';
import type { TestPki } from '../helpers/certs.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { REDIS_HOST, REDIS_PORT, redisMissing } from '../helpers/redis.ts';

/** A backend that greets with `hello from <tag>\n`, then echoes everything. */
async function startEchoServer(tag: string): Promise<{ server: net.Server; endpoint: string }> {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.write(`hello from ${tag}\n`);
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, endpoint: `127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Sends `payload` (unless empty), then reads until `expected` bytes came back or the peer closed. */
function exchange(socket: net.Socket, payload: string, expected: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => {
      got += text;
      if (got.length >= expected) {
        socket.destroy();
        resolve(got);
      }
    });
    socket.once('error', reject);
    socket.once('close', () => resolve(got));
    if (payload !== '') socket.write(payload);
  });
}

function plainConnect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.once('error', reject);
  });
}

describe('tcp listener: Redis through a fixed backend', () => {
  let skip: string | null = null;
  let cli: RunningCli | undefined;
  let port = 0;

  before(async () => {
    skip = await redisMissing();
    if (skip !== null) return;
    const file = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      listeners: [{ name: 'kv', protocol: 'tcp', host: '127.0.0.1', port: 0, backend: `${REDIS_HOST}:${REDIS_PORT}` }],
    });
    cli = await startCli(['--config', file]);
    port = cli.port('kv');
  });

  after(async () => {
    await cli?.stop();
  });

  const client = (): ReturnType<typeof createClient> => createClient({ socket: { host: '127.0.0.1', port, reconnectStrategy: false } });

  it('SET/GET and a 1 MB value', async (t) => {
    if (skip !== null) return t.skip(skip);
    const redis = client();
    await redis.connect();
    try {
      const key = `pp:tcp:${process.pid}`;
      assert.equal(await redis.set(key, 'hello'), 'OK');
      assert.equal(await redis.get(key), 'hello');
      const big = randomBytes(1024 * 1024).toString('base64').slice(0, 1024 * 1024);
      assert.equal(await redis.set(`${key}:big`, big), 'OK');
      assert.equal(await redis.get(`${key}:big`), big);
      assert.equal(await redis.del([key, `${key}:big`]), 2);
    } finally {
      redis.destroy();
    }
  });

  it('pipelined commands', async (t) => {
    if (skip !== null) return t.skip(skip);
    const redis = client();
    await redis.connect();
    try {
      const key = `pp:tcp:pipe:${process.pid}`;
      const pipeline = redis.multi();
      for (let i = 0; i < 1000; i++) pipeline.incr(key);
      const replies = await pipeline.execAsPipeline();
      assert.equal(replies.length, 1000);
      assert.equal(replies[999], 1000);
      // Commands issued without awaiting go out together on the one connection.
      const gets = await Promise.all(Array.from({ length: 200 }, () => redis.get(key)));
      assert.ok(gets.every((v) => v === '1000'));
      await redis.del(key);
    } finally {
      redis.destroy();
    }
  });

  it('100 concurrent clients', async (t) => {
    if (skip !== null) return t.skip(skip);
    const clients = Array.from({ length: 100 }, client);
    try {
      await Promise.all(clients.map((c) => c.connect()));
      await Promise.all(
        clients.map(async (c, i) => {
          const key = `pp:tcp:c${i}:${process.pid}`;
          await c.set(key, String(i));
          assert.equal(await c.get(key), String(i));
          await c.del(key);
        }),
      );
    } finally {
      for (const c of clients) c.destroy();
    }
  });
});

describe('tcp listener: routed by first bytes and by SNI', () => {
  let cli: RunningCli | undefined;
  let pki: TestPki | undefined;
  const echoes: net.Server[] = [];

  before(async () => {
    const a = await startEchoServer('A');
    const b = await startEchoServer('B');
    echoes.push(a.server, b.server);
    // The CLI child inherits the environment: the fixture resolver reads its backends from it.
    process.env.PP_TCP_BACKEND_A = a.endpoint;
    process.env.PP_TCP_BACKEND_B = b.endpoint;
    pki = await makeTestPki({ serverNames: ['*.alpha.test', 'beta.test'] });
    const file = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      security: { allowBackends: ['127.0.0.0/8'] },
      resolver: { module: new URL('../fixtures/tcp-first-bytes-resolver.ts', import.meta.url).pathname },
      routes: { '*.alpha.test': a.endpoint, 'beta.test': b.endpoint },
      listeners: [
        { name: 'first', protocol: 'tcp', host: '127.0.0.1', port: 0, firstBytesTimeoutMs: 300 },
        { name: 'sni', protocol: 'tcp', host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey }, routeBy: 'sni' },
      ],
    });
    cli = await startCli(['--config', file]);
  });

  after(async () => {
    await cli?.stop();
    await Promise.all(echoes.map(closeServer));
    await pki?.cleanup();
  });

  it('a resolver module picks the backend from the first bytes, which are replayed', async () => {
    const port = cli?.port('first') ?? 0;
    // Interleaved and concurrent: each connection is routed by its own bytes, not a cached answer.
    const lines = ['B line for beta\n', 'A line for alpha\n', 'B again\n', 'x anything else\n'];
    const answers = await Promise.all(
      lines.map(async (line) => {
        const socket = await plainConnect(port);
        return exchange(socket, line, 'hello from A\n'.length + line.length);
      }),
    );
    for (const [i, line] of lines.entries()) {
      const tag = line.startsWith('B') ? 'B' : 'A';
      assert.equal(answers[i], `hello from ${tag}\n${line}`, `line ${i}`);
    }
  });

  it('bytes sent after the first packet follow it, in order', async () => {
    const socket = await plainConnect(cli?.port('first') ?? 0);
    socket.write('B');
    await new Promise((resolve) => setTimeout(resolve, 20));
    const rest = `${'y'.repeat(100_000)}\n`;
    const got = await exchange(socket, rest, 'hello from B\n'.length + 1 + rest.length);
    assert.equal(got, `hello from B\nB${rest}`);
  });

  it('a client that sends nothing is routed after the wait (empty first bytes)', async () => {
    const started = Date.now();
    const socket = await plainConnect(cli?.port('first') ?? 0);
    const got = await exchange(socket, '', 'hello from A\n'.length);
    assert.equal(got, 'hello from A\n');
    assert.ok(Date.now() - started >= 250, 'routed only after firstBytesTimeoutMs');
  });

  it('routes by TLS SNI through routes, wildcards included', async () => {
    const port = cli?.port('sni') ?? 0;
    const ca = readFileSync(pki?.caCert ?? '');
    const viaSni = async (servername: string, line: string): Promise<string> => {
      const socket = tls.connect({ host: '127.0.0.1', port, servername, ca });
      await new Promise<void>((resolve, reject) => {
        socket.once('secureConnect', resolve);
        socket.once('error', reject);
      });
      return exchange(socket, line, 'hello from A\n'.length + line.length);
    };
    assert.equal(await viaSni('shop.alpha.test', 'over tls\n'), 'hello from A\nover tls\n');
    assert.equal(await viaSni('Beta.Test', 'to beta\n'), 'hello from B\nto beta\n');
    // Not routed: the connection is closed after the handshake (raw TCP has no error message).
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'nope.test', rejectUnauthorized: false });
    socket.on('error', () => {});
    assert.equal(await exchange(socket, 'hi\n', 1), '');
  });
});

describe('tcp listener: 1 GB each way with flat proxy memory', () => {
  const TOTAL = 1024 * 1024 * 1024;
  const BLOCK = 1024 * 1024;
  let cli: RunningCli | undefined;
  let sink: net.Server | undefined;
  let received: Promise<string> | undefined;

  /** Block i of the stream: a shared random block stamped with its index, so reordering or loss changes the hash. */
  const base = randomBytes(BLOCK);
  const block = (i: number): Buffer => {
    const b = Buffer.from(base);
    b.writeUInt32BE(i, 0);
    return b;
  };
  const expected = (() => {
    const hash = createHash('sha256');
    for (let i = 0; i < TOTAL / BLOCK; i++) hash.update(block(i));
    return hash.digest('hex');
  })();

  async function send(socket: net.Socket): Promise<void> {
    for (let i = 0; i < TOTAL / BLOCK; i++) {
      if (!socket.write(block(i))) await new Promise((resolve) => socket.once('drain', resolve));
    }
    socket.end();
  }

  /** Hashes everything the socket receives; `progress` gets the running byte count. */
  function hashAll(socket: net.Socket, progress?: (bytes: number) => void): Promise<string> {
    return new Promise((resolve, reject) => {
      const hash = createHash('sha256');
      let bytes = 0;
      socket.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        bytes += chunk.length;
        progress?.(bytes);
      });
      socket.once('end', () => resolve(hash.digest('hex')));
      socket.once('error', reject);
    });
  }

  before(async () => {
    // The backend hashes what it receives and streams the same 1 GB back.
    let resolveReceived: (hash: string) => void = () => {};
    received = new Promise((resolve) => (resolveReceived = resolve));
    sink = net.createServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => {});
      void hashAll(socket).then(resolveReceived);
      void send(socket);
    });
    await new Promise<void>((resolve) => sink?.listen(0, '127.0.0.1', resolve));
    const file = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      listeners: [{ name: 'bulk', protocol: 'tcp', host: '127.0.0.1', port: 0, backend: `127.0.0.1:${(sink.address() as AddressInfo).port}` }],
    });
    cli = await startCli(['--config', file]);
  });

  after(async () => {
    await cli?.stop();
    if (sink !== undefined) await closeServer(sink);
  });

  // Flat memory, not timing: RSS must not grow with the bytes relayed. The
  // proxy copies each read into a fresh Buffer, and V8 collects those only
  // when ~64 MB of them (external memory) are dead, so RSS first climbs by
  // that headroom, then stays level: the baseline is taken once 256 MB went
  // through, and an absolute bound over the start catches any buffering.
  it('sha256 matches both ways and proxy RSS stays flat', { timeout: 300_000 }, async () => {
    const WARM = 256 * 1024 * 1024;
    const pid = cli?.child.pid ?? 0;
    const rssKb = (): number => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
    const startKb = rssKb();
    let maxKb = startKb;
    let warmKb = 0;
    let relayed = 0;
    const sample = (): void => {
      const kb = rssKb();
      maxKb = Math.max(maxKb, kb);
      if (relayed < WARM) warmKb = maxKb;
    };
    const sampler = setInterval(sample, 50);
    try {
      const socket = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port: cli?.port('bulk') ?? 0, allowHalfOpen: true }, () => resolve(s));
        s.once('error', reject);
      });
      const [back] = await Promise.all([hashAll(socket, (n) => (relayed = n)), send(socket)]);
      assert.equal(back, expected, 'backend → client stream intact');
      assert.equal(await received, expected, 'client → backend stream intact');
    } finally {
      clearInterval(sampler);
    }
    sample();
    const mb = (kb: number): string => (kb / 1024).toFixed(1);
    process.stderr.write(`proxy RSS: start ${mb(startKb)} MB, after 256 MB ${mb(warmKb)} MB, max ${mb(maxKb)} MB over 2 GB relayed\n`);
    assert.ok(maxKb - warmKb < 32 * 1024, `proxy RSS grew ${mb(maxKb - warmKb)} MB after the first 256 MB (not flat)`);
    assert.ok(maxKb - startKb < 128 * 1024, `proxy RSS grew ${mb(maxKb - startKb)} MB over its start`);
  });
});
