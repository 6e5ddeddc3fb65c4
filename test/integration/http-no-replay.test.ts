/**
 * Issue 15 defect 4 (RFC 9112 §9.3.1): a request on a reused keep-alive
 * backend connection that the backend closes after reading it, without a
 * response byte. The backend may have executed it, so a POST (with or
 * without a body) or a PATCH is not sent again: the client gets 502 and the
 * backend saw the request exactly once. An idempotent GET in the same
 * situation is sent once more, on a fresh connection, and succeeds.
 *
 * The backend is a raw node:net server: on a connection's first request it
 * answers with keep-alive; a later request on the same connection whose
 * path starts with /drop is read whole (head and body), counted, and the
 * connection closed without answering. Each case warms a pooled connection
 * with GET /warm first, so the dropped request rides a reused one.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';

interface DropBackend {
  server: net.Server;
  endpoint: string;
  /** `METHOD path` → times the backend read it. */
  seen: Map<string, number>;
  /** Bodies read, per `METHOD path`. */
  bodies: Map<string, string[]>;
  connections: number;
}

async function startDropBackend(): Promise<DropBackend> {
  const backend: DropBackend = { server: net.createServer(), endpoint: '', seen: new Map(), bodies: new Map(), connections: 0 };
  backend.server.on('connection', (socket) => {
    backend.connections++;
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    let served = 0;
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        const body = buf.subarray(end + 4, end + 4 + length).toString('latin1');
        buf = buf.subarray(end + 4 + length);
        const [method, target] = head.split(' ') as [string, string];
        const key = `${method} ${target}`;
        backend.seen.set(key, (backend.seen.get(key) ?? 0) + 1);
        backend.bodies.set(key, [...(backend.bodies.get(key) ?? []), body]);
        served++;
        if (served > 1 && target.startsWith('/drop')) {
          // Read, maybe executed, never answered: the connection just closes.
          socket.end();
          return;
        }
        const text = `ok ${key}`;
        socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${text.length}\r\n\r\n${text}`);
      }
    });
  });
  await new Promise<void>((resolve) => backend.server.listen(0, '127.0.0.1', resolve));
  backend.endpoint = `127.0.0.1:${(backend.server.address() as AddressInfo).port}`;
  return backend;
}

interface Reply {
  status: number;
  headers: Map<string, string>;
  body: string;
}

/** A raw keep-alive client connection that sends one request at a time and reads each response (Content-Length framed). */
class RawClient {
  readonly socket: net.Socket;
  #buf = '';
  #waiting: (() => void) | null = null;
  #closed = false;

  constructor(port: number) {
    this.socket = net.connect({ host: '127.0.0.1', port });
    this.socket.setEncoding('latin1');
    this.socket.on('data', (text: string) => {
      this.#buf += text;
      this.#waiting?.();
    });
    this.socket.on('close', () => {
      this.#closed = true;
      this.#waiting?.();
    });
  }

  async request(head: string, body = ''): Promise<Reply> {
    this.socket.write(head + body);
    for (;;) {
      const end = this.#buf.indexOf('\r\n\r\n');
      if (end >= 0) {
        const lines = this.#buf.slice(0, end).split('\r\n');
        const headers = new Map<string, string>();
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(':');
          headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
        }
        const length = Number(headers.get('content-length') ?? 0);
        if (this.#buf.length >= end + 4 + length) {
          const reply = { status: Number((lines[0] as string).split(' ')[1]), headers, body: this.#buf.slice(end + 4, end + 4 + length) };
          this.#buf = this.#buf.slice(end + 4 + length);
          return reply;
        }
      }
      if (this.#closed) throw new Error(`connection closed before a complete response: ${JSON.stringify(this.#buf)}`);
      await new Promise<void>((resolve) => (this.#waiting = resolve));
      this.#waiting = null;
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

const HOST = 'app.test';

describe('http listener: no replay of non-idempotent requests on a reused connection (issue 15)', () => {
  let backend: DropBackend;
  let cli: RunningCli;
  let port: number;

  before(async () => {
    backend = await startDropBackend();
    const file = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: { [HOST]: backend.endpoint },
      listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: 0, telemetryHeaders: true, backendTimeoutMs: 5000 }],
    });
    cli = await startCli(['--config', file]);
    port = cli.port('web');
  });

  after(async () => {
    await cli?.stop();
    await new Promise<void>((resolve) => backend?.server.close(() => resolve()));
  });

  /** Warms a pooled backend connection, then sends `head` + `body` on the same client connection. */
  async function afterWarmUp(path: string, head: string, body = ''): Promise<Reply> {
    const client = new RawClient(port);
    try {
      const warm = await client.request(`GET /warm${path} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
      assert.equal(warm.status, 200);
      return await client.request(head, body);
    } finally {
      client.close();
    }
  }

  const cases = [
    { name: 'a POST with a body', method: 'POST', path: '/drop-post', body: 'charge=1' },
    { name: 'a body-less POST', method: 'POST', path: '/drop-post-empty', body: null },
    { name: 'a body-less PATCH', method: 'PATCH', path: '/drop-patch', body: null },
  ];
  for (const c of cases) {
    it(`${c.name}: 502, and the backend saw it exactly once`, async () => {
      const framing = c.body === null ? '' : `Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${c.body.length}\r\n`;
      const reply = await afterWarmUp(c.path, `${c.method} ${c.path} HTTP/1.1\r\nHost: ${HOST}\r\n${framing}\r\n`, c.body ?? '');
      assert.equal(reply.status, 502);
      assert.equal(backend.seen.get(`${c.method} ${c.path}`), 1, `the backend saw ${c.method} ${c.path} ${backend.seen.get(`${c.method} ${c.path}`)} times`);
      if (c.body !== null) assert.deepEqual(backend.bodies.get(`${c.method} ${c.path}`), [c.body]);
    });
  }

  it('an idempotent GET: sent once more on a fresh connection, and it succeeds', async () => {
    const connections = backend.connections;
    const reply = await afterWarmUp('/get', `GET /drop-get HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    assert.equal(reply.status, 200);
    assert.equal(reply.body, 'ok GET /drop-get');
    assert.equal(reply.headers.get('x-proxy-pool'), 'new', 'answered on a fresh connection');
    assert.equal(backend.seen.get('GET /drop-get'), 2, 'dropped once, answered once');
    assert.ok(backend.connections > connections, 'the retry opened a new backend connection');
  });
});
