/**
 * src/core/connect.ts: a Dial tries its candidates in order, feeds the
 * breakers, times attempts out on the shared sweep, reports every failure
 * once; connectFirst, connectEndpoint and sendOneShot on top of it. Real
 * sockets on port 0; the endpoint that never answers is a listener whose
 * accept queue is full (test/helpers/unanswered.ts).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Dial, DialAbort, connectEndpoint, connectFirst, sendOneShot } from '../../../src/core/connect.ts';
import type { DialOwner } from '../../../src/core/connect.ts';
import { parseEndpoint } from '../../../src/core/endpoint.ts';
import type { Endpoint } from '../../../src/core/endpoint.ts';
import { PolyproxyError } from '../../../src/core/errors.ts';
import { EndpointHealth } from '../../../src/core/health.ts';
import { unansweredEndpoint } from '../../helpers/unanswered.ts';
import type { Unanswered } from '../../helpers/unanswered.ts';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const sockets: net.Socket[] = [];
const servers: net.Server[] = [];

/** A loopback port nothing listens on. */
async function deadEndpoint(): Promise<string> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `127.0.0.1:${port}`;
}

/** A server counting its connections; `got` collects what each sends. */
async function liveServer(): Promise<{ endpoint: string; accepted: () => number; got: Buffer[]; closed: Promise<void> }> {
  let accepted = 0;
  const got: Buffer[] = [];
  let onClose = (): void => {};
  const closed = new Promise<void>((resolve) => (onClose = resolve));
  const server = net.createServer((socket) => {
    accepted++;
    socket.on('data', (chunk: Buffer) => got.push(chunk));
    socket.on('end', () => socket.end());
    socket.on('close', onClose);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { endpoint: `127.0.0.1:${(server.address() as AddressInfo).port}`, accepted: () => accepted, got, closed };
}

/** Runs a Dial to its end; `calls` counts the owner's callbacks over the next ticks too. */
function dial(candidates: readonly Endpoint[], timeoutMs: number, health?: EndpointHealth): Promise<{ dial: Dial; error: PolyproxyError | null; calls: () => number }> {
  return new Promise((resolve) => {
    let calls = 0;
    const owner: DialOwner = {
      dialConnected: (d) => {
        calls++;
        sockets.push(d.socket as net.Socket);
        resolve({ dial: d, error: null, calls: () => calls });
      },
      dialFailed: (d, error) => {
        calls++;
        resolve({ dial: d, error, calls: () => calls });
      },
    };
    new Dial(owner, candidates, timeoutMs, health).start();
  });
}

let unanswered: Endpoint;
let blocked: Unanswered;

before(async () => {
  blocked = await unansweredEndpoint();
  unanswered = parseEndpoint(blocked.endpoint);
});

after(async () => {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
  await blocked.close();
});

describe('Dial', () => {
  it('tries the candidates in order and stops at the first that accepts', async () => {
    const dead = await deadEndpoint();
    const first = await liveServer();
    const second = await liveServer();
    const health = new EndpointHealth({ failureThreshold: 1, intervalMs: 0 });
    const candidates = [dead, first.endpoint, second.endpoint].map(parseEndpoint);
    health.watch(candidates, 'tcp', false);
    const { dial: d, error } = await dial(candidates, 1000, health);
    assert.equal(error, null);
    assert.equal(d.endpoint?.label, first.endpoint);
    assert.equal(d.socket?.remotePort, Number(first.endpoint.split(':')[1]));
    assert.equal(d.failures?.length, 1);
    assert.match(d.failures?.[0] ?? '', new RegExp(`^${dead}: connect ECONNREFUSED`));
    assert.equal(second.accepted(), 0, 'no attempt after a success');
    assert.equal(health.state(dead), 'open', 'the refusal reached the breaker');
    assert.equal(health.state(first.endpoint), 'closed');
  });

  it('fails with BACKEND_UNREACHABLE naming every endpoint, once', async () => {
    const a = await deadEndpoint();
    const b = await deadEndpoint();
    const { error, calls } = await dial([parseEndpoint(a), parseEndpoint(b)], 1000);
    assert.equal(error?.kind, 'BACKEND_UNREACHABLE');
    assert.equal(error?.retryable, true);
    assert.match(error?.message ?? '', new RegExp(`${a}: .*; ${b}: `));
    // A late socket event must not reach the owner a second time.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(calls(), 1);
  });

  it('with no candidate, fails from start() itself', () => {
    let error: PolyproxyError | null = null;
    new Dial({ dialConnected: () => assert.fail('connected to nothing'), dialFailed: (_d, err) => (error = err) }, [], 100, undefined).start();
    assert.equal((error as PolyproxyError | null)?.kind, 'BACKEND_UNREACHABLE');
  });

  it('the sweep times out an attempt with no answer and moves on to the next candidate', async () => {
    const live = await liveServer();
    const started = Date.now();
    const { dial: d, error } = await dial([unanswered, parseEndpoint(live.endpoint)], 200);
    const took = Date.now() - started;
    assert.equal(error, null);
    assert.equal(d.endpoint?.label, live.endpoint);
    assert.deepEqual(d.failures, [`${unanswered.label}: connect timeout after 200 ms`]);
    assert.ok(took >= 200 && took < 700, `took ${took} ms (timeout 200, sweep every 100)`);
  });

  it('cancel() drops the attempt: its owner hears nothing, not even the timeout', async () => {
    let heard = 0;
    const cancelled = new Dial({ dialConnected: () => heard++, dialFailed: () => heard++ }, [unanswered], 100, undefined);
    cancelled.start();
    assert.equal(cancelled.pending, true);
    cancelled.cancel();
    assert.equal(cancelled.pending, false);
    assert.equal(cancelled.socket?.destroyed, true);
    // A second dial with the same timeout, started after: once it has timed out, the first would have too.
    const { error } = await dial([unanswered], 100);
    assert.match(error?.message ?? '', /connect timeout after 100 ms/);
    assert.equal(heard, 0);
  });
});

describe('connectFirst, connectEndpoint, sendOneShot', () => {
  it('connectFirst resolves with the socket and the endpoint that accepted', async () => {
    const live = await liveServer();
    const connected = await connectFirst([parseEndpoint(await deadEndpoint()), parseEndpoint(live.endpoint)], 1000);
    sockets.push(connected.socket);
    assert.equal(connected.endpoint.label, live.endpoint);
    assert.equal(connected.socket.readyState, 'open');
  });

  it('connectFirst with a DialAbort: abort() drops the attempt in progress (no breaker accounting) and rejects with its error', async () => {
    const health = new EndpointHealth({ intervalMs: 0, failureThreshold: 1, openMs: 60000 });
    const abort = new DialAbort();
    const pending = connectFirst([unanswered], 5000, health, undefined, abort);
    const gone = new PolyproxyError('PROTOCOL', 'client left', { source: 'client' });
    abort.abort(gone);
    await assert.rejects(pending, (err) => err === gone);
    assert.equal(health.usable([unanswered]).length, 1);
    // Already aborted: rejects at once without dialing; a settled connect is not undone.
    await assert.rejects(connectFirst([unanswered], 5000, health, undefined, abort), (err) => err === gone);
    const live = await liveServer();
    const late = new DialAbort();
    const connected = await connectFirst([parseEndpoint(live.endpoint)], 1000, undefined, undefined, late);
    sockets.push(connected.socket);
    late.abort(gone);
    assert.equal(connected.socket.destroyed, false);
  });

  it('connectEndpoint rejects with BACKEND_UNREACHABLE', async () => {
    const dead = await deadEndpoint();
    await assert.rejects(connectEndpoint(parseEndpoint(dead), 1000), (err: PolyproxyError) => err.kind === 'BACKEND_UNREACHABLE' && err.message.includes(dead));
  });

  it('sendOneShot delivers the bytes, ends, and resolves once the socket closed', async () => {
    const live = await liveServer();
    const bytes = Buffer.from('0000001004d2162e0000303900000001', 'hex');
    await sendOneShot(parseEndpoint(live.endpoint), bytes, 1000);
    await live.closed;
    assert.deepEqual(Buffer.concat(live.got), bytes);
  });
});

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../src/core');

const SCRIPT = `
import { openSync } from 'node:fs';
import { connectFirst } from '${SRC}/connect.ts';
import { parseEndpoint } from '${SRC}/endpoint.ts';
import { EndpointHealth } from '${SRC}/health.ts';
const health = new EndpointHealth({ failureThreshold: 1 });
const first = parseEndpoint(process.argv[1]);
const second = parseEndpoint(process.argv[2]);
health.watch([first, second], 'tcp', false);
const held = [];
// Twice: descriptors the module loader was still closing come free in between.
try { for (;;) held.push(openSync('/dev/null', 'r')); } catch {}
await new Promise((resolve) => setTimeout(resolve, 50));
try { for (;;) held.push(openSync('/dev/null', 'r')); } catch {}
try {
  await connectFirst([first, second], 1000, health);
  console.log(JSON.stringify({ connected: true }));
} catch (err) {
  console.log(JSON.stringify({ kind: err.kind, source: err.source, cause: err.cause?.code, first: health.state(first.label), second: health.state(second.label) }));
}
process.exit(0);
`;

describe('connect: out of file descriptors', { skip: process.platform !== 'linux' ? 'needs prlimit' : false }, () => {
  it('fails with UNAVAILABLE caused by EMFILE, without breaker accounting or trying the next candidate', async () => {
    const server = net.createServer((s) => s.destroy());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const run = spawnSync('prlimit', ['--nofile=64:64', process.execPath, '--input-type=module', '-e', SCRIPT, `127.0.0.1:${port}`, `127.0.0.2:${port}`], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(run.status, 0, run.stderr);
      const lines = run.stdout.trim().split('\n');
      assert.deepEqual(JSON.parse(lines[lines.length - 1] as string), { kind: 'UNAVAILABLE', source: 'internal', cause: 'EMFILE', first: 'closed', second: 'closed' });
    } finally {
      server.close();
    }
  });
});
