import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { ColdStarts } from '../../../src/core/cold-start.ts';
import { parseEndpoint } from '../../../src/core/endpoint.ts';
import { PolyproxyError } from '../../../src/core/errors.ts';

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('ColdStarts', () => {
  it('wakes once for many waiters and releases them all when the endpoint accepts', async () => {
    const port = await freePort();
    const endpoint = parseEndpoint(`127.0.0.1:${port}`);
    const gate = new ColdStarts({ timeoutMs: 5000, pollIntervalMs: 10 });
    let wakes = 0;
    const server = net.createServer((s) => s.destroy());
    const coldStart = {
      wake: async (): Promise<void> => {
        wakes++;
        // The backend comes up a little after wake() returns.
        setTimeout(() => server.listen(port, '127.0.0.1'), 30);
      },
    };
    try {
      const waits = Array.from({ length: 50 }, () => gate.wait('tenant', coldStart, [endpoint]));
      assert.equal(gate.waking('tenant'), true);
      assert.equal(gate.counters.waiting, 50);
      await Promise.all(waits);
      assert.equal(wakes, 1);
      assert.deepEqual({ ...gate.counters }, { wakes: 1, waits: 50, timeouts: 0, waiting: 0 });
      assert.equal(gate.waking('tenant'), false);
      // A straggler right after the wake goes straight through without a second wake.
      await gate.wait('tenant', coldStart, [endpoint]);
      assert.equal(wakes, 1);
    } finally {
      server.close();
    }
  });

  it('fails waiters with UNAVAILABLE at the deadline', async () => {
    const endpoint = parseEndpoint(`127.0.0.1:${await freePort()}`);
    const gate = new ColdStarts({ timeoutMs: 60, pollIntervalMs: 10 });
    await assert.rejects(gate.wait('sleepy', { wake: async () => {} }, [endpoint]), (err: unknown) => err instanceof PolyproxyError && err.kind === 'UNAVAILABLE' && /did not wake within 60 ms/.test(err.message));
    assert.equal(gate.counters.timeouts, 1);
    assert.equal(gate.counters.waiting, 0);
    assert.equal(gate.waking('sleepy'), false, 'nobody waits: the next connection starts afresh');
  });

  it('a wake() that rejects fails every waiter at once', async () => {
    const endpoint = parseEndpoint(`127.0.0.1:${await freePort()}`);
    const gate = new ColdStarts({ timeoutMs: 5000, pollIntervalMs: 10 });
    const coldStart = { wake: () => Promise.reject(new Error('quota exceeded')) };
    const results = await Promise.allSettled([gate.wait('t', coldStart, [endpoint]), gate.wait('t', coldStart, [endpoint])]);
    for (const r of results) assert.ok(r.status === 'rejected' && r.reason instanceof PolyproxyError && /could not be woken: quota exceeded/.test(r.reason.message));
  });

  it('a wake() that throws synchronously is handled the same', async () => {
    const endpoint = parseEndpoint(`127.0.0.1:${await freePort()}`);
    const gate = new ColdStarts({ timeoutMs: 5000, pollIntervalMs: 10 });
    const coldStart = {
      wake: (): Promise<void> => {
        throw new Error('boom');
      },
    };
    await assert.rejects(gate.wait('t', coldStart, [endpoint]), /could not be woken: boom/);
  });

  it('refuses past maxWaiting', async () => {
    const endpoint = parseEndpoint(`127.0.0.1:${await freePort()}`);
    const gate = new ColdStarts({ timeoutMs: 100, pollIntervalMs: 10, maxWaiting: 2 });
    const coldStart = { wake: async () => {} };
    const first = gate.wait('t', coldStart, [endpoint]);
    const second = gate.wait('t', coldStart, [endpoint]);
    await assert.rejects(gate.wait('t', coldStart, [endpoint]), /2 connections already wait/);
    await Promise.allSettled([first, second]);
  });

  it('with a fleet lock: wakes only when it takes the lock, releases it when the backend is up; without it, waits for the endpoint', async () => {
    const port = await freePort();
    const endpoint = parseEndpoint(`127.0.0.1:${port}`);
    const server = net.createServer((s) => s.destroy());
    const calls: string[] = [];
    let holder: string | null = null;
    const lockFor = (name: string) => ({
      acquire: async (id: string, ttlMs: number): Promise<boolean> => {
        calls.push(`${name} acquire ${id} ${ttlMs}`);
        if (holder !== null) return false;
        holder = name;
        return true;
      },
      release: (id: string, keepMs?: number): void => {
        calls.push(`${name} release ${id} keep ${keepMs}`);
        if (holder === name) holder = null;
      },
    });
    // Two gates, as on two instances, sharing one lock.
    const first = new ColdStarts({ timeoutMs: 5000, pollIntervalMs: 10 }, undefined, lockFor('first'));
    const second = new ColdStarts({ timeoutMs: 5000, pollIntervalMs: 10 }, undefined, lockFor('second'));
    let wakes = 0;
    const coldStart = {
      wake: async (): Promise<void> => {
        wakes++;
        setTimeout(() => server.listen(port, '127.0.0.1'), 50);
      },
    };
    try {
      const a = first.wait('tenant', coldStart, [endpoint]);
      await new Promise((r) => setTimeout(r, 5));
      const b = second.wait('tenant', coldStart, [endpoint]);
      await Promise.all([a, b]);
      assert.equal(wakes, 1);
      assert.equal(first.counters.wakes, 1);
      assert.equal(second.counters.wakes, 0);
      assert.deepEqual(calls, ['first acquire tenant 5000', 'second acquire tenant 5000', 'first release tenant keep 5000']);
    } finally {
      server.close();
    }
  });
});
