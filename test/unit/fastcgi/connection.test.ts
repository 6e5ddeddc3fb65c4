/**
 * src/fastcgi/connection.ts against a fake responder writing exact records
 * (test/helpers/fastcgi-server.ts): one exchange's stdout, stderr and end,
 * keep-conn reuse, the errors a request can end with (closed early,
 * rejected, read timeout, protocol), connect failures, and the idle-close
 * hook a pool parks on it.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { parseEndpoint } from '../../../src/core/endpoint.ts';
import { FastCgiConnection, connectSocket } from '../../../src/fastcgi/connection.ts';
import type { ExchangeHandler } from '../../../src/fastcgi/connection.ts';
import type { FastCgiError } from '../../../src/fastcgi/errors.ts';
import { encodeNameValuePairs } from '../../../src/fastcgi/name-value.ts';
import { FCGI_OVERLOADED, FCGI_STDERR, FCGI_STDOUT, encodeEndRequest, encodeRecord } from '../../../src/fastcgi/records.ts';
import { answer, fakeServer } from '../../helpers/fastcgi-server.ts';
import type { Behaviour } from '../../helpers/fastcgi-server.ts';

const servers: Array<{ close: () => Promise<void> }> = [];
const connections: FastCgiConnection[] = [];
after(async () => {
  for (const c of connections) c.destroy();
  await Promise.all(servers.map((s) => s.close()));
});

async function open(behaviour: Behaviour): Promise<{ conn: FastCgiConnection; server: Awaited<ReturnType<typeof fakeServer>> }> {
  const server = await fakeServer(behaviour);
  servers.push(server);
  const conn = await FastCgiConnection.open(parseEndpoint(server.address), { connectTimeoutMs: 1000 });
  connections.push(conn);
  return { conn, server };
}

interface Outcome {
  stdout: string;
  stderr: string;
  appStatus: number | null;
  error: FastCgiError | null;
}

/** Runs one request to its end. */
function exchange(conn: FastCgiConnection, params: Record<string, string>, options: { keepConn?: boolean; timeoutMs?: number; stdin?: string } = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const out: Outcome = { stdout: '', stderr: '', appStatus: null, error: null };
    const handler: ExchangeHandler = {
      onStdout: (chunk) => (out.stdout += chunk.toString()),
      onStderr: (chunk) => (out.stderr += chunk.toString()),
      onEnd: (status) => resolve({ ...out, appStatus: status }),
      onError: (err) => resolve({ ...out, error: err }),
    };
    conn.begin(encodeNameValuePairs(new Map(Object.entries(params))), handler, { keepConn: options.keepConn ?? true, timeoutMs: options.timeoutMs ?? 0, stdin: options.stdin === undefined ? null : Buffer.from(options.stdin), endStdin: true });
  });
}

describe('FastCgiConnection', () => {
  it('carries params and stdin, delivers stdout, stderr and the app status, then is reusable with keep-conn', async () => {
    const { conn, server } = await open((req) => {
      req.socket.write(encodeRecord(FCGI_STDERR, 1, Buffer.from('notice')));
      req.socket.write(Buffer.concat([encodeRecord(FCGI_STDOUT, 1, Buffer.from(`${req.params.get('SCRIPT_FILENAME')} ${req.stdin.toString()} keep=${req.flags & 1}`)), encodeRecord(FCGI_STDOUT, 1), encodeEndRequest(1, 3)]));
    });
    const first = await exchange(conn, { SCRIPT_FILENAME: '/a.php' }, { stdin: 'body' });
    assert.deepEqual(first, { stdout: '/a.php body keep=1', stderr: 'notice', appStatus: 3, error: null });
    assert.equal(conn.reusable, true);
    assert.equal(conn.responded, true);
    assert.equal(conn.requests, 1);
    const second = await exchange(conn, { SCRIPT_FILENAME: '/b.php' });
    assert.equal(second.stdout, '/b.php  keep=1');
    assert.equal(server.connections(), 1);
  });

  it('without keep-conn the connection is not reused', async () => {
    const { conn } = await open((req) => answer(req, 'done'));
    const out = await exchange(conn, {}, { keepConn: false });
    assert.equal(out.stdout, 'done');
    assert.equal(conn.reusable, false);
  });

  it('refuses a second request while one is in flight', async () => {
    const { conn } = await open(() => {});
    void exchange(conn, {});
    assert.equal(conn.busy, true);
    assert.throws(() => conn.begin(Buffer.alloc(0), { onStdout() {}, onStderr() {}, onEnd() {}, onError() {} }, { keepConn: true, timeoutMs: 0 }), (err: FastCgiError) => err.code === 'FCGI_ERR_INVALID_ARGUMENT');
  });

  it('ends a request with the error that fits: closed early, rejected, silent, garbled', async () => {
    const closed = await open((req) => req.socket.end(encodeRecord(FCGI_STDOUT, 1, Buffer.from('partial'))));
    const early = await exchange(closed.conn, {});
    assert.equal(early.error?.code, 'FCGI_ERR_CONNECTION_CLOSED');
    assert.equal(early.stdout, 'partial');
    assert.equal(closed.conn.reusable, false);

    const overloaded = await open((req) => req.socket.write(encodeEndRequest(1, 0, FCGI_OVERLOADED)));
    const rejected = await exchange(overloaded.conn, {});
    assert.equal(rejected.error?.code, 'FCGI_ERR_REJECTED');
    assert.match(rejected.error?.message ?? '', /FCGI_OVERLOADED/);
    assert.equal(rejected.error?.retryable, true);

    const silent = await open(() => {});
    const started = Date.now();
    const timedOut = await exchange(silent.conn, {}, { timeoutMs: 100 });
    assert.equal(timedOut.error?.code, 'FCGI_ERR_READ_TIMEOUT');
    assert.ok(Date.now() - started >= 95);

    const garbled = await open((req) => req.socket.write(encodeRecord(FCGI_STDOUT, 2, Buffer.from('x'))));
    assert.equal((await exchange(garbled.conn, {})).error?.code, 'FCGI_ERR_PROTOCOL');
  });

  it('an idle connection the application closes calls the pool\'s hook', async () => {
    const { conn, server } = await open((req) => answer(req, 'ok'));
    await exchange(conn, {});
    const gone = new Promise<FastCgiConnection>((resolve) => (conn.onIdleClose = resolve));
    await server.close();
    assert.equal(await gone, conn);
    assert.equal(conn.reusable, false);
    assert.throws(() => conn.begin(Buffer.alloc(0), { onStdout() {}, onStderr() {}, onEnd() {}, onError() {} }, { keepConn: true, timeoutMs: 0 }), (err: FastCgiError) => err.code === 'FCGI_ERR_CONNECTION_CLOSED');
  });
});

describe('connectSocket', () => {
  it('a refused connect is FCGI_ERR_CONNECT_FAILED, retryable', async () => {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    await assert.rejects(connectSocket(parseEndpoint(`127.0.0.1:${port}`)), (err: FastCgiError) => err.code === 'FCGI_ERR_CONNECT_FAILED' && err.retryable);
  });
});
