/**
 * tcp-scale: six figures of idle proxied TCP connections (issue #23). Ramp
 * to 100,000 connections through polyproxy's tcp listener run with
 * `workers: N` (SO_REUSEPORT spreads the connections over the workers), read
 * the proxy's RSS (supervisor + workers) at each step, then write one byte on
 * every connection and count the echoes. Reported: RSS per connection (the
 * least-squares slope), ramp time and rate, echoes answered (target: all),
 * and the limits the layout stays under. The seed's PHP/Swoole proxy reports
 * 672,348 connections on an 8-core / 32 GB server at ~33 KB each.
 *
 * Limits, and how the layout meets them (checked before the run starts):
 * - 20,000 open files per process: the proxy holds 2 fds per connection, so
 *   ≥ 11 workers for 100,000; clients and echo backends are spread over
 *   several processes (bench/lib/hold-clients.ts, bench/lib/echo-backend.c).
 * - ephemeral ports (~28,000 per source address towards one destination
 *   address and port): the clients connect without binding a source address,
 *   each load process to its own listener address (127.0.0.20, .21, …, one
 *   tcp listener each, same workers), and the proxy connects to backends
 *   listening on several ports. Binding the clients to 127.0.0.x source
 *   addresses instead would not do: ports taken by an explicit bind() are
 *   skipped by connect()'s own port choice, so 100,000 bound client ports
 *   would leave the proxy's backend connections without ports.
 *
 * Env: BENCH_SCALE_CONNECTIONS (100000), BENCH_SCALE_STEPS (4),
 * BENCH_SCALE_WORKERS (proxy workers, 12), BENCH_SCALE_PROCESSES (load
 * processes = listener addresses, 8), BENCH_SCALE_BACKENDS (echo backend
 * processes, 8, two ports each).
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { startEchoBackend } from '../lib/echo.ts';
import type { EchoBackend } from '../lib/echo.ts';
import { envNumber } from '../lib/env.ts';
import { ephemeralPorts, systemLimits } from '../lib/limits.ts';
import { INSPECT_FLAG, Inspector } from '../lib/inspector.ts';
import { freePort, sleep } from '../lib/net.ts';
import { startPolyproxyWithConfig } from '../lib/polyproxy-config.ts';
import { progress } from '../lib/progress.ts';
import { spawnTracked } from '../lib/process.ts';
import type { Tracked } from '../lib/process.ts';
import { readRssKb, waitForStableRss } from '../lib/rss.ts';
import type { Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { linearRegression } from '../lib/stats.ts';
import { num } from '../lib/table.ts';

const SWOOLE_KB = 33;
const SWOOLE_CONNECTIONS = 672_348;
const WARMUP_PER_PROCESS = 200;
const BACKEND_PORTS = 2;
/** Files a process needs besides its sockets (stdio, epoll, pipes, libraries). */
const FD_HEADROOM = 500;
/** Echoes in flight per load process (a burst of 100,000 overflows loopback's backlog on a busy machine). */
const ECHO_IN_FLIGHT = 200;

interface Opened {
  open: number;
  failed: number;
  dropped: number;
  lastError: string;
}

interface Echoed {
  sent: number;
  ok: number;
  failed: number;
  dropped: number;
  ms: number;
}

interface Step {
  readonly connections: number;
  readonly proxyRssKb: number;
  readonly stable: boolean;
  /** Time to open this step's new connections. */
  readonly rampSeconds: number;
}

async function command<T>(proc: Tracked, line: string, reply: RegExp, timeoutMs = 300_000): Promise<T> {
  const waiting = proc.waitForLine(reply, timeoutMs);
  proc.send(line);
  return JSON.parse(await waiting) as T;
}

function openFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

export const tcpScaleScenario: Scenario = {
  name: 'tcp-scale',
  description: '100,000 idle proxied TCP connections through polyproxy workers: RSS per connection (slope), ramp time, one echo over every connection (not in `all`)',
  needsBuild: true,
  notInAll: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const connections = envNumber('BENCH_SCALE_CONNECTIONS', 100_000);
    const stepCount = Math.max(2, envNumber('BENCH_SCALE_STEPS', 4));
    const workers = Math.max(1, envNumber('BENCH_SCALE_WORKERS', 12));
    const loadProcesses = Math.max(1, envNumber('BENCH_SCALE_PROCESSES', 8));
    const backendProcesses = Math.max(1, envNumber('BENCH_SCALE_BACKENDS', 8));
    const limits = systemLimits();
    const ports = ephemeralPorts(limits);
    const fdBudget = limits.openFilesSoft - FD_HEADROOM;
    const perWorker = Math.ceil(connections / workers);
    const perLoad = Math.ceil(connections / loadProcesses);
    const perBackend = Math.ceil(connections / backendProcesses);
    const perEndpoint = Math.ceil(perBackend / BACKEND_PORTS);
    // SO_REUSEPORT hashes connections over the workers: allow 10% above the mean.
    if (2 * perWorker * 1.1 > fdBudget) throw new Error(`${perWorker} connections per worker (2 fds each, +10% for SO_REUSEPORT's spread) is over ${fdBudget} open files: raise BENCH_SCALE_WORKERS`);
    if (perLoad > fdBudget || perLoad > ports * 0.9) throw new Error(`${perLoad} connections per load process is over its open files (${fdBudget}) or the ports towards one listener address (${ports}): raise BENCH_SCALE_PROCESSES`);
    if (perBackend * 1.1 > fdBudget) throw new Error(`${perBackend} connections per echo backend is over ${fdBudget} open files: raise BENCH_SCALE_BACKENDS`);
    if (perEndpoint * 1.2 > ports * 0.9) throw new Error(`${perEndpoint} proxy connections per backend port is near the ${ports} ephemeral ports: raise BENCH_SCALE_BACKENDS`);
    if (loadProcesses > 200) throw new Error('at most 200 load processes (listener addresses 127.0.0.20 … 127.0.0.219)');

    const stoppers: Array<() => Promise<void>> = [];
    try {
      progress(`tcp-scale: starting ${backendProcesses} echo backends and ${workers} proxy workers`);
      const backends: EchoBackend[] = [];
      for (let i = 0; i < backendProcesses; i++) {
        const echo = await startEchoBackend(ctx, BACKEND_PORTS, -1);
        stoppers.unshift(() => echo.stop());
        backends.push(echo);
      }
      const endpoints = backends.flatMap((b) => b.ports.map((p) => `127.0.0.1:${p}`));
      const listeners = [];
      // tcpKeepAliveMs 0: see the note on keepalive below.
      for (let i = 0; i < loadProcesses; i++) listeners.push({ name: `tcp${i}`, protocol: 'tcp', host: `127.0.0.${20 + i}`, port: await freePort(), backend: endpoints, tcpKeepAliveMs: 0 });
      // Every process of the proxy (the workers inherit the flag) gets an inspector, so each RSS reading follows a full GC in all of them:
      // a dozen heaps that the ramp grew and V8 shrinks when it pleases would otherwise drown the per-connection slope.
      const proxy = await startPolyproxyWithConfig({ ...ctx, proxyCpu: -1 }, { workers, listeners }, 'polyproxy-tcp-scale', 120_000, [INSPECT_FLAG]);
      stoppers.unshift(() => proxy.stop());
      const readyLine = proxy.proc.stdoutLines.find((l) => l.includes('polyproxy ready')) ?? '{}';
      const workerPids = (JSON.parse(readyLine) as { pids?: number[] }).pids ?? [];
      if (workerPids.length !== workers) throw new Error(`expected ${workers} worker pids in the ready line, got ${workerPids.length}`);
      const pids = [proxy.pid, ...workerPids];
      const findUrls = (): string[] => proxy.proc.tail.map((line) => /Debugger listening on (ws:\/\/\S+)/.exec(line)?.[1]).filter((u) => u !== undefined);
      // stderr (the inspectors' lines) and stdout (the ready line) are separate pipes: give the former a moment.
      for (let i = 0; i < 20 && findUrls().length < pids.length; i++) await sleep(100);
      const inspectorUrls = findUrls();
      const inspectors = inspectorUrls.length === pids.length ? await Promise.all(inspectorUrls.map((u) => Inspector.open(u))) : [];
      stoppers.unshift(() => {
        for (const i of inspectors) i.close();
        return Promise.resolve();
      });
      if (inspectors.length === 0) progress(`tcp-scale: found ${inspectorUrls.length} inspectors for ${pids.length} processes: RSS is read without a forced GC`);
      const collectGarbage = async (): Promise<void> => {
        await Promise.all(inspectors.map((i) => i.collectGarbage()));
        await sleep(1000);
      };

      const load: Tracked[] = [];
      for (let i = 0; i < loadProcesses; i++) {
        const listener = listeners[i] as { host: string; name: string };
        const port = proxy.ports[listener.name] as number;
        const proc = spawnTracked(ctx.node, [path.join(ctx.root, 'bench', 'lib', 'hold-clients.ts'), '--host', listener.host, '--port', String(port), '--concurrency', '200'], { name: `hold-clients-${i}`, cwd: ctx.root, stdin: true });
        stoppers.unshift(() => proc.stop('SIGTERM', 10_000));
        await proc.waitForOutput(/"type":"ready"/, 30_000);
        load.push(proc);
      }
      const openAll = async (total: number): Promise<Opened> => {
        const replies = await Promise.all(load.map((c, i) => command<Opened>(c, `open ${Math.floor(total / loadProcesses) + (i < total % loadProcesses ? 1 : 0)}`, /"type":"opened"/)));
        return {
          open: replies.reduce((s, r) => s + r.open, 0),
          failed: replies.reduce((s, r) => s + r.failed, 0),
          dropped: replies.reduce((s, r) => s + r.dropped, 0),
          lastError: replies.map((r) => r.lastError).find((e) => e !== '') ?? '',
        };
      };
      const closeAll = (): Promise<unknown> => Promise.all(load.map((c) => command(c, 'close', /"type":"closed"/)));

      progress(`tcp-scale: warm-up (${num(WARMUP_PER_PROCESS * loadProcesses)} connections)`);
      await openAll(WARMUP_PER_PROCESS * loadProcesses);
      await closeAll();

      const steps: Step[] = [];
      let failedOpens = 0;
      for (let k = 0; k <= stepCount; k++) {
        const target = Math.round((connections * k) / stepCount);
        progress(`tcp-scale: opening ${num(target)} idle connections`);
        const t0 = Date.now();
        const opened = await openAll(target);
        const rampSeconds = (Date.now() - t0) / 1000;
        failedOpens = opened.failed;
        if (opened.open !== target || opened.dropped !== 0) {
          throw new Error(`wanted ${target} open connections, have ${opened.open} (failed ${opened.failed}, dropped ${opened.dropped}; last error: ${opened.lastError})`);
        }
        progress(`tcp-scale: ${num(target)} connections, waiting for the proxy's RSS to settle`);
        await collectGarbage();
        const stable = await waitForStableRss(pids, { maxWaitMs: 20_000 });
        steps.push({ connections: target, proxyRssKb: stable.rssKb, stable: stable.stable, rampSeconds });
        progress(`tcp-scale: ${num(target)} connections, proxy RSS ${num(stable.rssKb / 1024, 1)} MB (${rampSeconds.toFixed(1)} s to open)`);
      }
      const workerRssKb = workerPids.map((p) => readRssKb(p));
      const workerFds = workerPids.map((p) => openFds(p));
      const backendFds = backends.map((b) => openFds(b.pid));
      const loadFds = load.map((l) => openFds(l.pid));

      progress(`tcp-scale: one echo over each of ${num(connections)} connections`);
      const echoes = await Promise.all(load.map((c) => command<Echoed>(c, `echo 60000 ${ECHO_IN_FLIGHT}`, /"type":"echoed"/, 120_000)));
      const echoed = {
        sent: echoes.reduce((s, e) => s + e.sent, 0),
        ok: echoes.reduce((s, e) => s + e.ok, 0),
        failed: echoes.reduce((s, e) => s + e.failed, 0),
        dropped: echoes.reduce((s, e) => s + e.dropped, 0),
        seconds: Math.max(...echoes.map((e) => e.ms)) / 1000,
      };
      progress('tcp-scale: closing connections');
      await closeAll();

      const regression = linearRegression(
        steps.map((s) => s.connections),
        steps.map((s) => s.proxyRssKb),
      );
      const first = steps[0] as Step;
      const last = steps[steps.length - 1] as Step;
      const totalDeltaKb = (last.proxyRssKb - first.proxyRssKb) / (last.connections - first.connections);
      const rampSeconds = steps.reduce((s, x) => s + x.rampSeconds, 0);
      const rampRate = connections / rampSeconds;
      // Whatever did not echo failed: a missing echo, or a connection dropped since the ramp.
    const failed = connections - echoed.ok;
      const met = last.connections === connections && failed === 0;
      const mb = (kb: number): string => num(kb / 1024, 1);
      const verdict =
        `${met ? 'Target met' : 'Target missed'}: ${num(last.connections)} idle proxied TCP connections through ${workers} workers, ${num(echoed.ok)} of ${num(connections)} echoes answered (${num(failed)} failed), ` +
        `${num(regression.slope, 2)} KB per connection (RSS slope; the PHP/Swoole proxy reports ~${SWOOLE_KB} KB at ${num(SWOOLE_CONNECTIONS)} connections on 8 cores / 32 GB), ramp ${num(rampSeconds, 1)} s (${num(rampRate)} connections/s)`;
      return {
        title: `${num(connections)} idle proxied TCP connections (polyproxy tcp, ${workers} workers)`,
        verdict,
        tables: [
          {
            table: {
              headers: ['figure', 'polyproxy', 'seed (PHP/Swoole, 8 cores / 32 GB)'],
              rows: [
                ['connections held', num(last.connections), num(SWOOLE_CONNECTIONS)],
                ['proxy RSS slope, KB per connection', num(regression.slope, 2), `~${SWOOLE_KB}`],
                ['r² of the slope', num(regression.r2, 3), ''],
                ['total Δ RSS / connections, KB', num(totalDeltaKb, 2), ''],
                [`proxy RSS at ${num(connections)} (supervisor + ${workers} workers), MB`, mb(last.proxyRssKb), ''],
                ['ramp time (connect + first echo, all steps), s', num(rampSeconds, 1), ''],
                ['ramp rate, connections/s', num(rampRate), '18,067 (seed, conn/s)'],
                ['echo over every connection: answered / failed (of which dropped before it)', `${num(echoed.ok)} / ${num(failed)} (${num(echoed.dropped)})`, ''],
                ['echo round over all connections, s', num(echoed.seconds, 1), ''],
                ['failed connects during the ramp (retried)', num(failedOpens), ''],
              ],
            },
          },
          {
            caption: 'Proxy RSS (supervisor + workers) at each step:',
            table: {
              headers: ['idle connections', 'proxy RSS MB', 'settled', 'ramp s (this step)'],
              rows: steps.map((s) => [num(s.connections), mb(s.proxyRssKb), s.stable ? 'yes' : 'no', num(s.rampSeconds, 1)]),
            },
          },
          {
            caption: `At ${num(connections)} connections (limit: ${num(limits.openFilesSoft)} open files per process):`,
            table: {
              headers: ['processes', 'open fds: min / max', 'RSS MB: min / max'],
              rows: [
                [`${workers} proxy workers`, `${num(Math.min(...workerFds))} / ${num(Math.max(...workerFds))}`, `${mb(Math.min(...workerRssKb))} / ${mb(Math.max(...workerRssKb))}`],
                [`${loadProcesses} load processes`, `${num(Math.min(...loadFds))} / ${num(Math.max(...loadFds))}`, ''],
                [`${backendProcesses} echo backends`, `${num(Math.min(...backendFds))} / ${num(Math.max(...backendFds))}`, ''],
              ],
            },
          },
        ],
        notes: [
          `Limits: ${num(limits.openFilesSoft)} open files per process (hard ${num(limits.openFilesHard)}), ephemeral ports ${limits.portLow}–${limits.portHigh} (${num(ports)} per source address towards one destination address and port), fs.file-max ${num(limits.fileMax)}; none was raised. The proxy holds 2 fds per connection, so ${workers} workers (${num(perWorker)} connections, ${num(2 * perWorker)} fds each on average; SO_REUSEPORT's hash spreads them); ${loadProcesses} load processes hold ${num(perLoad)} client sockets each; ${backendProcesses} echo backends (bench/lib/echo-backend.c, epoll) ${num(perBackend)} each.`,
          `Ports: each load process connects, without binding a source address, to its own tcp listener address (127.0.0.20 … 127.0.0.${19 + loadProcesses}, one port each, served by every worker): ${num(perLoad)} of ${num(ports)} ports per destination. The proxy connects from 127.0.0.1 to ${endpoints.length} backend ports (the listeners' \`backend\` list, balanced): ~${num(perEndpoint)} per destination. Binding the clients to 127.0.0.x source addresses instead would starve the proxy: ports taken by an explicit bind() are skipped by connect()'s own port choice.`,
          `Each connection writes 1 byte through the proxy and counts as open once the echo comes back (both proxy sockets connected and used once), then stays idle. After the last step every connection writes 1 byte again and waits for its echo (${ECHO_IN_FLIGHT} in flight per load process, 60 s deadline: 100,000 writes at once overflow loopback's 1,000-packet backlog, net.core.netdev_max_backlog, while the cores are busy, and the probes of libuv's TCP keepalive, 1 s apart once a connection idled for tcpKeepAliveMs, get dropped until the kernel aborts the connection): "failed" counts echoes missing, connections dropped and connections not there.`,
          `RSS per connection = least-squares slope of VmRSS summed over the supervisor and its ${workers} workers against open connections at ${steps.map((s) => num(s.connections)).join(', ')}; ${inspectors.length > 0 ? 'each reading follows a full GC in every process (the proxy runs with `--inspect=127.0.0.1:0`, inherited by the workers; the scenario forces `HeapProfiler.collectGarbage` through each inspector, whose own cost is the same at every step) and ' : ''}is taken once 4 samples 0.5 s apart agree within 256 KB per process. A ${num(WARMUP_PER_PROCESS * loadProcesses)}-connection warm-up precedes the 0 reading. Ramp rate = connections / time spent opening them (RSS waits excluded); ${loadProcesses} × 200 connects in flight.`,
          'TCP keepalive is off on the proxy (`tcpKeepAliveMs: 0`; default 60 s): with it, 200,000 idle proxy sockets probe over loopback every minute, and on this shared machine at load ~27 loopback dropped packets for long enough (softnet backlog drops, net.core.netdev_max_backlog 1,000) that the kernel aborted 4,591 connections for unanswered probes in one run (TcpExtTCPAbortOnTimeout 14,683: client, proxy and backend sides). On a real network a lost peer is what keepalive is for; here it only measured how starved the loopback was.',
          `Nothing is pinned: ${workers} workers, ${loadProcesses} load processes and ${backendProcesses} backends share this machine's cores (other engineers' work too), so the ramp rate is a floor, not polyproxy's connection rate (see tcp-rate). This scenario is not in \`all\`: run it alone.`,
        ],
        data: {
          settings: { connections, steps: stepCount, forcedGc: inspectors.length > 0, workers, loadProcesses, backendProcesses, backendPorts: endpoints.length, warmup: WARMUP_PER_PROCESS * loadProcesses },
          limits,
          steps,
          regression,
          totalDeltaKb,
          rampSeconds,
          rampRate,
          echoed,
          failed,
          atTop: { workerRssKb, workerFds, backendFds, loadFds },
          targetMet: met,
          chart: {
            metric: 'proxy RSS per idle TCP connection, KB (lower is better)',
            lowerIsBetter: true,
            bars: [
              { label: `polyproxy, ${num(last.connections)} connections`, value: regression.slope },
              { label: `PHP/Swoole (seed), ${num(SWOOLE_CONNECTIONS)}`, value: SWOOLE_KB },
            ],
          },
        },
      };
    } finally {
      for (const stop of stoppers) await stop();
    }
  },
};
