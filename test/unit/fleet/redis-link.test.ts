/**
 * RedisLink against a private redis-server that the test stops and starts:
 * the up/down state and `polyproxy_redis_up` follow it, one warning per
 * outage however many calls fail, calls fail fast while down, and the link
 * (subscriptions included) recovers by itself.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { registry } from '../../../src/core/metrics.ts';
import { RedisDownError, RedisLink, redactUrl } from '../../../src/fleet/redis-link.ts';
import { OwnRedis, freePort, redisServerMissing, waitUntil } from '../../helpers/fleet.ts';
import { canConnect, serviceMissing } from '../../helpers/services.ts';

let skip: string | null = null;
let server: OwnRedis;
const lines: Array<{ level: number; msg: string }> = [];
const log = pino({ level: 'info' }, new Writable({ write(chunk: Buffer, _e, done) { lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string }); done(); } }));

before(async () => {
  skip = await serviceMissing('redis-server is not installed', async () => (await redisServerMissing()) === null);
  if (skip !== null) return;
  server = await OwnRedis.start();
});

after(async () => {
  await server?.stop();
});

async function gauge(): Promise<number | undefined> {
  const metric = await registry.getSingleMetric('polyproxy_redis_up')?.get();
  return metric?.values.find((v) => v.labels.link === 'unit')?.value;
}

test('state, metric and a single warning follow Redis going away and coming back', async (t) => {
  if (skip !== null) return t.skip(skip);
  const link = new RedisLink({ url: server.url, name: 'unit', commandTimeoutMs: 300, connectTimeoutMs: 2000, log });
  try {
    await waitUntil('link up', () => link.up);
    assert.equal(await gauge(), 1);
    const received: string[] = [];
    await link.subscribe('unit:chan', (m) => received.push(m));
    assert.equal(await link.run((c) => c.set('unit:k', 'v')), 'OK');

    await server.stop();
    await waitUntil('link down', () => !link.up);
    assert.equal(await gauge(), 0);
    for (let i = 0; i < 20; i++) {
      const started = Date.now();
      await assert.rejects(link.run((c) => c.get('unit:k')), RedisDownError);
      assert.ok(Date.now() - started < 300, 'fails fast while down');
    }
    assert.equal(await link.publish('unit:chan', 'x'), false);
    await new Promise((r) => setTimeout(r, 500)); // several reconnect attempts fail meanwhile
    assert.equal(lines.filter((l) => l.msg.startsWith('redis unavailable')).length, 1, 'one warning per outage');

    await server.start();
    await waitUntil('link back', () => link.up, 10000);
    assert.equal(await gauge(), 1);
    assert.equal(lines.filter((l) => l.msg.startsWith('redis is back')).length, 1);
    // The subscription came back with the connection.
    await waitUntil('message through the resubscribed channel', async () => {
      await link.publish('unit:chan', 'after');
      return received.includes('after');
    }, 5000, 100);
  } finally {
    await link.close();
  }
});

test('a link to nothing starts (ready() resolves within connectTimeoutMs) and stays down', async () => {
  const link = new RedisLink({ url: 'redis://127.0.0.1:1', name: 'unit-nothing', commandTimeoutMs: 100, connectTimeoutMs: 300, log });
  const started = Date.now();
  await link.ready();
  assert.ok(Date.now() - started < 2000);
  assert.equal(link.up, false);
  await assert.rejects(link.run((c) => c.ping()), RedisDownError);
  await link.close();
});

test('redactUrl hides the password', () => {
  assert.equal(redactUrl('rediss://user:secret@redis.example:6380/0'), 'rediss://user:***@redis.example:6380/0');
  assert.equal(redactUrl('not a url'), '(unparsable url)');
});

test('Redis Sentinel: the link finds the master through a sentinel, runs commands and pub/sub', async (t) => {
  if (skip !== null) return t.skip(skip);
  const sentinel = await startSentinel(server.port);
  const link = new RedisLink({ url: '', sentinel: { name: 'ppmaster', nodes: [`127.0.0.1:${sentinel.port}`] }, name: 'unit-sentinel', commandTimeoutMs: 1000, connectTimeoutMs: 3000, log });
  try {
    await waitUntil('sentinel link up', () => link.up, 10000);
    assert.equal(await link.run((c) => c.set('unit:sentinel', 'yes')), 'OK');
    assert.equal(await link.run((c) => c.get('unit:sentinel')), 'yes');
    const received: string[] = [];
    await link.subscribe('unit:sentinel-chan', (m) => received.push(m));
    await waitUntil('message through the sentinel link', async () => {
      await link.publish('unit:sentinel-chan', 'hi');
      return received.includes('hi');
    }, 5000, 100);
  } finally {
    await link.close();
    await sentinel.stop();
  }
});

/** `redis-server --sentinel` on a free port, monitoring the private server as "ppmaster". */
async function startSentinel(masterPort: number): Promise<{ port: number; stop(): Promise<void> }> {
  const { spawn } = await import('node:child_process');
  const { mkdtemp, writeFile } = await import('node:fs/promises');
  const os = await import('node:os');
  const path = await import('node:path');
  const port = await freePort();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pp-sentinel-'));
  const file = path.join(dir, 'sentinel.conf');
  await writeFile(file, `port ${port}\nbind 127.0.0.1\nsentinel monitor ppmaster 127.0.0.1 ${masterPort} 1\nsentinel down-after-milliseconds ppmaster 5000\n`);
  const child = spawn('redis-server', [file, '--sentinel'], { stdio: 'ignore' });
  await waitUntil('sentinel listening', () => canConnect('127.0.0.1', port), 10000, 50);
  return {
    port,
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

test('Redis slow (a command past commandTimeoutMs): the link goes down, then comes back by itself once Redis answers', async (t) => {
  if (skip !== null) return t.skip(skip);
  const link = new RedisLink({ url: server.url, name: 'unit-slow', commandTimeoutMs: 200, connectTimeoutMs: 2000, log });
  const other = new RedisLink({ url: server.url, name: 'unit-sleeper', commandTimeoutMs: 5000, connectTimeoutMs: 2000, log });
  try {
    await waitUntil('links up', () => link.up && other.up);
    // A script that blocks the (private) server for 1.5 s: the link's next command times out.
    const busy = "local s = redis.call('TIME') local t0 = s[1] * 1000000 + s[2] while true do local n = redis.call('TIME') if n[1] * 1000000 + n[2] - t0 > 1500000 then break end end return 1";
    const sleeping = other.run((c) => c.eval(busy)).catch(() => {});
    await new Promise((r) => setTimeout(r, 50));
    await assert.rejects(link.run((c) => c.get('unit:k')), RedisDownError);
    assert.equal(link.up, false);
    await sleeping;
    await waitUntil('link back after the slowness', () => link.up, 5000);
    assert.equal(await link.run((c) => c.ping()), 'PONG');
  } finally {
    await link.close();
    await other.close();
  }
});

test('a reply that arrived while this process was stalled past commandTimeoutMs is not a timeout (the link stays up)', async (t) => {
  if (skip !== null) return t.skip(skip);
  const link = new RedisLink({ url: server.url, name: 'unit-stall', commandTimeoutMs: 100, connectTimeoutMs: 2000, log });
  try {
    await waitUntil('link up', () => link.up);
    const before = lines.filter((l) => l.msg.startsWith('redis unavailable')).length;
    for (let i = 0; i < 5; i++) {
      const reply = link.run((c) => c.ping());
      // node-redis writes the command in the next check phase; right after, this process stalls (a GC pause, a starved CPU)
      // for 3× the bound while Redis answers at once: the reply waits in the socket when the timer fires.
      setImmediate(() => {
        const until = Date.now() + 300;
        while (Date.now() < until);
      });
      assert.equal(await reply, 'PONG');
    }
    assert.equal(link.up, true);
    assert.equal(lines.filter((l) => l.msg.startsWith('redis unavailable')).length, before);
  } finally {
    await link.close();
  }
});
