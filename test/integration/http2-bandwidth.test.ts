/**
 * Tenant bandwidth (limits.*.bandwidth.outBytesPerSecond) on the HTTP/2
 * side (issue 20), as on HTTP/1.1: a limited tenant's 3 MB response takes
 * about 2 s at 1 MB/s (one second's burst first), an unlimited tenant's the
 * same size goes at full speed — for HTTP/2 clients to an HTTP/1.1 backend
 * and to an HTTP/2 backend, and for HTTP/1.1 clients on an h2 route.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';

const MB = 1024 * 1024;
const SIZE = 3 * MB;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);

/** Writes SIZE bytes with backpressure. */
function pump(out: NodeJS.WritableStream & { once(e: 'drain', f: () => void): unknown }): void {
  let left = SIZE;
  const go = (): void => {
    while (left > 0) {
      left -= CHUNK.length;
      if (!out.write(CHUNK)) {
        out.once('drain', go);
        return;
      }
    }
    out.end();
  };
  go();
}

describe('tenant bandwidth on the HTTP/2 side', () => {
  let h1Backend: http.Server;
  let h2Backend: http2.Http2Server;
  let cli: RunningCli;
  let port = 0;

  before(async () => {
    h1Backend = http.createServer((_req, res) => pump(res));
    await new Promise<void>((resolve) => h1Backend.listen(0, '127.0.0.1', resolve));
    h2Backend = http2.createServer();
    h2Backend.on('stream', (stream) => {
      stream.respond({ ':status': 200 });
      pump(stream);
    });
    await new Promise<void>((resolve) => h2Backend.listen(0, '127.0.0.1', resolve));
    const h1 = `127.0.0.1:${(h1Backend.address() as AddressInfo).port}`;
    const h2 = { endpoint: `127.0.0.1:${(h2Backend.address() as AddressInfo).port}`, protocol: 'h2' };
    const slow = { bandwidth: { outBytesPerSecond: MB } };
    const file = await writeConfig({
      workers: 1,
      logLevel: 'error',
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: { 'slow-h1.test': h1, 'fast-h1.test': h1, 'slow-h2.test': h2, 'fast-h2.test': h2, 'slow-bridge.test': h2, 'fast-bridge.test': h2 },
      limits: { tenants: { 'slow-h1.test': slow, 'slow-h2.test': slow, 'slow-bridge.test': slow } },
      listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 }],
    });
    cli = await startCli(['--config', file]);
    port = cli.port('web');
  });

  after(async () => {
    await cli?.stop();
    h1Backend?.close();
    h2Backend?.close();
  });

  function h2Download(session: http2.ClientHttp2Session, authority: string): Promise<{ bytes: number; seconds: number }> {
    const started = performance.now();
    return new Promise((resolve, reject) => {
      const stream = session.request({ ':path': '/big', ':authority': authority });
      let bytes = 0;
      stream.on('data', (c: Buffer) => (bytes += c.length));
      stream.on('end', () => resolve({ bytes, seconds: (performance.now() - started) / 1000 }));
      stream.on('error', reject);
    });
  }

  function h1Download(host: string): Promise<{ bytes: number; seconds: number }> {
    const started = performance.now();
    return new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/big', headers: { host }, agent: false }, (res) => {
          let bytes = 0;
          res.on('data', (c: Buffer) => (bytes += c.length));
          res.on('end', () => resolve({ bytes, seconds: (performance.now() - started) / 1000 }));
          res.on('error', reject);
        })
        .on('error', reject);
    });
  }

  function check(limited: { bytes: number; seconds: number }, fast: { bytes: number; seconds: number }): void {
    assert.equal(limited.bytes, SIZE);
    assert.equal(fast.bytes, SIZE);
    // The lower bound is the throttle's (2 MB past the burst at 1 MB/s); the others leave room for a loaded machine.
    assert.ok(limited.seconds >= 1.5 && limited.seconds <= 10, `limited: ${limited.seconds} s`);
    assert.ok(fast.seconds < limited.seconds, `unlimited: ${fast.seconds} s vs ${limited.seconds} s`);
  }

  it('HTTP/2 client → HTTP/1.1 backend', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const slow = h2Download(session, 'slow-h1.test');
      const fast = await h2Download(session, 'fast-h1.test');
      check(await slow, fast);
    } finally {
      session.close();
    }
  });

  it('HTTP/2 client → HTTP/2 backend', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const slow = h2Download(session, 'slow-h2.test');
      const fast = await h2Download(session, 'fast-h2.test');
      check(await slow, fast);
    } finally {
      session.close();
    }
  });

  it('HTTP/1.1 client on an h2 route (bridged)', async () => {
    const slow = h1Download('slow-bridge.test');
    const fast = await h1Download('fast-bridge.test');
    check(await slow, fast);
  });
});
