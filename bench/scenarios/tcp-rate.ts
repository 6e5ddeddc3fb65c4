/**
 * tcp-rate: connection rate through a raw TCP proxy. Each connection is
 * connect → 1 byte written → the byte echoed back → close; the figure is
 * connections per second. Direct to the echo backend, through polyproxy (tcp
 * listener, fixed backend, one worker), through HAProxy in TCP mode (one
 * thread), through the naive Node pipe() proxy and through the "Node floor"
 * (bench/lib/raw-proxy.ts: libuv handles driven directly, the cheapest proxy
 * a Node process can run — it bounds what any Node proxy can do here), in
 * the same run. The proxies are pinned to the same CPU; the echo backend and
 * the load processes to the other one. Target (issue): polyproxy ≥ 10,000
 * connections/s (the PHP/Swoole proxy reports 18,067/s on 8 cores).
 *
 * Env: BENCH_RATE_SECONDS (per run, default 6), BENCH_RATE_CONCURRENCY
 * (loops per load process, default 48), BENCH_RATE_PROCESSES (default 2),
 * BENCH_ROUNDS (default 2, interleaved), BENCH_RATE_CLOSE (`server`,
 * default: the echo backend half-closes right after the echo and the client
 * closes on EOF, so TIME_WAIT stays on listening ports; `client`: the client
 * closes as soon as the echo arrives), BENCH_NATIVE=0 (Node load generator
 * and echo backend instead of the C ones).
 */
import { readFileSync } from 'node:fs';
import { connectRateCommand, startEchoBackend } from '../lib/echo.ts';
import { haproxyVersion, startHaproxyTcp } from '../lib/haproxy.ts';
import { sleep } from '../lib/net.ts';
import { progress } from '../lib/progress.ts';
import { runCommand } from '../lib/process.ts';
import type { CommandResult } from '../lib/process.ts';
import { readCpuSeconds } from '../lib/rss.ts';
import type { Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { max, median } from '../lib/stats.ts';
import { num, ratio } from '../lib/table.ts';
import { startPipeProxy, startPolyproxy, startRawProxy } from '../lib/targets.ts';
import type { Running } from '../lib/targets.ts';
import { clientCpu } from './tcp-rr.ts';
import { envNumber } from '../lib/env.ts';

const TARGET = 10_000;
const SWOOLE = 18_067;
const WARMUP_SECONDS = 1;

/** Busy and total jiffies of one CPU (all CPUs when cpu < 0), from /proc/stat. */
function cpuTimes(cpu: number): { busy: number; total: number } {
  const label = cpu < 0 ? 'cpu' : `cpu${cpu}`;
  const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`${label} `)) ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

/** TIME_WAIT sockets (all namespaces' view of this one), from /proc/net/sockstat. */
function timeWaitCount(): number {
  const m = /TCP: .*\btw (\d+)/.exec(readFileSync('/proc/net/sockstat', 'utf8'));
  return m === null ? NaN : Number(m[1]);
}

interface RunResult {
  readonly connectionsPerSecond: number;
  readonly connections: number;
  readonly errors: number;
  readonly lastError: string;
  /** Proxy CPU over the window, in cores (null for direct). */
  readonly proxyCpu: number | null;
  /** Busy share of the load CPU (0–1) over the window. */
  readonly loadCpuBusy: number;
  readonly timeWaitAfter: number;
}

interface Target {
  readonly key: string;
  readonly label: string;
  readonly port: number;
  readonly pid: number | null;
}

async function runRate(ctx: ScenarioContext, port: number, seconds: number, processes: number, concurrency: number, proxyPid: number | null, serverCloses: boolean): Promise<RunResult> {
  const cpu = clientCpu(ctx);
  const startAt = Date.now() + 700;
  const procs: Array<Promise<CommandResult>> = [];
  for (let i = 0; i < processes; i++) {
    const [cmd, args] = await connectRateCommand(ctx, cpu, port, concurrency, seconds, startAt, serverCloses);
    procs.push(runCommand(cmd, args, { name: `connect-rate-${i}`, cwd: ctx.root }));
  }
  const results = Promise.all(procs);
  results.catch(() => {});
  await sleep(Math.max(0, startAt - Date.now()));
  const cpu0 = proxyPid === null ? 0 : readCpuSeconds(proxyPid);
  const load0 = cpuTimes(cpu);
  await sleep(seconds * 1000);
  const cpu1 = proxyPid === null ? 0 : readCpuSeconds(proxyPid);
  const load1 = cpuTimes(cpu);
  const parsed = (await results).map((r, i) => {
    const line = r.stdout.split('\n').find((l) => l.includes('"type":"result"'));
    if (r.code !== 0 || line === undefined) throw new Error(`connect-rate-${i} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
    return JSON.parse(line) as { connections: number; errors: number; lastError: string };
  });
  const connections = parsed.reduce((s, r) => s + r.connections, 0);
  return {
    connectionsPerSecond: connections / seconds,
    connections,
    errors: parsed.reduce((s, r) => s + r.errors, 0),
    lastError: parsed.map((r) => r.lastError).find((e) => e !== '') ?? '',
    proxyCpu: proxyPid === null ? null : (cpu1 - cpu0) / seconds,
    loadCpuBusy: (load1.busy - load0.busy) / Math.max(1, load1.total - load0.total),
    timeWaitAfter: timeWaitCount(),
  };
}

export const tcpRateScenario: Scenario = {
  name: 'tcp-rate',
  description: 'connect → 1 byte echoed → close, connections/s: direct vs polyproxy (tcp) vs HAProxy tcp (1 thread) vs naive Node pipe() proxy vs Node floor (raw libuv handles)',
  needsBuild: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const seconds = envNumber('BENCH_RATE_SECONDS', 6);
    const concurrency = envNumber('BENCH_RATE_CONCURRENCY', 48);
    const processes = Math.max(1, envNumber('BENCH_RATE_PROCESSES', 2));
    const rounds = Math.max(1, envNumber('BENCH_ROUNDS', 2));
    const serverCloses = process.env.BENCH_RATE_CLOSE !== 'client';
    const versions = { haproxy: await haproxyVersion() };
    const started: Running[] = [];
    try {
      progress('tcp-rate: starting echo backend, polyproxy, HAProxy, pipe proxy, raw proxy');
      const echo = await startEchoBackend(ctx, 5, clientCpu(ctx), { closeAfterEcho: serverCloses });
      started.push(echo);
      const [directPort, polyBackend, haBackend, pipeBackend, rawBackend] = echo.ports as [number, number, number, number, number];
      const polyproxy = await startPolyproxy(ctx, { backend: `127.0.0.1:${polyBackend}`, protocol: 'tcp' });
      started.push(polyproxy);
      const haproxy = await startHaproxyTcp(ctx, { backend: `127.0.0.1:${haBackend}` });
      started.push(haproxy);
      const pipe = await startPipeProxy(ctx, `127.0.0.1:${pipeBackend}`);
      started.push(pipe);
      const raw = await startRawProxy(ctx, `127.0.0.1:${rawBackend}`);
      started.push(raw);
      const targets: Target[] = [
        { key: 'direct', label: 'direct (echo backend)', port: directPort, pid: null },
        { key: 'polyproxy', label: 'polyproxy (tcp, fixed backend)', port: polyproxy.port, pid: polyproxy.pid },
        { key: 'haproxy', label: 'HAProxy tcp (nbthread 1)', port: haproxy.port, pid: haproxy.pid },
        { key: 'pipe', label: 'naive Node pipe() proxy', port: pipe.port, pid: pipe.pid },
        { key: 'nodeFloor', label: 'Node floor (raw libuv handles)', port: raw.port, pid: raw.pid },
      ];
      for (const t of targets) {
        progress(`tcp-rate: warm-up ${t.label} (${WARMUP_SECONDS} s)`);
        await runRate(ctx, t.port, WARMUP_SECONDS, processes, concurrency, t.pid, serverCloses);
      }
      const runs = new Map<string, RunResult[]>(targets.map((t) => [t.key, []]));
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? targets : [...targets].reverse();
        for (const t of order) {
          progress(`tcp-rate: round ${round + 1}/${rounds}, ${t.label} (${seconds} s)`);
          runs.get(t.key)?.push(await runRate(ctx, t.port, seconds, processes, concurrency, t.pid, serverCloses));
        }
      }

      const best = (key: string): number => max((runs.get(key) ?? []).map((r) => r.connectionsPerSecond));
      const direct = best('direct');
      const ha = best('haproxy');
      const poly = best('polyproxy');
      const floor = best('nodeFloor');
      /** Median proxy CPU µs per connection of a target's runs (NaN without CPU figures). */
      const usPerConn = (key: string): number => {
        const v = (runs.get(key) ?? []).filter((r) => r.proxyCpu !== null).map((r) => ((r.proxyCpu as number) / r.connectionsPerSecond) * 1e6);
        return v.length === 0 ? NaN : median(v);
      };
      const all = [...runs.values()].flat();
      const errors = all.reduce((s, r) => s + r.errors, 0);
      const maxTimeWait = max(all.map((r) => r.timeWaitAfter));
      const rows = targets.map((t) => {
        const rs = runs.get(t.key) ?? [];
        const cps = best(t.key);
        const cpu = rs.map((r) => r.proxyCpu).filter((c): c is number => c !== null);
        const perConn = rs.filter((r) => r.proxyCpu !== null).map((r) => ((r.proxyCpu as number) / r.connectionsPerSecond) * 1e6);
        return [
          t.label,
          num(cps),
          rs.map((r) => num(r.connectionsPerSecond)).join(', '),
          ratio(cps, direct),
          ratio(cps, ha),
          cpu.length === 0 ? '—' : `${Math.round(median(cpu) * 100)} %`,
          perConn.length === 0 ? '—' : num(median(perConn), 1),
          `${Math.round(median(rs.map((r) => r.loadCpuBusy)) * 100)} %`,
          num(rs.reduce((s, r) => s + r.errors, 0)),
        ];
      });
      const met = poly >= TARGET;
      const verdict = `Target ${met ? 'met' : 'missed'}: polyproxy ${num(poly)} connections/s (target ≥ ${num(TARGET)}/s; the PHP/Swoole proxy reports ${num(SWOOLE)}/s on 8 cores) = ${ratio(poly, ha)} HAProxy tcp, ${ratio(poly, direct)} direct; Node floor ${num(floor)} connections/s = ${ratio(floor, ha)} HAProxy tcp`;
      const loadCpu = clientCpu(ctx);
      return {
        title: `TCP connection rate: connect → 1 byte echoed → close (${serverCloses ? 'server' : 'client'} closes first)`,
        verdict,
        tables: [
          {
            table: {
              headers: ['target', 'connections/s (best)', 'connections/s per run', 'vs direct', 'vs HAProxy', 'proxy CPU', 'proxy CPU µs/conn', 'load CPU busy', 'errors'],
              rows,
            },
          },
        ],
        notes: [
          `Load: ${processes} ${echo.native ? 'C (epoll, bench/lib/connect-rate.c)' : 'Node (bench/lib/connect-rate.ts)'} processes, each keeping ${concurrency} connect → write 1 byte → read the echo → close${serverCloses ? ' (on the server’s EOF)' : ''} loops in flight, ${loadCpu < 0 ? 'unpinned' : `pinned to CPU ${loadCpu}`}; a connection counts when its echo arrives inside the ${seconds}-s window (both processes measure the same window). ${rounds} interleaved round(s) (order reversed every other round) after a ${WARMUP_SECONDS}-s warm-up each; best run.`,
          `Echo backend: ${echo.native ? 'bench/lib/echo-backend.c (epoll, one thread)' : 'bench/lib/echo-backend.ts'}, ${loadCpu < 0 ? 'unpinned' : `pinned to CPU ${loadCpu} with the load processes`}, one listening port per target. polyproxy (\`--protocol tcp\`, one worker, \`--log-level warn\`), HAProxy (\`mode tcp\`, \`nbthread 1\`, ${versions.haproxy}), the naive pipe() proxy and the Node floor are ${ctx.proxyCpu < 0 ? 'not pinned' : `each pinned to CPU ${ctx.proxyCpu}`}.`,
          `"Node floor (raw libuv handles)" is bench/lib/raw-proxy.ts, a measuring anchor (not part of polyproxy): the cheapest proxy a Node process can run — libuv TCP handles driven directly through Node's internal bindings, no net.Socket, no streams, no per-read allocation, each read written straight to the other side (backpressure by stopping reads, EOF relayed with shutdown). What it costs per connection (${num(usPerConn('nodeFloor'), 1)} µs of CPU here, vs ${num(usPerConn('haproxy'), 1)} for HAProxy and ${num(usPerConn('polyproxy'), 1)} for polyproxy) is the Node runtime's own cost (V8 ⇄ C++ calls, libuv, the kernel's TCP work), so its rate bounds what any Node proxy — polyproxy included — can do on this machine${floor < TARGET ? `: the floor itself stays below the ${num(TARGET)}/s target, so no single-process Node proxy reaches it here` : ''}.`,
          `"load CPU busy" is the busy share of CPU ${loadCpu < 0 ? '(all)' : loadCpu} (load processes + echo backend + their kernel work) over the window: near 100 % means the load side, not the proxy, limits the rate — the "direct" row is the load side's ceiling on that CPU. "proxy CPU" is the proxy's user+system CPU over the window (100 % = one core); "µs/conn" is that CPU time per connection (medians of the runs).`,
          serverCloses
            ? `Ephemeral ports / TIME_WAIT: the echo backend half-closes (shutdown SHUT_WR) right after echoing, each proxy relays that FIN to the client, and the client closes when it reads EOF. The closing side that gets TIME_WAIT is therefore always the server side of a connection (backend or proxy listener), whose local port is a listening port, so no ephemeral port of the load processes or of the proxies' backend connections sits in TIME_WAIT (BENCH_RATE_CLOSE=client measures the client-closes-first variant). Besides, \`net.ipv4.tcp_tw_reuse\` = ${readFileSync('/proc/sys/net/ipv4/tcp_tw_reuse', 'utf8').trim()} (2 = reuse on loopback) and each target has its own destination ports. Most TIME_WAIT sockets seen after a run: ${num(maxTimeWait)} (tcp_max_tw_buckets ${readFileSync('/proc/sys/net/ipv4/tcp_max_tw_buckets', 'utf8').trim()}); failed connections over all runs: ${num(errors)}.`
            : `Ephemeral ports / TIME_WAIT: the client closes first, so TIME_WAIT entries pile up on the client side (and on each proxy's backend side); the kernel's \`net.ipv4.tcp_tw_reuse\` = ${readFileSync('/proc/sys/net/ipv4/tcp_tw_reuse', 'utf8').trim()} (2 = reuse on loopback) lets connect() reuse them, each target has its own destination port (proxy port and backend port), and runs are ${seconds} s. Most TIME_WAIT sockets seen after a run: ${num(maxTimeWait)} (port range ${readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().replace(/\s+/, '–')}); failed connections over all runs: ${num(errors)}.`,
        ],
        data: {
          settings: { closeFirst: serverCloses ? 'server' : 'client', seconds, concurrency, processes, rounds, warmupSeconds: WARMUP_SECONDS, proxyCpu: ctx.proxyCpu, clientCpu: loadCpu, nativeLoad: echo.native },
          versions,
          targets: targets.map((t) => ({ key: t.key, label: t.label, best: best(t.key), runs: runs.get(t.key) })),
          ratios: { polyproxyToHaproxy: poly / ha, polyproxyToDirect: poly / direct, haproxyToDirect: ha / direct, pipeToHaproxy: best('pipe') / ha, nodeFloorToHaproxy: floor / ha, nodeFloorToDirect: floor / direct, polyproxyToNodeFloor: poly / floor },
          maxTimeWait,
          errors,
          targetMet: met,
        },
      };
    } finally {
      progress('tcp-rate: stopping proxies and echo backend');
      await Promise.all(started.map((r) => r.stop()));
    }
  },
};
