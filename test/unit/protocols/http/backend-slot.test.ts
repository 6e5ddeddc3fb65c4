/**
 * The backend slot alone (BackendSlot over a fake owner, a stub router that
 * dials with core's connectFirst, a real BackendPool and a real loopback
 * backend): a new connection under a slot, given back to the pool and
 * taken again on the fast path; bytes dispatched to the owner while held,
 * an idle socket that speaks evicted; a request that waits for a slot and
 * one cancelled; core's retry rule (a GET on a reused connection again,
 * under the same slot; never a POST); the relay hand-off keeping its slot.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connectFirst } from '../../../../src/core/connect.ts';
import type { Endpoint } from '../../../../src/core/endpoint.ts';
import { parseEndpoint } from '../../../../src/core/endpoint.ts';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import type { ResolveContext } from '../../../../src/core/resolver.ts';
import type { RouteDecision, Router } from '../../../../src/core/router.ts';
import { BackendSlot } from '../../../../src/protocols/http/backend-slot.ts';
import type { SlotOwner } from '../../../../src/protocols/http/backend-slot.ts';
import type { HttpHead } from '../../../../src/protocols/http/head-parser.ts';
import { parseRequestHead } from '../../../../src/protocols/http/head-parser.ts';
import { BackendPool } from '../../../../src/protocols/http/pool.ts';

let server: net.Server;
const peers: net.Socket[] = [];
let endpoint: Endpoint;
let decision: RouteDecision;

before(async () => {
  server = net.createServer((socket) => {
    socket.on('error', () => {});
    peers.push(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = parseEndpoint(`127.0.0.1:${(server.address() as AddressInfo).port}`);
  const route = { endpoint: endpoint.label };
  decision = { entry: { resourceId: 'app.test', route, answer: route, source: { name: 'test', resolver: { resolve: () => null } }, endpoints: [endpoint] }, candidates: [endpoint], cacheHit: false };
});

after(async () => {
  for (const peer of peers) peer.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const ROUTER = {
  connect: (d: RouteDecision, timeoutMs: number) => connectFirst(d.candidates, timeoutMs),
  route: () => Promise.resolve(decision),
} as unknown as Router;

const head = (text: string): HttpHead => (parseRequestHead(Buffer.from(text, 'latin1')) as { value: HttpHead }).value;

class Owner implements SlotOwner {
  readonly router = ROUTER;
  readonly connectTimeoutMs = 1000;
  readonly tcpKeepAliveMs = 0;
  finished = false;
  readonly resourceId = 'app.test';
  readonly events: string[] = [];
  readonly bytes: string[] = [];
  failed: unknown = null;
  resent = 0;
  readonly slot: BackendSlot;
  #resent: (() => void) | null = null;
  constructor(pool: BackendPool) {
    this.slot = new BackendSlot(this, pool);
  }
  resolveContext(): ResolveContext {
    return { protocol: 'http', listener: 'test', clientAddress: '127.0.0.1' } as ResolveContext;
  }
  backendAttached(): void {
    this.events.push('attached');
  }
  backendDetached(): void {
    this.events.push('detached');
  }
  backendBytes(chunk: Buffer): void {
    this.bytes.push(chunk.toString('latin1'));
  }
  backendEnded(): void {
    this.events.push('ended');
  }
  backendGone(): void {
    this.events.push('gone');
  }
  backendDrained(): void {}
  resend(): void {
    this.resent++;
    this.#resent?.();
  }
  retryFailed(err: unknown): void {
    this.failed = err;
    this.#resent?.();
  }
  /** Resolves at the next resend or retryFailed. */
  nextResend(): Promise<void> {
    return new Promise((resolve) => (this.#resent = resolve));
  }
}

function pool(max = 4): BackendPool {
  return new BackendPool({ maxPerBackend: 8, idleTimeoutMs: 30000, maxConnectionsPerBackend: max, queueTimeoutMs: 30000, maxQueue: 16 });
}

/** The backend's side of the connection opened last. */
async function lastPeer(count: number): Promise<net.Socket> {
  while (peers.length < count) await new Promise((resolve) => setImmediate(resolve));
  return peers[count - 1] as net.Socket;
}

describe('BackendSlot', () => {
  it('opens a connection under a slot, gives it back to the pool, and takes it again on the fast path', async () => {
    const p = pool();
    const owner = new Owner(p);
    const slot = owner.slot;
    assert.equal(slot.takeIdle(endpoint.label), false);
    const count = peers.length;
    await slot.attach(decision, 1000);
    const socket = slot.backend as Socket;
    assert.ok(socket !== null);
    assert.equal(slot.reused, false);
    assert.equal(slot.label, endpoint.label);
    assert.deepEqual(owner.events, ['attached']);
    assert.equal(p.openCount(endpoint.label), 1);
    const peer = await lastPeer(count + 1);
    peer.write('hello');
    while (owner.bytes.length === 0) await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(owner.bytes, ['hello'], 'bytes go to the owner while the slot holds the socket');
    const ends = socket.listenerCount('end');
    slot.release(true);
    assert.equal(slot.backend, null);
    assert.deepEqual(p.stats()[endpoint.label], { open: 1, idle: 1, queued: 0 });
    assert.equal(slot.takeIdle(endpoint.label), true);
    assert.equal(slot.backend, socket);
    assert.equal(slot.reused, true);
    assert.equal(socket.listenerCount('end'), ends, 'handlers attached once per connection, not per request');
    slot.release(false);
    assert.equal(socket.destroyed, true);
    assert.deepEqual(p.stats(), {});
  });

  it('an idle socket the backend speaks on is evicted and its slot freed (the owner hears nothing)', async () => {
    const p = pool();
    const owner = new Owner(p);
    const count = peers.length;
    await owner.slot.attach(decision, 1000);
    const socket = owner.slot.backend as Socket;
    owner.slot.release(true);
    const peer = await lastPeer(count + 1);
    peer.write('unasked');
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    assert.deepEqual(owner.bytes, []);
    assert.deepEqual(p.stats(), {});
  });

  it('waits for a slot when the endpoint is full, and gets the connection given back', async () => {
    const p = pool(1);
    const first = new Owner(p);
    const second = new Owner(p);
    await first.slot.attach(decision, 1000);
    const socket = first.slot.backend;
    const waiting = second.slot.attach(decision, 1000);
    assert.equal(p.stats()[endpoint.label]?.queued, 1);
    first.slot.release(true);
    await waiting;
    assert.equal(second.slot.backend, socket, 'the reusable connection went straight to the waiter');
    assert.equal(second.slot.reused, true);
    second.slot.release(false);
    assert.deepEqual(p.stats(), {});
  });

  it('cancelWait takes a waiting request out of the queue and fails its wait', async () => {
    const p = pool(1);
    const first = new Owner(p);
    const second = new Owner(p);
    await first.slot.attach(decision, 1000);
    const waiting = second.slot.attach(decision, 1000);
    second.finished = true;
    second.slot.cancelWait(new PolyproxyError('INTERNAL', 'client gone', { source: 'client' }));
    await assert.rejects(waiting, /client gone/);
    assert.equal(p.stats()[endpoint.label]?.queued, 0);
    first.slot.release(false);
    assert.deepEqual(p.stats(), {});
  });

  it('retry: a GET on a reused connection that closed unanswered goes out again under the same slot; a POST does not', async () => {
    const p = pool(1);
    const owner = new Owner(p);
    await owner.slot.attach(decision, 1000);
    owner.slot.release(true);
    assert.equal(owner.slot.takeIdle(endpoint.label), true);
    assert.equal(owner.slot.retry(head('POST /x HTTP/1.1\r\nHost: a\r\n\r\n'), null, false), false, 'POST: never sent twice');
    assert.equal(owner.slot.retry(head('GET /x HTTP/1.1\r\nHost: a\r\n\r\n'), null, true), false, 'a response byte arrived');
    const old = owner.slot.backend as Socket;
    const resent = owner.nextResend();
    assert.equal(owner.slot.retry(head('GET /x HTTP/1.1\r\nHost: a\r\n\r\n'), null, false), true);
    assert.equal(old.destroyed, true);
    await resent;
    assert.equal(owner.failed, null);
    assert.equal(owner.resent, 1);
    assert.notEqual(owner.slot.backend, old);
    assert.equal(owner.slot.reused, false);
    assert.equal(p.openCount(endpoint.label), 1, 'the same slot, not a second one');
    assert.equal(owner.slot.retry(head('GET /x HTTP/1.1\r\nHost: a\r\n\r\n'), null, false), false, 'once per request');
    owner.slot.release(false);
    assert.deepEqual(p.stats(), {});
  });

  it('detachForRelay hands the socket over without its handlers; the slot is freed when the relay closes', async () => {
    const p = pool(1);
    const owner = new Owner(p);
    await owner.slot.attach(decision, 1000);
    const socket = owner.slot.backend as Socket;
    const ends = socket.listenerCount('end');
    assert.equal(owner.slot.detachForRelay(), socket);
    assert.equal(owner.slot.backend, null);
    assert.equal(socket.listenerCount('end'), ends - 1);
    assert.equal(p.openCount(endpoint.label), 1, 'an upgraded connection keeps its slot');
    owner.slot.relayClosed();
    assert.deepEqual(p.stats(), {});
    socket.destroy();
  });
});
