/**
 * brokers (issue 22): the broker listeners side by side with HAProxy in TCP
 * mode and a direct connection, one part per protocol. Each part starts its
 * own backend, polyproxy and HAProxy, measures once, and returns its table,
 * notes and verdict; the scenario joins them. Add a part by appending a
 * BrokerPart to PARTS.
 *
 * redis part: `redis-benchmark -q -t get,set -P 16` (50 connections, each
 * authenticating as an ACL user with `--user`, so polyproxy routes every
 * connection by its AUTH) against a redis-server of the bench's own.
 * Target: polyproxy ≥ 0.8× HAProxy tcp on GET and on SET.
 *
 * Env: BENCH_REDIS_REQUESTS (requests per test, default 1,000,000),
 * BENCH_REDIS_CONNECTIONS (default 50).
 */
import net from 'node:net';
import { envNumber } from '../lib/env.ts';
import { haproxyVersion, startHaproxyTcp } from '../lib/haproxy.ts';
import { pinned } from '../lib/machine.ts';
import { freePort } from '../lib/net.ts';
import { startPolyproxyWithConfig } from '../lib/polyproxy-config.ts';
import { progress } from '../lib/progress.ts';
import { runCommand, spawnTracked } from '../lib/process.ts';
import { readCpuSeconds } from '../lib/rss.ts';
import type { ReportTable, Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { num, ratio } from '../lib/table.ts';
import type { Running } from '../lib/targets.ts';
import { brokersMqttScenario } from './brokers-mqtt.ts';
import { clientCpu } from './tcp-rr.ts';

/** What one protocol's part hands the scenario. */
export interface BrokerPartReport {
  readonly verdict: string;
  readonly met: boolean;
  readonly tables: readonly ReportTable[];
  readonly notes: readonly string[];
  readonly data: Record<string, unknown>;
}

export interface BrokerPart {
  readonly key: string;
  run(ctx: ScenarioContext): Promise<BrokerPartReport>;
}

// --- redis ------------------------------------------------------------------------

const REDIS_SERVER = '/usr/bin/redis-server';
const REDIS_BENCHMARK = '/usr/bin/redis-benchmark';
const REDIS_TARGET = 0.8;
const REDIS_USER = 'bench';
const REDIS_PASSWORD = 'bench-pw';
const PIPELINE = 16;

function redisArgs(port: number, requests: number, connections: number): string[] {
  return ['-h', '127.0.0.1', '-p', String(port), '--user', REDIS_USER, '-a', REDIS_PASSWORD, '-q', '-t', 'get,set', '-P', String(PIPELINE), '-c', String(connections), '-n', String(requests)];
}

/** `SET: 123.45 requests per second, ...` lines (progress lines end in \r and are overwritten). */
function parseRedisBenchmark(output: string): Record<string, number> {
  const rates: Record<string, number> = {};
  for (const line of output.split(/[\r\n]+/)) {
    const match = /^(SET|GET): ([\d.]+) requests per second/.exec(line.trim());
    if (match !== null) rates[match[1] as string] = Number(match[2]);
  }
  return rates;
}

function redisCommand(port: number, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let seen = '';
    socket.setEncoding('utf8');
    socket.once('error', reject);
    socket.once('connect', () => socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`));
    socket.on('data', (t: string) => {
      seen += t;
      if (seen.endsWith('\r\n')) {
        socket.destroy();
        resolve(seen);
      }
    });
  });
}

async function startRedisServer(ctx: ScenarioContext): Promise<Running> {
  const port = await freePort();
  const [cmd, args] = pinned(clientCpu(ctx), REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  const proc = spawnTracked(cmd, args, { name: 'redis-server' });
  const stop = (): Promise<void> => proc.stop('SIGTERM', 5000);
  const deadline = Date.now() + 15_000;
  while (!(await redisCommand(port, ['PING']).catch(() => '')).startsWith('+PONG')) {
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`redis-server on ${port} did not answer PING`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const acl = await redisCommand(port, ['ACL', 'SETUSER', REDIS_USER, 'on', `>${REDIS_PASSWORD}`, '~*', '&*', '+@all']);
  if (!acl.startsWith('+OK')) throw new Error(`ACL SETUSER: ${acl}`);
  return { name: 'redis-server', port, pid: proc.pid, proc, stop };
}

interface RedisRun {
  readonly get: number;
  readonly set: number;
  /** Proxy CPU over the run, in cores (null for direct). */
  readonly proxyCpu: number | null;
  readonly seconds: number;
}

async function runRedisBenchmark(ctx: ScenarioContext, port: number, requests: number, connections: number, proxyPid: number | null): Promise<RedisRun> {
  const before = proxyPid === null ? 0 : readCpuSeconds(proxyPid);
  const started = Date.now();
  const [cmd, args] = pinned(clientCpu(ctx), REDIS_BENCHMARK, redisArgs(port, requests, connections));
  const r = await runCommand(cmd, args, { name: 'redis-benchmark' });
  const seconds = (Date.now() - started) / 1000;
  const rates = parseRedisBenchmark(r.stdout);
  if (r.code !== 0 || rates.GET === undefined || rates.SET === undefined) throw new Error(`redis-benchmark on port ${port} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  return { get: rates.GET, set: rates.SET, proxyCpu: proxyPid === null ? null : (readCpuSeconds(proxyPid) - before) / seconds, seconds };
}

async function redisVersion(): Promise<string> {
  const r = await runCommand(REDIS_SERVER, ['--version']);
  return /v=(\S+)/.exec(r.stdout)?.[1] ?? r.stdout.trim();
}

export const redisPart: BrokerPart = {
  key: 'redis',
  async run(ctx) {
    const requests = Math.max(10_000, envNumber('BENCH_REDIS_REQUESTS', 1_000_000));
    const connections = Math.max(1, envNumber('BENCH_REDIS_CONNECTIONS', 50));
    const started: Running[] = [];
    try {
      progress('brokers/redis: starting redis-server, polyproxy, HAProxy');
      const redis = await startRedisServer(ctx);
      started.push(redis);
      const backend = `127.0.0.1:${redis.port}`;
      const polyproxy = await startPolyproxyWithConfig(ctx, {
        security: { allowBackends: ['127.0.0.0/8'] },
        routes: { [REDIS_USER]: backend },
        listeners: [{ name: 'kv', protocol: 'redis', host: '127.0.0.1', port: await freePort() }],
      });
      started.push(polyproxy);
      const haproxy = await startHaproxyTcp(ctx, { backend });
      started.push(haproxy);
      const targets = [
        { key: 'direct', label: 'direct (redis-server)', port: redis.port, pid: null },
        { key: 'polyproxy', label: 'polyproxy (redis, routed by AUTH user)', port: polyproxy.port, pid: polyproxy.pid },
        { key: 'haproxy', label: 'HAProxy tcp (nbthread 1)', port: haproxy.port, pid: haproxy.pid },
      ];
      const runs = new Map<string, RedisRun>();
      for (const t of targets) {
        progress(`brokers/redis: warm-up ${t.label}`);
        await runRedisBenchmark(ctx, t.port, Math.max(10_000, Math.round(requests / 10)), connections, t.pid);
        progress(`brokers/redis: ${t.label} (${num(requests)} requests per test)`);
        runs.set(t.key, await runRedisBenchmark(ctx, t.port, requests, connections, t.pid));
      }
      const get = (key: string): RedisRun => runs.get(key) as RedisRun;
      const direct = get('direct');
      const poly = get('polyproxy');
      const ha = get('haproxy');
      const rows = targets.map((t) => {
        const r = get(t.key);
        return [
          t.label,
          num(r.get),
          ratio(r.get, direct.get),
          ratio(r.get, ha.get),
          num(r.set),
          ratio(r.set, direct.set),
          ratio(r.set, ha.set),
          r.proxyCpu === null ? '—' : `${Math.round(r.proxyCpu * 100)} %`,
        ];
      });
      const met = poly.get >= REDIS_TARGET * ha.get && poly.set >= REDIS_TARGET * ha.set;
      const verdict = `redis: target ${met ? 'met' : 'missed'}: polyproxy GET ${num(poly.get)}/s = ${ratio(poly.get, ha.get)} HAProxy, SET ${num(poly.set)}/s = ${ratio(poly.set, ha.set)} HAProxy (target ≥ ${REDIS_TARGET.toFixed(2)}× on each); ${ratio(poly.get, direct.get)} / ${ratio(poly.set, direct.set)} direct`;
      const versions = { redis: await redisVersion(), haproxy: await haproxyVersion() };
      return {
        verdict,
        met,
        tables: [
          {
            caption: `redis-benchmark -t get,set -P ${PIPELINE}, ${connections} connections, ${num(requests)} requests per test`,
            table: { headers: ['target', 'GET/s', 'GET vs direct', 'GET vs HAProxy', 'SET/s', 'SET vs direct', 'SET vs HAProxy', 'proxy CPU'], rows },
          },
        ],
        notes: [
          `\`redis-benchmark ${redisArgs(0, requests, connections).join(' ').replace('-p 0', '-p <port>')}\` per target, after a warm-up of a tenth as many requests; one run each (order: direct, polyproxy, HAProxy). Every benchmark connection authenticates with \`AUTH ${REDIS_USER} …\` first (redis-benchmark --user), which polyproxy routes by (route \`${REDIS_USER}\` → the redis-server) and replays; HAProxy and the direct run pass it to Redis as is.`,
          `Backend: redis-server ${versions.redis} of the bench's own (no persistence, ACL user \`${REDIS_USER}\`), pinned with redis-benchmark to CPU ${clientCpu(ctx)}; ${versions.haproxy}. polyproxy (one worker, \`logLevel: warn\`) and HAProxy (\`mode tcp\`, \`nbthread 1\`, a byte relay that does not route) ${ctx.proxyCpu < 0 ? 'are not pinned' : `are pinned to CPU ${ctx.proxyCpu}`}. "proxy CPU" is the proxy's user+system CPU time over the run's wall time (100 % = one core).`,
        ],
        data: { settings: { requests, connections, pipeline: PIPELINE }, versions, runs: Object.fromEntries(runs), ratios: { getToHaproxy: poly.get / ha.get, setToHaproxy: poly.set / ha.set, getToDirect: poly.get / direct.get, setToDirect: poly.set / direct.set }, targetMet: met },
      };
    } finally {
      progress('brokers/redis: stopping processes');
      await Promise.all(started.map((r) => r.stop()));
    }
  },
};

// --- mqtt: its own module (brokers-mqtt.ts), run as a part of this scenario ------

export const mqttPart: BrokerPart = {
  key: 'mqtt',
  async run(ctx) {
    const report = await brokersMqttScenario.run(ctx);
    // The MQTT rate has no target in the issue: it is reported, not judged.
    return { verdict: `mqtt: ${report.verdict}`, met: true, tables: report.tables.map((t, i) => (i === 0 ? { ...t, caption: report.title } : t)), notes: report.notes, data: report.data };
  },
};

/** Every part, in the order they run; another protocol's part is appended here. */
export const PARTS: readonly BrokerPart[] = [redisPart, mqttPart];

export const brokersScenario: Scenario = {
  name: 'brokers',
  description: 'broker listeners vs HAProxy tcp vs direct: redis-benchmark -t get,set -P 16 through the redis listener; MQTT QoS 0/1 publish rate through the mqtt listener',
  needsBuild: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const reports: Array<BrokerPartReport & { key: string }> = [];
    for (const part of PARTS) reports.push({ key: part.key, ...(await part.run(ctx)) });
    return {
      title: `Brokers through polyproxy vs HAProxy tcp vs direct (${reports.map((r) => r.key).join(', ')})`,
      verdict: reports.map((r) => r.verdict).join('; '),
      tables: reports.flatMap((r) => r.tables),
      notes: reports.flatMap((r) => r.notes),
      data: Object.fromEntries(reports.map((r) => [r.key, { ...r.data, verdict: r.verdict, targetMet: r.met }])),
    };
  },
};
