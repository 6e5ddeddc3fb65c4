/**
 * tcp-rr: request/response through a raw TCP proxy. redis-benchmark GET with
 * 1 KB values over 50 connections, direct to Redis, through polyproxy (tcp
 * listener, fixed backend, one worker), through HAProxy in TCP mode (one
 * thread) and through the naive Node pipe() proxy, in the same run. The
 * proxies are pinned to the same CPU, redis-benchmark to the other one;
 * Redis floats. Target (issue): polyproxy ≥ 0.8× HAProxy.
 *
 * Env: BENCH_RR_REQUESTS (per run, default 250000), BENCH_ROUNDS (default 2,
 * interleaved, order reversed every other round).
 */
import { haproxyVersion, startHaproxyTcp } from '../lib/haproxy.ts';
import { pinned } from '../lib/machine.ts';
import { progress } from '../lib/progress.ts';
import { runChecked, runCommand } from '../lib/process.ts';
import { readTreeCpuSeconds } from '../lib/rss.ts';
import type { Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { max, median } from '../lib/stats.ts';
import { num, ratio } from '../lib/table.ts';
import { startPipeProxy, startPolyproxy, TWO_WORKERS_NOTE } from '../lib/targets.ts';
import type { Running } from '../lib/targets.ts';
import { envNumber } from '../lib/env.ts';

const REDIS_HOST = '127.0.0.1';
const REDIS_PORT = 6379;
const REDIS_BENCHMARK = '/usr/bin/redis-benchmark';
const CONNECTIONS = 50;
const VALUE_BYTES = 1024;
const TARGET = 0.8;

/** The CPU the load generator runs on: the one the proxies are not pinned to. */
export function clientCpu(ctx: ScenarioContext): number {
  return ctx.proxyCpu < 0 ? -1 : ctx.proxyCpu === 0 ? 1 : 0;
}

function benchArgs(port: number, requests: number): string[] {
  return ['-h', REDIS_HOST, '-p', String(port), '-t', 'get', '-d', String(VALUE_BYTES), '-c', String(CONNECTIONS), '-n', String(requests), '-q'];
}

interface RunResult {
  readonly opsPerSecond: number;
  /** CPU used by the proxy during the run, in cores (null for direct). */
  readonly proxyCpu: number | null;
}

async function runRedisBenchmark(ctx: ScenarioContext, port: number, requests: number, proxyPid: number | null): Promise<RunResult> {
  const cpuBefore = proxyPid === null ? 0 : readTreeCpuSeconds(proxyPid);
  const started = Date.now();
  const [cmd, args] = pinned(clientCpu(ctx), REDIS_BENCHMARK, benchArgs(port, requests));
  const r = await runCommand(cmd, args, { name: 'redis-benchmark' });
  const elapsed = (Date.now() - started) / 1000;
  const cpuAfter = proxyPid === null ? 0 : readTreeCpuSeconds(proxyPid);
  // -q prints progress lines ending in \r, then "GET: 123456.79 requests per second, p50=0.199 msec".
  const match = /GET: ([\d.]+) requests per second/.exec(r.stdout);
  if (r.code !== 0 || match === null) throw new Error(`redis-benchmark on port ${port} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  return { opsPerSecond: Number(match[1]), proxyCpu: proxyPid === null ? null : (cpuAfter - cpuBefore) / elapsed };
}

interface Target {
  readonly key: string;
  readonly label: string;
  readonly port: number;
  readonly pid: number | null;
}

export const tcpRrScenario: Scenario = {
  name: 'tcp-rr',
  description: 'redis-benchmark GET 1 KB, 50 conns: direct vs polyproxy (tcp) vs HAProxy tcp (1 thread) vs naive Node pipe() proxy',
  needsBuild: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const requests = envNumber('BENCH_RR_REQUESTS', 250_000);
    const rounds = Math.max(1, envNumber('BENCH_ROUNDS', 2));
    const ping = await runCommand('redis-cli', ['-h', REDIS_HOST, '-p', String(REDIS_PORT), 'ping']);
    if (ping.stdout.trim() !== 'PONG') throw new Error(`cannot reach Redis on ${REDIS_HOST}:${REDIS_PORT} (redis-cli ping: ${ping.stdout}${ping.stderr})`);
    // redis-benchmark's GET reads the key its SET test writes ("key:__rand_int__"): store a 1 KB value first.
    await runChecked(REDIS_BENCHMARK, ['-h', REDIS_HOST, '-p', String(REDIS_PORT), '-t', 'set', '-d', String(VALUE_BYTES), '-n', '1000', '-q'], { name: 'redis-benchmark set' });
    const versions = {
      redisBenchmark: (await runCommand(REDIS_BENCHMARK, ['--version'])).stdout.trim(),
      redis: /redis_version:(\S+)/.exec((await runCommand('redis-cli', ['-h', REDIS_HOST, '-p', String(REDIS_PORT), 'info', 'server'])).stdout)?.[1] ?? '',
      haproxy: await haproxyVersion(),
    };

    const started: Running[] = [];
    try {
      progress('tcp-rr: starting polyproxy, HAProxy, pipe proxy');
      const backend = `${REDIS_HOST}:${REDIS_PORT}`;
      const polyproxy = await startPolyproxy(ctx, { backend, protocol: 'tcp' });
      started.push(polyproxy);
      const polyproxy2 = await startPolyproxy(ctx, { backend, protocol: 'tcp', workers: 2 });
      started.push(polyproxy2);
      const haproxy = await startHaproxyTcp(ctx, { backend });
      started.push(haproxy);
      const pipe = await startPipeProxy(ctx, backend);
      started.push(pipe);
      const targets: Target[] = [
        { key: 'direct', label: 'direct (Redis)', port: REDIS_PORT, pid: null },
        { key: 'polyproxy', label: 'polyproxy (tcp, fixed backend)', port: polyproxy.port, pid: polyproxy.pid },
        { key: 'polyproxy2', label: 'polyproxy, 2 workers (unpinned)', port: polyproxy2.port, pid: polyproxy2.pid },
        { key: 'haproxy', label: 'HAProxy tcp (nbthread 1)', port: haproxy.port, pid: haproxy.pid },
        { key: 'pipe', label: 'naive Node pipe() proxy', port: pipe.port, pid: pipe.pid },
      ];
      for (const t of targets) {
        progress(`tcp-rr: warm-up ${t.label}`);
        await runRedisBenchmark(ctx, t.port, Math.ceil(requests / 8), t.pid);
      }
      const runs = new Map<string, RunResult[]>(targets.map((t) => [t.key, []]));
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? targets : [...targets].reverse();
        for (const t of order) {
          progress(`tcp-rr: round ${round + 1}/${rounds}, ${t.label} (${num(requests)} GETs)`);
          runs.get(t.key)?.push(await runRedisBenchmark(ctx, t.port, requests, t.pid));
        }
      }

      const best = (key: string): number => max((runs.get(key) ?? []).map((r) => r.opsPerSecond));
      const direct = best('direct');
      const ha = best('haproxy');
      const poly = best('polyproxy');
      const rows = targets.map((t) => {
        const rs = runs.get(t.key) ?? [];
        const ops = best(t.key);
        const cpu = rs.map((r) => r.proxyCpu).filter((c): c is number => c !== null);
        const perOp = rs.filter((r) => r.proxyCpu !== null).map((r) => ((r.proxyCpu as number) / r.opsPerSecond) * 1e6);
        return [
          t.label,
          num(ops),
          rs.map((r) => num(r.opsPerSecond)).join(', '),
          ratio(ops, direct),
          ratio(ops, ha),
          cpu.length === 0 ? '—' : `${Math.round(median(cpu) * 100)} %`,
          perOp.length === 0 ? '—' : num(median(perOp), 1),
        ];
      });
      const met = poly >= TARGET * ha;
      const verdict = `Target ${met ? 'met' : 'missed'}: polyproxy ${num(poly)} GET/s = ${ratio(poly, ha)} HAProxy tcp (target ≥ ${TARGET.toFixed(2)}×), ${ratio(poly, direct)} direct`;
      return {
        title: 'TCP request/response: redis-benchmark GET 1 KB, 50 connections',
        verdict,
        tables: [{ table: { headers: ['target', 'GET/s (best)', 'GET/s per run', 'vs direct', 'vs HAProxy', 'proxy CPU', 'proxy CPU µs/op'], rows } }],
        notes: [
          `\`redis-benchmark ${benchArgs(0, requests).join(' ').replace('-p 0', '-p <port>')}\` per target; ${rounds} interleaved round(s) (order reversed every other round) after a ${num(Math.ceil(requests / 8))}-request warm-up each; best run. The 1 KB value is stored first with \`redis-benchmark -t set -d ${VALUE_BYTES}\`.`,
          `${versions.redisBenchmark}; Redis ${versions.redis}; ${versions.haproxy}.`,
          `polyproxy (\`--protocol tcp --backend 127.0.0.1:6379\`, one worker, \`--log-level warn\`), HAProxy (\`mode tcp\`, \`nbthread 1\`) and the naive pipe() proxy ${ctx.proxyCpu < 0 ? 'are not pinned' : `are each pinned to CPU ${ctx.proxyCpu}, redis-benchmark to CPU ${clientCpu(ctx)}`}; Redis is not pinned. "proxy CPU" is the proxy's user+system CPU time over the run's wall time (100 % = one core); "µs/op" is that CPU time per GET (medians of the runs).`,
          'The naive pipe() proxy is bench/lib/pipe-proxy.ts: `client.pipe(backend).pipe(client)` with noDelay.',
          TWO_WORKERS_NOTE,
        ],
        data: {
          settings: { requests, rounds, connections: CONNECTIONS, valueBytes: VALUE_BYTES, proxyCpu: ctx.proxyCpu, clientCpu: clientCpu(ctx) },
          versions,
          targets: targets.map((t) => ({ key: t.key, label: t.label, best: best(t.key), runs: runs.get(t.key) })),
          ratios: { polyproxyToHaproxy: poly / ha, twoWorkersToHaproxy: best('polyproxy2') / ha, twoWorkersToOne: best('polyproxy2') / poly, polyproxyToDirect: poly / direct, haproxyToDirect: ha / direct, pipeToHaproxy: best('pipe') / ha },
          targetMet: met,
        },
      };
    } finally {
      progress('tcp-rr: stopping proxies');
      await Promise.all(started.map((r) => r.stop()));
    }
  },
};
