/**
 * cluster: a fleet of three polyproxy instances sharing Redis
 * (`cluster.redis`) behind HAProxy (tcp mode, round-robin), against one
 * instance, in the same run:
 *
 * 1. connections/s (connect → 1 byte echoed → close, tcp listener with a
 *    fixed backend): one instance direct, one instance behind HAProxy, three
 *    instances behind HAProxy;
 * 2. ws-bridge pushes/s: 50 clients on instance A; the API pushes to A
 *    (local delivery) and to C (C asks Redis who holds the client and sends
 *    the push to A's inbox);
 * 3. resolve latency in-process (Router.route): `resolver.redis` vs static
 *    routes, cache miss (purged before each lookup) and hit.
 *
 * Instances and HAProxy are not pinned (three instances on two cores is the
 * point of the comparison); the load is unpinned too. Uses the machine's
 * Redis on 127.0.0.1:6379 with a per-run key prefix.
 *
 * Env: BENCH_CLUSTER_SECONDS (per run, default 5), BENCH_RATE_CONCURRENCY
 * (default 48), BENCH_CLUSTER_PUSH_CONCURRENCY (default 32),
 * BENCH_CLUSTER_LOOKUPS (default 3000).
 */
import { createClient } from 'redis';
import { Pool } from 'undici';
import WebSocket from 'ws';
import { Router } from '../../src/core/router.ts';
import { SsrfGuard } from '../../src/core/ssrf-guard.ts';
import { StaticRoutes } from '../../src/core/static-routes.ts';
import { RedisLink } from '../../src/fleet/redis-link.ts';
import { RedisResolver } from '../../src/resolvers/redis.ts';
import { log } from '../../src/core/logger.ts';
import { connectRateCommand, startEchoBackend } from '../lib/echo.ts';
import { envNumber } from '../lib/env.ts';
import { haproxyVersion, startHaproxyTcp } from '../lib/haproxy.ts';
import { freePort, sleep } from '../lib/net.ts';
import { startPolyproxyWithConfig } from '../lib/polyproxy-config.ts';
import { runCommand } from '../lib/process.ts';
import { progress } from '../lib/progress.ts';
import type { Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { median } from '../lib/stats.ts';
import { num, ratio } from '../lib/table.ts';
import type { Running } from '../lib/targets.ts';

const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const CLIENTS = 50;

async function connectionRate(ctx: ScenarioContext, port: number, seconds: number, concurrency: number): Promise<{ perSecond: number; errors: number }> {
  const startAt = Date.now() + 500;
  const runs = [];
  for (let i = 0; i < 2; i++) {
    const [cmd, args] = await connectRateCommand(ctx, -1, port, concurrency, seconds, startAt, true);
    runs.push(runCommand(cmd, args, { name: `connect-rate-${i}`, cwd: ctx.root }));
  }
  const results = await Promise.all(runs);
  let connections = 0;
  let errors = 0;
  for (const r of results) {
    const line = r.stdout.split('\n').find((l) => l.includes('"type":"result"'));
    if (r.code !== 0 || line === undefined) throw new Error(`connect-rate failed (exit ${r.code}): ${r.stderr}${r.stdout}`);
    const parsed = JSON.parse(line) as { connections: number; errors: number };
    connections += parsed.connections;
    errors += parsed.errors;
  }
  return { perSecond: connections / seconds, errors };
}

/** Pushes for `seconds` with `concurrency` in flight; counts 200s (delivered). */
async function pushRate(port: number, ids: readonly string[], seconds: number, concurrency: number): Promise<{ perSecond: number; failed: number }> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: concurrency, pipelining: 1 });
  const until = Date.now() + seconds * 1000;
  let ok = 0;
  let failed = 0;
  let n = 0;
  const loop = async (): Promise<void> => {
    while (Date.now() < until) {
      const id = ids[n++ % ids.length] as string;
      const res = await pool.request({ path: `/${id}`, method: 'POST', body: 'ping', headers: { 'content-type': 'text/plain' } });
      await res.body.dump();
      if (res.statusCode === 200) ok++;
      else failed++;
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: concurrency }, loop));
  const elapsed = (Date.now() - started) / 1000;
  await pool.close();
  return { perSecond: ok / elapsed, failed };
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

/** Router.route latency in µs: every lookup a miss (purged first) or every lookup a hit. */
async function resolveLatency(router: Router, ids: readonly string[], lookups: number, hit: boolean): Promise<number[]> {
  const ctx = { protocol: 'tcp', listener: 'bench', clientAddress: '127.0.0.1', clientPort: 1, tls: undefined };
  const times: number[] = [];
  for (let i = 0; i < lookups; i++) {
    const id = ids[i % ids.length] as string;
    if (!hit) router.purge(id);
    const t0 = performance.now();
    await router.route(id, ctx);
    times.push((performance.now() - t0) * 1000);
  }
  return times;
}

export const clusterScenario: Scenario = {
  name: 'cluster',
  description: 'fleet through Redis: 3 instances behind HAProxy tcp round-robin vs 1 (connections/s, ws-bridge pushes/s across instances); resolve latency resolver.redis vs static routes (miss, hit)',
  needsBuild: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const seconds = envNumber('BENCH_CLUSTER_SECONDS', 5);
    const concurrency = envNumber('BENCH_RATE_CONCURRENCY', 48);
    const pushConcurrency = envNumber('BENCH_CLUSTER_PUSH_CONCURRENCY', 32);
    const lookups = envNumber('BENCH_CLUSTER_LOOKUPS', 3000);
    const prefix = `polyproxy-bench-${process.pid}:`;
    const unpinned: ScenarioContext = { ...ctx, proxyCpu: -1 };
    const started: Running[] = [];
    const redis = createClient({ url: REDIS_URL });
    await redis.connect();
    try {
      progress('cluster: echo backend, ws2api API, 1 + 3 polyproxy instances, HAProxy');
      const echo = await startEchoBackend(ctx, 1, -1, { closeAfterEcho: true });
      started.push(echo);
      const { createServer } = await import('node:http');
      const api = createServer((req, res) => {
        req.resume();
        req.on('end', () => res.end(req.method === 'GET' ? 'ok' : ''));
      });
      await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
      const apiUrl = `http://127.0.0.1:${(api.address() as { port: number }).port}/api/`;
      const instance = async (name: string, fleet: boolean): Promise<Running & { ports: Record<string, number> }> => {
        const running = await startPolyproxyWithConfig(
          unpinned,
          {
            security: { allowBackends: ['127.0.0.0/8'] },
            ...(fleet ? { cluster: { redis: { url: REDIS_URL, prefix }, instanceId: name } } : {}),
            listeners: [
              { name: 'tcp', protocol: 'tcp', host: '127.0.0.1', port: await freePort(), backend: `127.0.0.1:${echo.port}` },
              { name: 'ws', protocol: 'ws-bridge', host: '127.0.0.1', port: await freePort(), api: apiUrl },
            ],
          },
          name,
        );
        started.push(running);
        return running;
      };
      const single = await instance('single', false);
      const fleet = [await instance('fleet-A', true), await instance('fleet-B', true), await instance('fleet-C', true)];
      const haSingle = await startHaproxyTcp(unpinned, { backend: `127.0.0.1:${single.ports.tcp}`, name: 'haproxy-1' });
      started.push(haSingle);
      const haFleet = await startHaproxyTcp(unpinned, { backend: fleet.map((f) => `127.0.0.1:${f.ports.tcp}`), name: 'haproxy-3' });
      started.push(haFleet);

      const rate: Array<[string, { perSecond: number; errors: number }]> = [];
      for (const [label, port] of [
        ['one instance, direct', single.ports.tcp],
        ['one instance behind HAProxy', haSingle.port],
        ['three instances behind HAProxy (round-robin)', haFleet.port],
      ] as Array<[string, number]>) {
        progress(`cluster: connections/s, ${label} (${seconds} s)`);
        await connectionRate(ctx, port, 1, concurrency);
        rate.push([label, await connectionRate(ctx, port, seconds, concurrency)]);
      }

      progress(`cluster: ws-bridge pushes, ${CLIENTS} clients on A`);
      const ids = Array.from({ length: CLIENTS }, (_, i) => `client${i}`);
      let received = 0;
      const sockets = await Promise.all(
        ids.map(
          (id) =>
            new Promise<WebSocket>((resolve, reject) => {
              const ws = new WebSocket(`ws://127.0.0.1:${fleet[0]?.ports.ws}/${id}`);
              ws.on('message', () => received++);
              ws.once('open', () => resolve(ws));
              ws.once('error', reject);
            }),
        ),
      );
      const singleSockets = await Promise.all(
        ids.map(
          (id) =>
            new Promise<WebSocket>((resolve, reject) => {
              const ws = new WebSocket(`ws://127.0.0.1:${single.ports.ws}/${id}`);
              ws.on('message', () => received++);
              ws.once('open', () => resolve(ws));
              ws.once('error', reject);
            }),
        ),
      );
      await sleep(300);
      const pushes: Array<[string, { perSecond: number; failed: number }]> = [];
      for (const [label, port] of [
        ['one instance (no fleet), client on it', single.ports.ws],
        ['fleet: push to A, client on A (local)', fleet[0]?.ports.ws],
        ['fleet: push to C, client on A (through Redis)', fleet[2]?.ports.ws],
      ] as Array<[string, number]>) {
        progress(`cluster: pushes/s, ${label} (${seconds} s)`);
        await pushRate(port, ids, 1, pushConcurrency);
        pushes.push([label, await pushRate(port, ids, seconds, pushConcurrency)]);
      }
      for (const ws of [...sockets, ...singleSockets]) ws.terminate();
      api.close();

      progress(`cluster: resolve latency, ${lookups} lookups each`);
      const routeIds = Array.from({ length: 200 }, (_, i) => `tenant${i}`);
      for (const id of routeIds) await redis.set(`${prefix}route:${id}`, `127.0.0.1:${echo.port}`);
      const guard = new SsrfGuard({ allowPrivateBackends: true, allowBackends: [] });
      const link = new RedisLink({ url: REDIS_URL, name: 'bench', commandTimeoutMs: 1000, connectTimeoutMs: 2000, log });
      await link.ready();
      const base = { guard, cacheTtlMs: 60000, cacheMaxEntries: 100000, resolveTimeoutMs: 5000 };
      const redisRouter = new Router({ ...base, sources: [{ name: 'redis', resolver: new RedisResolver(link, `${prefix}route:`) }] });
      const staticRouter = new Router({ ...base, sources: [{ name: 'routes', resolver: new StaticRoutes(Object.fromEntries(routeIds.map((id) => [id, `127.0.0.1:${echo.port}`]))) }] });
      const latency: Array<[string, number[]]> = [];
      for (const [label, router, hit] of [
        ['resolver.redis, miss', redisRouter, false],
        ['static routes, miss', staticRouter, false],
        ['resolver.redis, hit (cached)', redisRouter, true],
        ['static routes, hit (cached)', staticRouter, true],
      ] as Array<[string, Router, boolean]>) {
        await resolveLatency(router, routeIds, 300, hit);
        latency.push([label, await resolveLatency(router, routeIds, lookups, hit)]);
      }
      await link.close();

      const one = rate[1]?.[1].perSecond ?? NaN;
      const three = rate[2]?.[1].perSecond ?? NaN;
      const local = pushes[1]?.[1].perSecond ?? NaN;
      const remote = pushes[2]?.[1].perSecond ?? NaN;
      const redisMiss = median(latency[0]?.[1] ?? []);
      const staticMiss = median(latency[1]?.[1] ?? []);
      return {
        title: 'Fleet through Redis: three instances behind HAProxy vs one',
        verdict: `three instances behind HAProxy: ${num(three)} connections/s = ${ratio(three, one)} one instance behind HAProxy; pushes through Redis to another instance ${num(remote)}/s = ${ratio(remote, local)} local; resolve miss through resolver.redis ${num(redisMiss, 0)} µs vs static ${num(staticMiss, 0)} µs (median)`,
        tables: [
          { caption: 'Connections/s (connect → 1 byte echoed → close)', table: { headers: ['target', 'connections/s', 'vs one behind HAProxy', 'errors'], rows: rate.map(([label, r]) => [label, num(r.perSecond), ratio(r.perSecond, one), num(r.errors)]) } },
          { caption: `ws-bridge pushes/s (${CLIENTS} clients, ${pushConcurrency} pushes in flight)`, table: { headers: ['push path', 'pushes/s delivered', 'vs local', 'failed'], rows: pushes.map(([label, r]) => [label, num(r.perSecond), ratio(r.perSecond, local), num(r.failed)]) } },
          { caption: `Resolve latency, Router.route in-process (${lookups} lookups over 200 ids)`, table: { headers: ['source', 'median µs', 'p99 µs'], rows: latency.map(([label, t]) => [label, num(median(t), 1), num(quantile(t, 0.99), 1)]) } },
        ],
        notes: [
          `polyproxy instances (one worker each, \`--log-level warn\`), HAProxy (\`mode tcp\`, \`balance roundrobin\`, nbthread 1, ${await haproxyVersion()}) and the load are not pinned: three instances share the machine's 2 cores, so the connection-rate figure shows what the fleet costs on one machine, not the scaling of N machines.`,
          `Fleet instances share the machine's Redis (${REDIS_URL}); the single instance has no \`cluster\`. Push load: ${pushConcurrency} HTTP/1.1 keep-alive connections from the bench process, POST /<ClientId> round-robin over ${CLIENTS} clients; a push counts when answered 200 (delivered). Messages seen by the clients: ${num(received)}.`,
          'Resolve latency is measured inside the bench process (the router with the redis or the static source, SSRF guard on), not through a socket; a miss purges the id first so every lookup asks the source.',
          'Other helpers were running builds and tests on the same machine during this run: compare the ratios, which are same-run.',
        ],
        data: { rate, pushes: pushes.map(([label, r]) => ({ label, ...r })), latency: latency.map(([label, t]) => ({ label, medianUs: median(t), p99Us: quantile(t, 0.99) })), received },
      };
    } finally {
      for (const r of started.reverse()) await r.stop().catch(() => {});
      for (const key of await redis.keys(`${prefix}*`)) await redis.del(key);
      await redis.close();
    }
  },
};
