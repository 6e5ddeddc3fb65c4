/**
 * tcp-hold: memory per idle proxied raw TCP connection. The proxy's RSS
 * slope while idle connections through its tcp listener (each has had one
 * byte echoed by the backend, so both sides are connected) are stepped
 * 0 → 8,000. Clients come from ≥ 2 load processes (20,000 open-file limit;
 * the proxy holds 2 fds per connection). polyproxy, the naive Node pipe()
 * proxy (anchor) and HAProxy tcp (one thread) each get a fresh echo backend
 * and are pinned to the same CPU. Target (issue): ≤ 8 KB per connection
 * (the PHP/Swoole proxy reports ~33 KB).
 *
 * Env: BENCH_HOLD_MAX (default 8000), BENCH_HOLD_STEP (default 2000),
 * BENCH_HOLD_PROCESSES (load processes, default 2).
 */
import path from 'node:path';
import { startEchoBackend } from '../lib/echo.ts';
import { haproxyVersion, startHaproxyTcp } from '../lib/haproxy.ts';
import { progress } from '../lib/progress.ts';
import { spawnTracked } from '../lib/process.ts';
import type { Tracked } from '../lib/process.ts';
import { waitForStableRss } from '../lib/rss.ts';
import type { Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { linearRegression } from '../lib/stats.ts';
import type { Regression } from '../lib/stats.ts';
import { num, ratio } from '../lib/table.ts';
import { startPipeProxy, startPolyproxy } from '../lib/targets.ts';
import type { Running } from '../lib/targets.ts';
import { clientCpu } from './tcp-rr.ts';
import { envNumber } from '../lib/env.ts';

const TARGET_KB = 8;
const SWOOLE_KB = 33;
const WARMUP_CONNECTIONS = 200;

interface Step {
  readonly connections: number;
  readonly proxyRssKb: number;
  readonly proxyStable: boolean;
}

interface TargetResult {
  readonly key: string;
  readonly label: string;
  readonly steps: Step[];
  readonly proxy: Regression;
  /** (RSS at max − RSS at 0) / max, KB per connection. */
  readonly totalDeltaKb: number;
}

interface Opened {
  open: number;
  failed: number;
  dropped: number;
  lastError: string;
}

async function command<T>(proc: Tracked, line: string, reply: RegExp, timeoutMs = 120_000): Promise<T> {
  const waiting = proc.waitForLine(reply, timeoutMs);
  proc.send(line);
  return JSON.parse(await waiting) as T;
}

async function measure(ctx: ScenarioContext, key: string, label: string, start: (backend: string) => Promise<Running>, stepsWanted: readonly number[], loadProcesses: number): Promise<TargetResult> {
  const started: Array<{ stop(): Promise<void> }> = [];
  try {
    progress(`tcp-hold ${label}: starting echo backend and proxy`);
    const echo = await startEchoBackend(ctx, 1, clientCpu(ctx));
    started.push(echo);
    const proxy = await start(`127.0.0.1:${echo.port}`);
    started.unshift(proxy);
    const clients: Tracked[] = [];
    for (let i = 0; i < loadProcesses; i++) {
      const proc = spawnTracked(ctx.node, [path.join(ctx.root, 'bench', 'lib', 'hold-clients.ts'), '--port', String(proxy.port)], { name: `hold-clients-${i}`, cwd: ctx.root, stdin: true });
      started.unshift({ stop: () => proc.stop('SIGTERM', 5000) });
      await proc.waitForOutput(/"type":"ready"/, 15_000);
      clients.push(proc);
    }
    const openAll = async (total: number): Promise<Opened> => {
      const replies = await Promise.all(
        clients.map((c, i) => command<Opened>(c, `open ${Math.floor(total / loadProcesses) + (i < total % loadProcesses ? 1 : 0)}`, /"type":"opened"/)),
      );
      return {
        open: replies.reduce((s, r) => s + r.open, 0),
        failed: replies.reduce((s, r) => s + r.failed, 0),
        dropped: replies.reduce((s, r) => s + r.dropped, 0),
        lastError: replies.map((r) => r.lastError).find((e) => e !== '') ?? '',
      };
    };
    progress(`tcp-hold ${label}: warm-up (${WARMUP_CONNECTIONS} connections)`);
    await openAll(WARMUP_CONNECTIONS);
    await Promise.all(clients.map((c) => command(c, 'close', /"type":"closed"/)));

    const steps: Step[] = [];
    for (const n of stepsWanted) {
      progress(`tcp-hold ${label}: opening ${num(n)} idle connections`);
      const opened = await openAll(n);
      if (opened.open !== n || opened.dropped !== 0) {
        throw new Error(`${label}: wanted ${n} open connections, have ${opened.open} (failed ${opened.failed}, dropped ${opened.dropped}; last error: ${opened.lastError})`);
      }
      progress(`tcp-hold ${label}: ${num(n)} connections, waiting for RSS to settle`);
      const stable = await waitForStableRss(proxy.pid);
      steps.push({ connections: n, proxyRssKb: stable.rssKb, proxyStable: stable.stable });
    }
    progress(`tcp-hold ${label}: closing connections`);
    await Promise.all(clients.map((c) => command(c, 'close', /"type":"closed"/)));
    const first = steps[0] as Step;
    const last = steps[steps.length - 1] as Step;
    return {
      key,
      label,
      steps,
      proxy: linearRegression(steps.map((s) => s.connections), steps.map((s) => s.proxyRssKb)),
      totalDeltaKb: (last.proxyRssKb - first.proxyRssKb) / (last.connections - first.connections),
    };
  } finally {
    for (const s of started) await s.stop();
  }
}

export const tcpHoldScenario: Scenario = {
  name: 'tcp-hold',
  description: 'proxy RSS per idle proxied raw TCP connection (slope over 0 → 8,000): polyproxy vs naive Node pipe() proxy vs HAProxy tcp',
  needsBuild: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const maxConnections = envNumber('BENCH_HOLD_MAX', 8000);
    const stepSize = envNumber('BENCH_HOLD_STEP', 2000);
    const loadProcesses = Math.max(2, envNumber('BENCH_HOLD_PROCESSES', 2));
    const stepsWanted: number[] = [];
    for (let n = 0; n <= maxConnections; n += stepSize) stepsWanted.push(n);
    const haVersion = await haproxyVersion();
    const targets: Array<{ key: string; label: string; start: (backend: string) => Promise<Running> }> = [
      { key: 'polyproxy', label: 'polyproxy (tcp, fixed backend)', start: (b) => startPolyproxy(ctx, { backend: b, protocol: 'tcp' }) },
      { key: 'pipe', label: 'naive Node pipe() proxy', start: (b) => startPipeProxy(ctx, b) },
      { key: 'haproxy', label: 'HAProxy tcp (nbthread 1)', start: (b) => startHaproxyTcp(ctx, { backend: b, maxConn: maxConnections + 500 }) },
    ];
    const results: TargetResult[] = [];
    for (const t of targets) results.push(await measure(ctx, t.key, t.label, t.start, stepsWanted, loadProcesses));
    const [poly, pipe, ha] = results as [TargetResult, TargetResult, TargetResult];
    const mb = (kb: number | undefined): string => num(kb === undefined ? NaN : kb / 1024, 1);
    const row = (r: TargetResult): string[] => [
      r.label,
      num(r.proxy.slope, 2),
      num(r.proxy.r2, 3),
      num(r.totalDeltaKb, 2),
      `${mb(r.steps[0]?.proxyRssKb)} → ${mb(r.steps[r.steps.length - 1]?.proxyRssKb)}`,
      ratio(r.proxy.slope, pipe.proxy.slope),
      ratio(r.proxy.slope, ha.proxy.slope),
      ratio(r.proxy.slope, SWOOLE_KB),
    ];
    const met = poly.proxy.slope <= TARGET_KB;
    const verdict = `${met ? 'Target met' : 'Target missed'}: polyproxy ${num(poly.proxy.slope, 2)} KB per idle proxied TCP connection (target ≤ ${TARGET_KB} KB; naive pipe() proxy ${num(pipe.proxy.slope, 2)} KB; HAProxy ${num(ha.proxy.slope, 2)} KB; the PHP/Swoole proxy reports ~${SWOOLE_KB} KB)`;
    return {
      title: `Memory per idle proxied raw TCP connection (0 → ${num(maxConnections)})`,
      verdict,
      tables: [
        {
          table: {
            headers: ['proxy', 'RSS slope KB/conn', 'r²', 'total Δ KB/conn', 'RSS MB (0 → max)', 'vs pipe()', 'vs HAProxy', 'vs Swoole ~33 KB'],
            rows: [row(poly), row(pipe), row(ha)],
          },
        },
        {
          caption: 'Proxy RSS (MB) at each step:',
          table: { headers: ['idle connections', ...results.map((r) => r.label)], rows: poly.steps.map((s, i) => [num(s.connections), ...results.map((r) => mb(r.steps[i]?.proxyRssKb))]) },
        },
      ],
      notes: [
        `RSS slope = least-squares fit of the proxy's VmRSS (/proc/<pid>/status) against open connections at ${stepsWanted.map((n) => num(n)).join(', ')}; each reading is taken once 4 samples 0.5 s apart agree within 256 KB. "total Δ" = (RSS at ${num(maxConnections)} − RSS at 0) / ${num(maxConnections)}. The target applies to the RSS slope.`,
        `Every connection writes 1 byte through the proxy and counts as open once the echo backend's copy comes back (both proxy sockets connected and used once), then stays idle. A proxied connection costs the proxy two sockets (2 fds: ${num(2 * maxConnections)} at the top step, under the 20,000 open-file limit).`,
        `Clients: ${loadProcesses} load processes (bench/lib/hold-clients.ts, unpinned); echo backend: bench/lib/echo-backend.c (or .ts without a C compiler) pinned to CPU ${clientCpu(ctx)}, restarted per proxy. A ${WARMUP_CONNECTIONS}-connection warm-up precedes the 0 reading.`,
        `${ctx.proxyCpu < 0 ? 'The proxies are not pinned' : `The proxies are pinned to CPU ${ctx.proxyCpu} with taskset`}; polyproxy runs one worker (\`--protocol tcp --workers 1 --log-level warn\`); HAProxy ${haVersion}, \`mode tcp\`, \`nbthread 1\`, \`maxconn ${maxConnections + 500}\`.`,
      ],
      data: {
        settings: { maxConnections, stepSize, loadProcesses, warmup: WARMUP_CONNECTIONS, proxyCpu: ctx.proxyCpu, targetKb: TARGET_KB },
        versions: { haproxy: haVersion },
        targets: results,
        targetMet: met,
      },
    };
  },
};
