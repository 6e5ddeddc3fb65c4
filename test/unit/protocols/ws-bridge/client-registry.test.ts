import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { WebSocket } from 'ws';
import { BridgeClient, ClientRegistry, kClient } from '../../../../src/protocols/ws-bridge/client-registry.ts';
import type { ClientOwner, TaggedSocket } from '../../../../src/protocols/ws-bridge/client-registry.ts';

class FakeSocket {
  readyState = 1;
  isPaused = false;
  pings = 0;
  terminated = false;
  ping(): void {
    this.pings++;
  }
  terminate(): void {
    this.terminated = true;
  }
}

const owner: ClientOwner = { clientMessage() {}, clientClosed() {}, clientError() {} };

function client(registry: ClientRegistry, id: string, now: number): { c: BridgeClient; ws: FakeSocket } {
  const ws = new FakeSocket();
  const c = new BridgeClient(id, ws as unknown as WebSocket as TaggedSocket, now, owner);
  registry.add(c);
  return { c, ws };
}

test('sweep: pings quiet clients, cuts off silent ones, leaves recently active ones alone', () => {
  const registry = new ClientRegistry(1000, 2500);
  const quiet = client(registry, 'quiet', 0);
  const active = client(registry, 'active', 0);
  const silent = client(registry, 'silent', 0);
  active.c.lastSeen = 900; // a message 100 ms before the sweep
  registry.sweep(1000);
  assert.equal(quiet.ws.pings, 1);
  assert.equal(active.ws.pings, 0);
  assert.equal(silent.ws.pings, 1);
  quiet.c.lastSeen = 1100; // its pong
  registry.sweep(2600);
  assert.equal(silent.ws.terminated, true);
  assert.equal(silent.c.serverReason, 'dead peer: no pong');
  assert.equal(quiet.ws.terminated, false);
  assert.equal(quiet.ws.pings, 2);
  registry.stop();
});

test('sweep: a paused client (waiting for the API in ordered mode) is neither pinged nor cut off', () => {
  const registry = new ClientRegistry(1000, 2500);
  const paused = client(registry, 'paused', 0);
  paused.ws.isPaused = true;
  registry.sweep(5000);
  assert.equal(paused.ws.terminated, false);
  assert.equal(paused.ws.pings, 0);
  paused.ws.isPaused = false;
  registry.sweep(5000);
  assert.equal(paused.ws.terminated, true);
  registry.stop();
});

test('add returns the displaced client; remove keeps a newer one with the same id', () => {
  const registry = new ClientRegistry(1000, 2500);
  const old = client(registry, 'x', 0);
  const ws = new FakeSocket();
  const newer = new BridgeClient('x', ws as unknown as WebSocket as TaggedSocket, 1, owner);
  assert.equal(registry.add(newer), old.c);
  registry.remove(old.c);
  assert.equal(registry.get('x'), newer);
  assert.equal((ws as unknown as TaggedSocket)[kClient], newer);
  registry.remove(newer);
  assert.equal(registry.size, 0);
  registry.stop();
});
