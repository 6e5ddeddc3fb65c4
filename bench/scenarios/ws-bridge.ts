/**
 * ws-bridge: the WebSocket ↔ HTTP bridge under the ws2api original's load
 * (issue #6). Ramp to 45,000 WebSocket clients, each sending one message
 * every 10 s (4,500 msg/s at the top), through polyproxy's ws-bridge
 * listener to an HTTP API that answers every message (the reply comes back
 * to the client). Reported: memory per connection (slope of the bridge
 * processes' total RSS over the ramp steps), messages per second sustained
 * at the top, reply latency, and failed requests. Targets: ≤ 12 KB per
 * connection, zero failed requests, the full 4,500 msg/s sustained. The Go
 * original (mevdschee/ws2api) reports 250,000 clients at 25,000 msg/s within
 * 32 GB on a bigger machine.
 *
 * A process may hold 20,000 open files, so the clients come from several
 * load processes (bench/lib/ws-load.ts) and the bridge runs several workers
 * (SO_REUSEPORT spreads connections over them); the API is
 * bench/lib/ws2api-server.ts.
 *
 * Env: BENCH_WSB_CLIENTS (45000), BENCH_WSB_STEPS (3), BENCH_WSB_PROCESSES
 * (load processes, 4), BENCH_WSB_WORKERS (bridge workers, 3), BENCH_WSB_RATE
 * (new connections per second over all load processes, 600), BENCH_WSB_IDLE
 * (idle clients for the bridge vs bare ws pass, 10000; 0 skips it),
 * BENCH_WSB_SUSTAIN (seconds measured at the top, 30), BENCH_WSB_PIN=1 (pin
 * the bridge to the proxy CPU like other scenarios; by default its workers
 * and the API share both cores with the load, as one core cannot carry
 * several bridge workers, the ramp and 4,500 msg/s).
 */
import path from 'node:path';
import { freePort, sleep } from '../lib/net.ts';
import { pinned } from '../lib/machine.ts';
import { startPolyproxyWithConfig } from '../lib/polyproxy-config.ts';
import { progress } from '../lib/progress.ts';
import { spawnTracked } from '../lib/process.ts';
import type { Tracked } from '../lib/process.ts';
import { readRssKb } from '../lib/rss.ts';
import type { Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { linearRegression, median } from '../lib/stats.ts';
import { num } from '../lib/table.ts';
import { clientCpu } from './tcp-rr.ts';
import { envNumber } from '../lib/env.ts';
import { ephemeralPorts, systemLimits } from '../lib/limits.ts';

const TARGET_KB = 12;
/** Issue #23: what an idle client holds (forced GC, no traffic). */
const IDLE_TARGET_KB = 8;
const IDLE_WARMUP = 1000;
const INTERVAL_MS = 10_000;
const WARMUP_PER_PROCESS = 100;

interface LoadStats {
  open: number;
  sent: number;
  replies: number;
  failedUpgrades: number;
  unexpectedCloses: number;
  lastError: string;
  p50: number;
  p99: number;
  max: number;
  samples: number;
  rssKb: number;
}

interface Step {
  readonly clients: number;
  readonly bridgeRssKb: number;
  readonly perProcessRssKb: number[];
  readonly rampSeconds: number;
}

async function command<T>(proc: Tracked, line: string, reply: RegExp, timeoutMs = 300_000): Promise<T> {
  const waiting = proc.waitForLine(reply, timeoutMs);
  proc.send(line);
  return JSON.parse(await waiting) as T;
}

function sumStats(list: readonly LoadStats[]): LoadStats {
  const total: LoadStats = { open: 0, sent: 0, replies: 0, failedUpgrades: 0, unexpectedCloses: 0, lastError: '', p50: 0, p99: 0, max: 0, samples: 0, rssKb: 0 };
  for (const s of list) {
    total.open += s.open;
    total.sent += s.sent;
    total.replies += s.replies;
    total.failedUpgrades += s.failedUpgrades;
    total.unexpectedCloses += s.unexpectedCloses;
    total.samples += s.samples;
    total.rssKb += s.rssKb;
    if (total.lastError === '') total.lastError = s.lastError;
    total.p50 = Math.max(total.p50, s.p50);
    total.p99 = Math.max(total.p99, s.p99);
    total.max = Math.max(total.max, s.max);
  }
  return total;
}

interface IdleCost {
  readonly rssKb: number;
  readonly heapUsedKb: number;
  readonly heapTotalKb: number;
  readonly externalKb: number;
}

/**
 * Memory one idle client holds: bench/lib/ws-idle-target.ts (the bridge
 * in-process, or a bare `ws` server) takes `clients` connections from one
 * ws-load process that sends nothing; full GC before both readings.
 */
async function idleCost(ctx: ScenarioContext, mode: 'bridge' | 'bare', apiUrl: string, clients: number): Promise<IdleCost> {
  const target = spawnTracked(ctx.node, ['--expose-gc', path.join(ctx.root, 'bench', 'lib', 'ws-idle-target.ts'), '--mode', mode, '--api', apiUrl], { name: `ws-idle-${mode}`, cwd: ctx.root, stdin: true });
  try {
    const port = (JSON.parse(await target.waitForOutput(/"type":"listening"/, 30_000)) as { port: number }).port;
    const load = spawnTracked(ctx.node, [path.join(ctx.root, 'bench', 'lib', 'ws-load.ts'), '--port', String(port), '--prefix', `idle-${mode}-`, '--local-address', '127.0.0.9'], { name: `ws-idle-load-${mode}`, cwd: ctx.root, stdin: true });
    try {
      await load.waitForOutput(/"type":"ready"/, 30_000);
      await command(load, `open ${IDLE_WARMUP} 2000`, /"type":"opened"/);
      await command(load, 'close', /"type":"closed"/);
      await command(target, 'mark', /"type":"marked"/);
      const opened = await command<{ open: number; lastError: string }>(load, `open ${clients} 2000`, /"type":"opened"/);
      if (opened.open !== clients) throw new Error(`idle ${mode}: wanted ${clients} clients, have ${opened.open} (${opened.lastError})`);
      await sleep(2000);
      const measured = await command<IdleCost>(target, 'measure', /"type":"measured"/);
      const per = (kb: number): number => kb / clients;
      return { rssKb: per(measured.rssKb), heapUsedKb: per(measured.heapUsedKb), heapTotalKb: per(measured.heapTotalKb), externalKb: per(measured.externalKb) };
    } finally {
      await load.stop('SIGTERM', 5000);
    }
  } finally {
    await target.stop('SIGTERM', 5000);
  }
}

/** ws-scale's client ports (ws-load.ts --local-ports): below the ephemeral range (32768–60999), so nobody's connect() picks them. */
const LOCAL_PORTS = '10000-32767';

/** API connections per bridge worker: bounded so the ramp's burst of upgrade GETs cannot eat the open-file budget. */
const API_POOL_MAX = 256;

/** The bridge's own metrics pages (each summed over the workers), summed over its listeners. */
async function bridgeMetrics(listeners: ReadonlyArray<{ host: string; port: number }>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const l of listeners) {
    const text = await (await fetch(`http://${l.host}:${l.port}/metrics`)).text();
    for (const line of text.split('\n')) {
      const m = /^polyproxy_wsbridge_(\w+)\{[^}]*\} (\S+)$/.exec(line);
      if (m !== null) out[m[1] as string] = (out[m[1] as string] ?? 0) + Number(m[2]);
    }
  }
  return out;
}

/** Median of `samples` readings 0.5 s apart of the summed RSS (traffic keeps flowing, so it never sits still). */
async function medianRss(pids: readonly number[], samples = 8): Promise<{ total: number; each: number[] }> {
  const totals: number[] = [];
  const each: number[][] = pids.map(() => []);
  for (let i = 0; i < samples; i++) {
    let sum = 0;
    pids.forEach((pid, j) => {
      const kb = readRssKb(pid);
      sum += kb;
      each[j]?.push(kb);
    });
    totals.push(sum);
    if (i < samples - 1) await sleep(500);
  }
  return { total: median(totals), each: each.map((e) => median(e)) };
}

/** What ws-bridge and ws-scale (issue #23, 100,000 clients) set differently. */
interface WsBridgeSettings {
  readonly name: string;
  readonly clients: number;
  readonly stepCount: number;
  readonly loadProcesses: number;
  readonly workers: number;
  readonly rate: number;
  readonly sustainSeconds: number;
  readonly pin: boolean;
  readonly apiPoolMax: number;
  /**
   * One ws-bridge listener per load process, on its own loopback address
   * (127.0.0.20, .21, …), which the clients connect to without binding a
   * source address; otherwise one listener on 127.0.0.1 and each load
   * process binds its own source address (127.0.0.10, .11, …). The scale
   * run needs the former: ports taken by an explicit bind() are skipped by
   * connect()'s own port choice, so 100,000 bound client ports would leave
   * the bridge's API connections without ports.
   */
  readonly listenerPerProcess: boolean;
  /** API processes (bench/lib/ws2api-server.ts --processes, SO_REUSEPORT). */
  readonly apiProcesses: number;
  /** Idle clients for the per-client pass (bridge vs bare `ws`, forced GC); 0 = skip it. */
  readonly idleClients: number;
}

export const wsBridgeScenario: Scenario = {
  name: 'ws-bridge',
  description: 'WebSocket ↔ HTTP bridge (ws2api): ramp to 45,000 clients × 1 msg/10 s; RSS per connection, msg/s, failed requests',
  needsBuild: true,
  run: (ctx) =>
    runWsBridge(ctx, {
      name: 'ws-bridge',
      clients: envNumber('BENCH_WSB_CLIENTS', 45_000),
      stepCount: Math.max(2, envNumber('BENCH_WSB_STEPS', 3)),
      loadProcesses: Math.max(1, envNumber('BENCH_WSB_PROCESSES', 4)),
      workers: Math.max(1, envNumber('BENCH_WSB_WORKERS', 3)),
      rate: envNumber('BENCH_WSB_RATE', 600),
      sustainSeconds: envNumber('BENCH_WSB_SUSTAIN', 30),
      pin: process.env.BENCH_WSB_PIN === '1',
      apiPoolMax: API_POOL_MAX,
      listenerPerProcess: false,
      idleClients: envNumber('BENCH_WSB_IDLE', 10_000),
      apiProcesses: 1,
    }),
};

/**
 * ws-scale (issue #23): the same bridge at 100,000 clients × 1 msg / 10 s
 * (10,000 msg/s), as ws2api's own benchmark; 6 workers (20,000 open files
 * each: 6 is the fewest that hold 100,000 clients, and on 2 cores every
 * extra process costs context switches) and 6 load processes, each on its
 * own listener address; one API process. Not in `all`. Env:
 * BENCH_WSS_CLIENTS (100000), BENCH_WSS_STEPS (4), BENCH_WSS_PROCESSES (6),
 * BENCH_WSS_WORKERS (6), BENCH_WSS_RATE (1000), BENCH_WSS_SUSTAIN (30),
 * BENCH_WSS_API_POOL (16 per worker and listener), BENCH_WSS_API_PROCESSES (1).
 */
export const wsScaleScenario: Scenario = {
  name: 'ws-scale',
  description: 'ws-bridge at 100,000 WebSocket clients × 1 msg/10 s (10,000 msg/s) over 6 workers: KB per client, msg/s, p99, failed (not in `all`)',
  needsBuild: true,
  notInAll: true,
  run: (ctx) =>
    runWsBridge(ctx, {
      name: 'ws-scale',
      clients: envNumber('BENCH_WSS_CLIENTS', 100_000),
      stepCount: Math.max(2, envNumber('BENCH_WSS_STEPS', 4)),
      loadProcesses: Math.max(1, envNumber('BENCH_WSS_PROCESSES', 6)),
      workers: Math.max(1, envNumber('BENCH_WSS_WORKERS', 6)),
      rate: envNumber('BENCH_WSS_RATE', 1000),
      sustainSeconds: envNumber('BENCH_WSS_SUSTAIN', 30),
      pin: false,
      apiPoolMax: Math.max(1, envNumber('BENCH_WSS_API_POOL', 16)),
      listenerPerProcess: true,
      idleClients: 0,
      apiProcesses: Math.max(1, envNumber('BENCH_WSS_API_PROCESSES', 1)),
    }),
};

async function runWsBridge(ctx: ScenarioContext, settings: WsBridgeSettings): Promise<ScenarioReport> {
  const { name, clients, stepCount, loadProcesses, workers, rate, sustainSeconds, pin, apiPoolMax, listenerPerProcess, idleClients, apiProcesses } = settings;
  const bridgeCpu = pin ? ctx.proxyCpu : -1;
  const perProcessMax = Math.ceil(clients / loadProcesses);
  const limits = systemLimits();
  const env = name === 'ws-bridge' ? 'BENCH_WSB' : 'BENCH_WSS';
  if (perProcessMax > limits.openFilesSoft - 1000 || perProcessMax > ephemeralPorts(limits) * 0.9) throw new Error(`${perProcessMax} clients per load process is over its ${limits.openFilesSoft} open files or ${ephemeralPorts(limits)} ports: raise ${env}_PROCESSES`);
  const listenerCount = listenerPerProcess ? loadProcesses : 1;
  const perWorkerMax = Math.ceil((clients / workers) * 1.1) + apiPoolMax * listenerCount;
  if (perWorkerMax > limits.openFilesSoft - 1000) throw new Error(`about ${perWorkerMax} connections per bridge worker (+10% for SO_REUSEPORT's spread, + its API pool) leaves too little room under ${limits.openFilesSoft} open files: raise ${env}_WORKERS`);

  const stoppers: Array<() => Promise<void>> = [];
  try {
    progress(`${name}: starting the API and the bridge`);
    const [apiCmd, apiArgs] = pinned(pin ? clientCpu(ctx) : -1, ctx.node, [path.join(ctx.root, 'bench', 'lib', 'ws2api-server.ts'), '--processes', String(apiProcesses)]);
    const api = spawnTracked(apiCmd, apiArgs, { name: 'ws2api-server', cwd: ctx.root, stdin: true });
    stoppers.unshift(() => api.stop('SIGTERM', 5000));
    const apiPort = (JSON.parse(await api.waitForOutput(/"type":"ready"/, 15_000)) as { port: number }).port;

    const listeners: Array<{ name: string; host: string; port: number }> = [];
    for (let i = 0; i < listenerCount; i++) listeners.push({ name: `ws${i}`, host: listenerPerProcess ? `127.0.0.${20 + i}` : '127.0.0.1', port: await freePort() });
    // Each listener's share of a worker's open files, set here: the default share (maxConnections 0) counts 2 descriptors
    // per session (a proxied client and its backend), but a bridge client holds one and the API connections are the pool's.
    const listenerMax = Math.floor((limits.openFilesSoft - 1000 - apiPoolMax * listenerCount) / listenerCount);
    const bridge = await startPolyproxyWithConfig(
      { ...ctx, proxyCpu: bridgeCpu },
      { workers, listeners: listeners.map((l) => ({ ...l, protocol: 'ws-bridge', maxConnections: listenerMax, api: `http://127.0.0.1:${apiPort}/api/`, pool: { maxConnections: apiPoolMax, maxIdle: apiPoolMax } })) },
      `polyproxy-${name}`,
      120_000,
    );
    stoppers.unshift(() => bridge.stop());
    const readyLine = bridge.proc.stdoutLines.find((l) => l.includes('polyproxy ready')) ?? '{}';
    const workerPids = (JSON.parse(readyLine) as { pids?: number[] }).pids ?? [];
    const pids = [bridge.pid, ...workerPids];

    const load: Tracked[] = [];
    for (let i = 0; i < loadProcesses; i++) {
      const to = listeners[listenerPerProcess ? i : 0] as { host: string; port: number };
      // One listener address per load process, and its clients bound to ports of their own below the ephemeral range (ws-load.ts --local-ports: no port search per connect).
      const addressing = listenerPerProcess ? ['--host', to.host, '--local-address', `127.0.0.${40 + i}`, '--local-ports', LOCAL_PORTS] : ['--local-address', `127.0.0.${10 + i}`];
      const proc = spawnTracked(ctx.node, [path.join(ctx.root, 'bench', 'lib', 'ws-load.ts'), '--port', String(to.port), '--prefix', `p${i}-`, ...addressing, '--interval-ms', String(INTERVAL_MS)], { name: `ws-load-${i}`, cwd: ctx.root, stdin: true });
      stoppers.unshift(() => proc.stop('SIGTERM', 5000));
      await proc.waitForOutput(/"type":"ready"/, 30_000);
      load.push(proc);
    }
    const all = <T>(line: string, reply: RegExp): Promise<T[]> => Promise.all(load.map((p) => command<T>(p, line, reply)));
    const openAll = (total: number): Promise<Array<{ open: number; failedUpgrades: number; lastError: string }>> =>
      Promise.all(load.map((p, i) => command<{ open: number; failedUpgrades: number; lastError: string }>(p, `open ${Math.floor(total / loadProcesses) + (i < total % loadProcesses ? 1 : 0)} ${rate / loadProcesses}`, /"type":"opened"/)));
    const stats = async (): Promise<LoadStats> => sumStats(await all<LoadStats>('stats', /"type":"stats"/));

    progress(`${name}: warm-up (${WARMUP_PER_PROCESS * loadProcesses} clients)`);
    await all('send on', /"type":"sending"/);
    await openAll(WARMUP_PER_PROCESS * loadProcesses);
    await sleep(INTERVAL_MS + 500);
    await all('close', /"type":"closed"/);
    await sleep(1000);

    const steps: Step[] = [];
    const base = await medianRss(pids);
    steps.push({ clients: 0, bridgeRssKb: base.total, perProcessRssKb: base.each, rampSeconds: 0 });
    for (let k = 1; k <= stepCount; k++) {
      const target = Math.round((clients * k) / stepCount);
      progress(`${name}: ramping to ${num(target)} clients`);
      const t0 = Date.now();
      const opened = await openAll(target);
      const open = opened.reduce((s, o) => s + o.open, 0);
      if (open !== target) {
        const s = await stats();
        throw new Error(`wanted ${target} clients, have ${open} (failed upgrades ${s.failedUpgrades}, unexpected closes ${s.unexpectedCloses}; last error: ${s.lastError})`);
      }
      const rampSeconds = (Date.now() - t0) / 1000;
      progress(`${name}: ${num(target)} clients, reading RSS`);
      const rss = await medianRss(pids);
      steps.push({ clients: target, bridgeRssKb: rss.total, perProcessRssKb: rss.each, rampSeconds });
      progress(`${name}: ${num(target)} clients, bridge RSS ${num(rss.total / 1024, 1)} MB (${rss.each.map((kb) => num(kb / 1024, 1)).join(', ')})`);
    }

    // Every client has had a full interval to start sending before the window opens.
    progress(`${name}: ${num(clients)} clients, settling one interval`);
    await sleep(INTERVAL_MS);
    const before = await stats();
    const metricsBefore = await bridgeMetrics(listeners);
    const w0 = Date.now();
    progress(`${name}: ${num(clients)} clients, measuring ${sustainSeconds} s`);
    await sleep(sustainSeconds * 1000);
    const afterWindow = await stats();
    const metricsAfter = await bridgeMetrics(listeners);
    const windowSeconds = (Date.now() - w0) / 1000;
    const topRss = await medianRss(pids);

    progress(`${name}: stopping the senders, collecting the last replies`);
    await all('send off', /"type":"sending"/);
    let final = await stats();
    for (let i = 0; i < 20 && final.replies < final.sent; i++) {
      await sleep(500);
      final = await stats();
    }
    const finalMetrics = await bridgeMetrics(listeners);
    const apiStats = JSON.parse(await (async () => {
      const waiting = api.waitForLine(/"type":"stats"/, 10_000);
      api.send('stats');
      return waiting;
    })()) as { get: number; post: number; delete: number };
    progress(`${name}: closing clients`);
    await all('close', /"type":"closed"/);

    let idle: { bridge: IdleCost; bare: IdleCost } | null = null;
    if (idleClients > 0) {
      progress(`${name}: idle clients, bridge vs bare ws (${num(idleClients)} each)`);
      const apiUrl = `http://127.0.0.1:${apiPort}/api/`;
      idle = { bridge: await idleCost(ctx, 'bridge', apiUrl, idleClients), bare: await idleCost(ctx, 'bare', apiUrl, idleClients) };
    }

    const regression = linearRegression(steps.map((s) => s.clients), steps.map((s) => s.bridgeRssKb));
    const first = steps[0] as Step;
    const last = steps[steps.length - 1] as Step;
    const totalDeltaKb = (last.bridgeRssKb - first.bridgeRssKb) / (last.clients - first.clients);
    const offered = clients * (1000 / INTERVAL_MS);
    const sentRate = (afterWindow.sent - before.sent) / windowSeconds;
    const replyRate = (afterWindow.replies - before.replies) / windowSeconds;
    const apiRate = ((metricsAfter.requests_succeeded_total ?? 0) - (metricsBefore.requests_succeeded_total ?? 0)) / windowSeconds;
    const lost = final.sent - final.replies;
    const bridgeFailed = finalMetrics.requests_failed_total ?? NaN;
    const failed = bridgeFailed + final.failedUpgrades + final.unexpectedCloses + Math.max(0, lost);
    const sustained = replyRate >= offered * 0.98;
    const memOk = regression.slope <= TARGET_KB;
    const idleOk = idle === null || idle.bridge.rssKb <= IDLE_TARGET_KB;
    const met = memOk && idleOk && failed === 0 && sustained;
    const mb = (kb: number): string => num(kb / 1024, 1);

    const verdict =
      `${met ? 'Targets met' : 'Targets missed'}: ${num(regression.slope, 2)} KB per connection (target ≤ ${TARGET_KB}; ${memOk ? 'met' : 'missed'}), ` +
      `${num(replyRate)} msg/s answered of ${num(offered)} offered at ${num(clients)} clients (${sustained ? 'sustained' : 'not sustained'}), ` +
      `${num(failed)} failed requests (target 0)` +
      (idle === null ? '' : `; an idle client holds ${num(idle.bridge.rssKb, 2)} KB RSS (${num(idle.bridge.heapUsedKb, 2)} KB heap; target ≤ ${IDLE_TARGET_KB}; ${idleOk ? 'met' : 'missed'}), a bare ws server's ${num(idle.bare.rssKb, 2)} KB (${num(idle.bare.heapUsedKb, 2)} KB heap)`);
    return {
      title: `WebSocket ↔ HTTP bridge: ${num(clients)} clients × 1 message / ${INTERVAL_MS / 1000} s`,
      verdict,
      tables: [
        {
          table: {
            headers: ['figure', 'polyproxy ws-bridge', 'target'],
            rows: [
              ['bridge RSS slope, KB per connection (messages flowing)', num(regression.slope, 2), `≤ ${TARGET_KB}`],
              ['r² of the slope', num(regression.r2, 3), ''],
              ['total Δ RSS / clients, KB', num(totalDeltaKb, 2), ''],
              [`messages/s answered (${sustainSeconds} s window at ${num(clients)})`, num(replyRate), `${num(offered)} (all)`],
              ['messages/s sent by the clients (same window)', num(sentRate), ''],
              ['API requests/s succeeded (bridge metrics, same window)', num(apiRate), ''],
              ['reply latency p50 / p99 / max, ms (window, max over load processes)', `${num(afterWindow.p50, 1)} / ${num(afterWindow.p99, 1)} / ${num(afterWindow.max, 1)}`, ''],
              ['failed requests (bridge requests_failed + failed upgrades + dropped clients + unanswered messages)', `${num(failed)} (${num(bridgeFailed)} + ${num(final.failedUpgrades)} + ${num(final.unexpectedCloses)} + ${num(Math.max(0, lost))})`, '0'],
              ['messages sent / answered (whole run)', `${num(final.sent)} / ${num(final.replies)}`, ''],
              ['API requests seen: GET / POST / DELETE', `${num(apiStats.get)} / ${num(apiStats.post)} / ${num(apiStats.delete)}`, ''],
            ],
          },
        },
        {
          caption: 'Bridge RSS at each step (MB; supervisor + workers, median of 8 readings 0.5 s apart while traffic flows):',
          table: {
            headers: ['clients', 'bridge RSS MB', 'per process MB (supervisor, workers…)', 'ramp s'],
            rows: [...steps, { clients, bridgeRssKb: topRss.total, perProcessRssKb: topRss.each, rampSeconds: NaN }].map((s, i) => [
              i === steps.length ? `${num(s.clients)} (after the window)` : num(s.clients),
              mb(s.bridgeRssKb),
              s.perProcessRssKb.map((kb) => mb(kb)).join(', '),
              Number.isNaN(s.rampSeconds) ? '' : num(s.rampSeconds, 1),
            ]),
          },
        },
        ...(idle === null
          ? []
          : [
              {
                caption: `What one idle client holds (${num(idleClients)} clients that send nothing, one process, full GC before both readings):`,
                table: {
                  headers: ['server', 'RSS KB / client', 'V8 heap used KB / client', 'V8 heap total KB / client', 'target'],
                  rows: [
                    ['polyproxy ws-bridge listener (in-process)', num(idle.bridge.rssKb, 2), num(idle.bridge.heapUsedKb, 2), num(idle.bridge.heapTotalKb, 2), `≤ ${IDLE_TARGET_KB}`],
                    ['bare ws server (node:http + ws, noServer)', num(idle.bare.rssKb, 2), num(idle.bare.heapUsedKb, 2), num(idle.bare.heapTotalKb, 2), ''],
                  ],
                },
              },
            ]),
      ],
      notes: [
        `Clients: ${loadProcesses} load processes (bench/lib/ws-load.ts, raw RFC 6455 clients on node:net, unpinned), ${num(Math.ceil(clients / loadProcesses))} each at most (20,000 open files per process), opened at ${num(rate)} per second in total, ${listenerPerProcess ? `each process to its own listener address (127.0.0.20 … 127.0.0.${19 + loadProcesses}: one ws-bridge listener each, served by every worker) from its own source address (127.0.0.40, .41, …) and ports ${LOCAL_PORTS} taken in turn (below the ephemeral range: connect() does no port search, which with ~17,000 clients per destination was most of a load process's CPU during the ramp, and the bridge's own API connects lose no ports)` : "each process from its own source address (127.0.0.10, .11, …: one address has only ~28,000 ephemeral ports towards the bridge's one port)"}; each client sends a ${'~10'}-byte text message every ${INTERVAL_MS / 1000} s (one shared 100 ms tick per process, so the rate is even) and counts the API's reply that the bridge sends back.`,
        `Bridge: polyproxy \`ws-bridge\` listener${listenerCount > 1 ? `s (${listenerCount})` : ''}, ${workers} workers (SO_REUSEPORT), \`maxConnections: ${listenerMax}\` per listener and worker (its share of the worker's open files: the default share counts 2 descriptors per session), ordered, API pool max ${apiPoolMax} / idle ${apiPoolMax} / 60 s per worker${listenerCount > 1 ? ' and listener' : ''} (the Go original's 10,000 connections would take half of a worker's 20,000 open files while the ramp's upgrade GETs burst; 4,500 msg/s at ~10 ms needs ~50 in flight), ${bridgeCpu < 0 ? 'not pinned (BENCH_WSB_PIN=1 pins it)' : `pinned to CPU ${bridgeCpu} with taskset (all workers share that core)`}. API: bench/lib/ws2api-server.ts (raw HTTP/1.1 on node:net: GET → ok, POST → the body back, DELETE → empty${apiProcesses > 1 ? `; ${apiProcesses} processes on one port` : ''})${pin && clientCpu(ctx) >= 0 ? `, pinned to CPU ${clientCpu(ctx)}` : ', not pinned'}.`,
        `Memory per connection = least-squares slope of the bridge's total RSS (supervisor + workers, VmRSS) against open clients at ${steps.map((s) => num(s.clients)).join(', ')}, read while the messages flow (their rate grows with the clients, so in-flight buffers are part of it). A warm-up of ${WARMUP_PER_PROCESS * loadProcesses} clients for one interval precedes the 0 reading.`,
        `Messages/s: replies received by the clients during a ${sustainSeconds} s window opened one full interval after the last client connected; "sustained" means ≥ 98% of the offered ${num(offered)} msg/s.`,
        ...(idle === null
          ? []
          : [
              `Idle clients: bench/lib/ws-idle-target.ts runs the same WsBridgeListener (listener defaults, ${num(idleClients)} clients from one ws-load process after a ${IDLE_WARMUP}-client warm-up) or a bare \`ws\` server with --expose-gc, forces a full GC and reads process.memoryUsage() before and after the clients connect. What an idle client holds is \`ws\`'s WebSocket, Receiver (a Writable) and Sender, the net.Socket and its TCP handle, and the bridge's BridgeClient and registry entry (no timer, closure or parser state of its own: one ping sweep per listener, module-level handlers); the RSS slope above also carries the heap the traffic's garbage grows between collections, so it is higher.`,
            ]),
        'This 2-core machine is shared: load generators, API and bridge run on it together, and other engineers ran tests at the same time, so figures are noisy; compare within a run.',
        'The Go original (mevdschee/ws2api) reports 250,000 clients at 25,000 msg/s within 32 GB on a bigger machine (not measured here).',
      ],
      data: {
        settings: { clients, steps: stepCount, loadProcesses, workers, listeners: listenerCount, apiPoolMax, apiProcesses, rate, sustainSeconds, intervalMs: INTERVAL_MS, proxyCpu: bridgeCpu, targetKb: TARGET_KB },
        limits,
        steps,
        topRss,
        regression,
        totalDeltaKb,
        window: { seconds: windowSeconds, offered, sentRate, replyRate, apiRate, before, after: afterWindow },
        final,
        bridgeMetrics: finalMetrics,
        api: apiStats,
        failed,
        idle,
        targetMet: met,
        chart: {
          metric: 'bridge RSS per WebSocket connection, KB (lower is better)',
          lowerIsBetter: true,
          bars: [
            { label: 'polyproxy ws-bridge (slope, traffic)', value: regression.slope },
            { label: 'target (issue #6)', value: TARGET_KB },
            ...(idle === null
              ? []
              : [
                  { label: 'ws-bridge, idle client', value: idle.bridge.rssKb },
                  { label: 'bare ws server, idle client', value: idle.bare.rssKb },
                ]),
          ],
        },
      },
    };
  } finally {
    for (const stop of stoppers) await stop();
  }
}
