/**
 * Memory per idle proxied PostgreSQL connection: the proxy's RSS slope while
 * idle connections (startup completed, ReadyForQuery received) are stepped
 * 0 → 5,000. The backend is the embedded demo server in its own process;
 * clients come from ≥ 2 load processes (open-file limit). polyproxy and the
 * naive Node pipe() proxy (anchor) each run with a fresh backend, pinned to
 * the same CPU. Target (issue): ≤ 8 KB per connection.
 *
 * Two passes per proxy: the plain pass (the figure: RSS as it is once it
 * settles), then a diagnostic pass with the inspector attached that forces a
 * full GC before each reading and also reads the V8 heap in use — what the
 * connections retain, without garbage left from opening them.
 *
 * Env: BENCH_IDLE_MAX (default 5000), BENCH_IDLE_STEP (default 1000),
 * BENCH_IDLE_PROCESSES (load processes, default 2), BENCH_IDLE_GC=0 skips the
 * forced-GC pass.
 */
import path from 'node:path';
import { INSPECT_FLAG, Inspector } from '../lib/inspector.ts';
import { sleep } from '../lib/net.ts';
import { progress } from '../lib/progress.ts';
import { spawnTracked } from '../lib/process.ts';
import type { Tracked } from '../lib/process.ts';
import { readRssKb, waitForStableRss } from '../lib/rss.ts';
import type { Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { linearRegression } from '../lib/stats.ts';
import type { Regression } from '../lib/stats.ts';
import { num, ratio } from '../lib/table.ts';
import { startPgBackend, startPipeProxy, startPolyproxy } from '../lib/targets.ts';
import type { Running } from '../lib/targets.ts';
import { envNumber } from '../lib/env.ts';

const TARGET_KB = 8;
const SWOOLE_KB = 33;
const WARMUP_CONNECTIONS = 100;

interface Step {
  readonly connections: number;
  readonly proxyRssKb: number;
  readonly proxyStable: boolean;
  /** Forced-GC pass only: V8 heap in use after the GC. */
  readonly proxyHeapUsedKb: number | null;
  readonly backendRssKb: number;
  readonly clientsRssKb: number;
  readonly backendConnections: number;
}

interface Pass {
  readonly forcedGc: boolean;
  readonly steps: Step[];
  readonly proxy: Regression;
  readonly heap: Regression | null;
  readonly backend: Regression;
  /** (RSS at max − RSS at 0) / max, KB per connection. */
  readonly proxyTotalDeltaKb: number;
}

interface TargetResult {
  readonly key: string;
  readonly label: string;
  readonly plain: Pass;
  readonly gc: Pass | null;
}

interface Opened {
  open: number;
  failed: number;
  dropped: number;
  lastError: string;
}

type Starter = (backend: string, nodeFlags: readonly string[]) => Promise<Running>;

async function command<T>(proc: Tracked, line: string, reply: RegExp, timeoutMs = 120_000): Promise<T> {
  const waiting = proc.waitForLine(reply, timeoutMs);
  proc.send(line);
  return JSON.parse(await waiting) as T;
}

async function backendConnections(backend: Running): Promise<number> {
  return (await command<{ connections: number }>(backend.proc, 'count', /"type":"count"/, 10_000)).connections;
}

/** Waits until the backend holds exactly `n` connections (closes are asynchronous). */
async function settleBackend(backend: Running, n: number): Promise<number> {
  let count = await backendConnections(backend);
  for (let i = 0; i < 50 && count !== n; i++) {
    await sleep(100);
    count = await backendConnections(backend);
  }
  return count;
}

async function measurePass(ctx: ScenarioContext, label: string, start: Starter, stepsWanted: readonly number[], loadProcesses: number, forcedGc: boolean): Promise<Pass> {
  const started: Array<{ stop(): Promise<void> }> = [];
  let inspector: Inspector | null = null;
  const what = `idle-memory ${label}${forcedGc ? ' (forced GC)' : ''}`;
  try {
    progress(`${what}: starting demo backend and proxy`);
    const backend = await startPgBackend(ctx, 'idle');
    started.push(backend);
    const proxy = await start(`127.0.0.1:${backend.port}`, forcedGc ? [INSPECT_FLAG] : []);
    started.unshift(proxy);
    if (forcedGc) inspector = await Inspector.open(await Inspector.address(proxy.proc));
    const clients: Tracked[] = [];
    for (let i = 0; i < loadProcesses; i++) {
      const proc = spawnTracked(ctx.node, [path.join(ctx.root, 'bench', 'lib', 'idle-clients.ts'), '--port', String(proxy.port)], { name: `idle-clients-${i}`, cwd: ctx.root, stdin: true });
      started.unshift({ stop: () => proc.stop('SIGTERM', 5000) });
      await proc.waitForOutput(/"type":"ready"/, 15_000);
      clients.push(proc);
    }
    const openAll = async (total: number): Promise<Opened> => {
      const replies = await Promise.all(
        clients.map((c, i) => {
          const share = Math.floor(total / loadProcesses) + (i < total % loadProcesses ? 1 : 0);
          return command<Opened>(c, `open ${share}`, /"type":"opened"/);
        }),
      );
      return {
        open: replies.reduce((s, r) => s + r.open, 0),
        failed: replies.reduce((s, r) => s + r.failed, 0),
        dropped: replies.reduce((s, r) => s + r.dropped, 0),
        lastError: replies.map((r) => r.lastError).find((e) => e !== '') ?? '',
      };
    };

    // Warm-up: load code paths and lazy module state before the 0 reading.
    progress(`${what}: warm-up (${WARMUP_CONNECTIONS} connections)`);
    await openAll(WARMUP_CONNECTIONS);
    await Promise.all(clients.map((c) => command(c, 'close', /"type":"closed"/)));
    await settleBackend(backend, 0);

    const steps: Step[] = [];
    for (const n of stepsWanted) {
      progress(`${what}: opening ${num(n)} idle connections`);
      const opened = await openAll(n);
      if (opened.open !== n || opened.dropped !== 0) {
        throw new Error(`${label}: wanted ${n} open connections, have ${opened.open} (failed ${opened.failed}, dropped ${opened.dropped}; last error: ${opened.lastError})`);
      }
      const backendCount = await settleBackend(backend, n);
      progress(`${what}: ${num(n)} connections, waiting for RSS to settle`);
      let heapUsedKb: number | null = null;
      if (inspector !== null) {
        await inspector.collectGarbage();
        heapUsedKb = (await inspector.heapUsedBytes()) / 1024;
      }
      const stable = await waitForStableRss(proxy.pid);
      const backendStable = await waitForStableRss(backend.pid, { samples: 2 });
      steps.push({
        connections: n,
        proxyRssKb: stable.rssKb,
        proxyStable: stable.stable,
        proxyHeapUsedKb: heapUsedKb,
        backendRssKb: backendStable.rssKb,
        clientsRssKb: clients.reduce((s, c) => s + readRssKb(c.pid), 0),
        backendConnections: backendCount,
      });
    }
    progress(`${what}: closing connections`);
    await Promise.all(clients.map((c) => command(c, 'close', /"type":"closed"/)));

    const xs = steps.map((s) => s.connections);
    const first = steps[0] as Step;
    const last = steps[steps.length - 1] as Step;
    return {
      forcedGc,
      steps,
      proxy: linearRegression(xs, steps.map((s) => s.proxyRssKb)),
      heap: forcedGc ? linearRegression(xs, steps.map((s) => s.proxyHeapUsedKb ?? NaN)) : null,
      backend: linearRegression(xs, steps.map((s) => s.backendRssKb)),
      proxyTotalDeltaKb: (last.proxyRssKb - first.proxyRssKb) / (last.connections - first.connections),
    };
  } finally {
    inspector?.close();
    for (const s of started) await s.stop();
  }
}

export const idleMemoryScenario: Scenario = {
  name: 'idle-memory',
  description: 'proxy RSS per idle proxied PostgreSQL connection (slope over 0 → 5,000): polyproxy vs naive Node pipe() proxy',
  needsBuild: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const maxConnections = envNumber('BENCH_IDLE_MAX', 5000);
    const stepSize = envNumber('BENCH_IDLE_STEP', 1000);
    const loadProcesses = Math.max(2, envNumber('BENCH_IDLE_PROCESSES', 2));
    const withGc = process.env.BENCH_IDLE_GC !== '0';
    const stepsWanted: number[] = [];
    for (let n = 0; n <= maxConnections; n += stepSize) stepsWanted.push(n);

    const targets: Array<{ key: string; label: string; start: Starter }> = [
      { key: 'polyproxy', label: 'polyproxy', start: (b, flags) => startPolyproxy(ctx, { backend: b, nodeFlags: flags }) },
      { key: 'pipe', label: 'naive Node pipe() proxy', start: (b, flags) => startPipeProxy(ctx, b, flags) },
    ];
    const results: TargetResult[] = [];
    for (const t of targets) {
      const plain = await measurePass(ctx, t.label, t.start, stepsWanted, loadProcesses, false);
      const gc = withGc ? await measurePass(ctx, t.label, t.start, stepsWanted, loadProcesses, true) : null;
      results.push({ key: t.key, label: t.label, plain, gc });
    }
    const [poly, pipe] = results as [TargetResult, TargetResult];

    const mb = (kb: number | undefined): string => num(kb === undefined ? NaN : kb / 1024, 1);
    const summaryRow = (r: TargetResult): string[] => [
      r.label,
      num(r.plain.proxy.slope, 2),
      num(r.plain.proxy.r2, 3),
      num(r.plain.proxyTotalDeltaKb, 2),
      `${mb(r.plain.steps[0]?.proxyRssKb)} → ${mb(r.plain.steps[r.plain.steps.length - 1]?.proxyRssKb)}`,
      ratio(r.plain.proxy.slope, pipe.plain.proxy.slope),
      ratio(r.plain.proxy.slope, SWOOLE_KB),
      r.gc === null ? '—' : num(r.gc.proxy.slope, 2),
      r.gc?.heap == null ? '—' : num(r.gc.heap.slope, 2),
      num(r.plain.backend.slope, 2),
    ];
    const met = poly.plain.proxy.slope <= TARGET_KB;
    const verdict = `${met ? 'Target met' : 'Target missed'}: polyproxy ${num(poly.plain.proxy.slope, 2)} KB per idle proxied connection (target ≤ ${TARGET_KB} KB; naive pipe() proxy ${num(pipe.plain.proxy.slope, 2)} KB; the PHP/Swoole proxy reports ~${SWOOLE_KB} KB)`;
    const stepRows = poly.plain.steps.map((s, i) => {
      const row = [num(s.connections), mb(s.proxyRssKb), mb(pipe.plain.steps[i]?.proxyRssKb), mb(s.backendRssKb)];
      if (withGc) {
        row.push(mb(poly.gc?.steps[i]?.proxyRssKb), mb(poly.gc?.steps[i]?.proxyHeapUsedKb ?? undefined), mb(pipe.gc?.steps[i]?.proxyRssKb), mb(pipe.gc?.steps[i]?.proxyHeapUsedKb ?? undefined));
      }
      return row;
    });
    return {
      title: `Memory per idle proxied PostgreSQL connection (0 → ${num(maxConnections)})`,
      verdict,
      tables: [
        {
          table: {
            headers: ['proxy', 'RSS slope KB/conn', 'r²', 'total Δ KB/conn', 'RSS MB (0 → max)', 'vs pipe()', 'vs Swoole ~33 KB', 'forced GC: RSS slope', 'forced GC: JS heap slope', 'demo backend RSS KB/conn'],
            rows: [summaryRow(poly), summaryRow(pipe)],
          },
        },
        {
          caption: 'Readings (MB) at each step:',
          table: {
            headers: [
              'idle connections',
              'polyproxy RSS',
              'pipe() RSS',
              'demo backend RSS (polyproxy run)',
              ...(withGc ? ['polyproxy RSS, forced GC', 'polyproxy JS heap, forced GC', 'pipe() RSS, forced GC', 'pipe() JS heap, forced GC'] : []),
            ],
            rows: stepRows,
          },
        },
      ],
      notes: [
        `RSS slope = least-squares fit of the proxy's VmRSS (/proc/<pid>/status) against open connections at ${stepsWanted.map((n) => num(n)).join(', ')}; each reading is taken once 4 samples 0.5 s apart agree within 256 KB. "total Δ" = (RSS at ${num(maxConnections)} − RSS at 0) / ${num(maxConnections)}. The target applies to the RSS slope.`,
        `Every connection completes the PostgreSQL startup (StartupMessage user=bench database=bench → ReadyForQuery) through the proxy, then stays idle. A proxied connection costs the proxy two sockets (client side + backend side), so the per-socket cost is half the slope.`,
        `"forced GC" columns come from a second, separate pass per proxy started with \`${INSPECT_FLAG}\`: before each reading a full GC is forced over the DevTools protocol (HeapProfiler.collectGarbage) and the V8 heap in use is read (Runtime.getHeapUsage). The JS heap slope is what the idle sessions' JS objects retain; RSS slope minus it is roughly native memory (libuv handles, socket wraps, allocator).`,
        `Clients: ${loadProcesses} load processes (bench/lib/idle-clients.ts); backend: the embedded demo server (src/demo/pg-demo-server.ts) in its own process (bench/lib/pg-backend-process.ts), restarted for every pass — its slope, one idle server-side Node socket per connection, is the direct-connection baseline. A ${WARMUP_CONNECTIONS}-connection warm-up precedes the 0 reading.`,
        `${ctx.proxyCpu < 0 ? 'The proxies are not pinned' : `Both proxies are pinned to CPU ${ctx.proxyCpu} with taskset`}; polyproxy runs one worker (\`--workers 1 --log-level warn\`). The single-run spread of the RSS slope is a few tenths of a KB: compare within one run.`,
      ],
      data: {
        settings: { maxConnections, stepSize, loadProcesses, warmup: WARMUP_CONNECTIONS, forcedGcPass: withGc, proxyCpu: ctx.proxyCpu, targetKb: TARGET_KB },
        targets: results,
        targetMet: met,
      },
    };
  },
};
