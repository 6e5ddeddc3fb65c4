/**
 * tcp-bulk: bulk throughput through a raw TCP proxy. A Node sender streams
 * BENCH_BULK_GB GiB (default 4) over 4 connections to a Node sink, direct,
 * through polyproxy (tcp listener, fixed backend, one worker), through
 * HAProxy in TCP mode (one thread; plain and with `option splice-auto`) and
 * through the naive Node pipe() proxy, in the same run. The proxies are
 * pinned to the same CPU, sender and sink to the other one. Target (issue):
 * polyproxy ≥ 0.8× HAProxy.
 *
 * Env: BENCH_BULK_GB (per run, default 4), BENCH_BULK_CONNECTIONS (default
 * 4), BENCH_ROUNDS (default 2, interleaved, order reversed every other round).
 */
import path from 'node:path';
import { haproxyVersion, startHaproxyTcp } from '../lib/haproxy.ts';
import { pinned } from '../lib/machine.ts';
import { progress } from '../lib/progress.ts';
import { runCommand, spawnTracked } from '../lib/process.ts';
import { readCpuSeconds, readRssKb } from '../lib/rss.ts';
import type { Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { max, median } from '../lib/stats.ts';
import { num, ratio } from '../lib/table.ts';
import { startPipeProxy, startPolyproxy } from '../lib/targets.ts';
import type { Running } from '../lib/targets.ts';
import { clientCpu } from './tcp-rr.ts';
import { envNumber } from '../lib/env.ts';

const TARGET = 0.8;
const GIB = 2 ** 30;
const BENCH_LIB = path.join(path.dirname(path.dirname(new URL(import.meta.url).pathname)), 'lib');

/** The sink (bench/lib/bulk-sink.ts), pinned to the client CPU; counts what each connection delivered. */
async function startSink(ctx: ScenarioContext): Promise<Running & { readonly delivered: () => number }> {
  const [cmd, args] = pinned(clientCpu(ctx), ctx.node, [path.join(BENCH_LIB, 'bulk-sink.ts')]);
  const proc = spawnTracked(cmd, args, { name: 'bulk-sink', cwd: ctx.root, stdin: true });
  let delivered = 0;
  proc.onLine((line) => {
    if (line.includes('"type":"done"')) delivered += (JSON.parse(line) as { bytes: number }).bytes;
  });
  const { port } = JSON.parse(await proc.waitForOutput(/"type":"ready"/, 15_000)) as { port: number };
  return { name: 'bulk-sink', port, pid: proc.pid, proc, stop: () => proc.stop('SIGTERM', 5000), delivered: () => delivered };
}

interface RunResult {
  readonly gbPerSecond: number;
  readonly seconds: number;
  /** CPU used by the proxy during the run, in cores (null for direct). */
  readonly proxyCpu: number | null;
  readonly proxyRssMb: number | null;
}

export const tcpBulkScenario: Scenario = {
  name: 'tcp-bulk',
  description: 'bulk GB/s, Node sender → sink over 4 conns: direct vs polyproxy (tcp) vs HAProxy tcp (1 thread, ± splice) vs pipe() proxy',
  needsBuild: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const gib = envNumber('BENCH_BULK_GB', 4);
    const connections = Math.max(1, envNumber('BENCH_BULK_CONNECTIONS', 4));
    const rounds = Math.max(1, envNumber('BENCH_ROUNDS', 2));
    const perConnection = Math.floor((gib * GIB) / connections);
    const total = perConnection * connections;
    const haVersion = await haproxyVersion();

    const started: Running[] = [];
    try {
      progress('tcp-bulk: starting sink, polyproxy, HAProxy, pipe proxy');
      const sink = await startSink(ctx);
      started.push(sink);
      const backend = `127.0.0.1:${sink.port}`;
      const polyproxy = await startPolyproxy(ctx, { backend, protocol: 'tcp' });
      started.push(polyproxy);
      const haproxy = await startHaproxyTcp(ctx, { backend });
      started.push(haproxy);
      const haSplice = await startHaproxyTcp(ctx, { backend, splice: true, name: 'haproxy-splice' });
      started.push(haSplice);
      const pipe = await startPipeProxy(ctx, backend);
      started.push(pipe);
      const targets = [
        { key: 'direct', label: 'direct (sender → sink)', port: sink.port, pid: null },
        { key: 'polyproxy', label: 'polyproxy (tcp, fixed backend)', port: polyproxy.port, pid: polyproxy.pid },
        { key: 'haproxy', label: 'HAProxy tcp (nbthread 1)', port: haproxy.port, pid: haproxy.pid },
        { key: 'haproxy-splice', label: 'HAProxy tcp + splice-auto (nbthread 1)', port: haSplice.port, pid: haSplice.pid },
        { key: 'pipe', label: 'naive Node pipe() proxy', port: pipe.port, pid: pipe.pid },
      ] as const;

      const runOnce = async (port: number, pid: number | null, perConn: number): Promise<RunResult> => {
        const before = sink.delivered();
        const cpuBefore = pid === null ? 0 : readCpuSeconds(pid);
        let rssMaxKb = 0;
        const sampler = pid === null ? undefined : setInterval(() => (rssMaxKb = Math.max(rssMaxKb, readRssKb(pid))), 200);
        const wall = Date.now();
        const [cmd, args] = pinned(clientCpu(ctx), ctx.node, [path.join(BENCH_LIB, 'bulk-send.ts'), '--port', String(port), '--connections', String(connections), '--bytes', String(perConn)]);
        const r = await runCommand(cmd, args, { name: 'bulk-send' });
        const elapsed = (Date.now() - wall) / 1000;
        clearInterval(sampler);
        const line = r.stdout.split('\n').find((l) => l.includes('"type":"result"'));
        if (r.code !== 0 || line === undefined) throw new Error(`bulk-send to port ${port} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
        const { bytes, seconds } = JSON.parse(line) as { bytes: number; seconds: number };
        // The sink reports each connection when it ends; give the last lines a moment to arrive.
        for (let i = 0; i < 50 && sink.delivered() - before < bytes; i++) await new Promise((resolve) => setTimeout(resolve, 20));
        if (sink.delivered() - before !== bytes) throw new Error(`sink received ${sink.delivered() - before} of ${bytes} bytes via port ${port}`);
        const cpuAfter = pid === null ? 0 : readCpuSeconds(pid);
        return { gbPerSecond: bytes / GIB / seconds, seconds, proxyCpu: pid === null ? null : (cpuAfter - cpuBefore) / elapsed, proxyRssMb: pid === null ? null : rssMaxKb / 1024 };
      };

      for (const t of targets) {
        progress(`tcp-bulk: warm-up ${t.label}`);
        await runOnce(t.port, t.pid, Math.floor(GIB / 2 / connections));
      }
      const runs = new Map<string, RunResult[]>(targets.map((t) => [t.key, []]));
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? [...targets] : [...targets].reverse();
        for (const t of order) {
          progress(`tcp-bulk: round ${round + 1}/${rounds}, ${t.label} (${gib} GiB)`);
          runs.get(t.key)?.push(await runOnce(t.port, t.pid, perConnection));
        }
      }

      const best = (key: string): number => max((runs.get(key) ?? []).map((r) => r.gbPerSecond));
      const direct = best('direct');
      const ha = best('haproxy');
      const haSp = best('haproxy-splice');
      const poly = best('polyproxy');
      const rows = targets.map((t) => {
        const rs = runs.get(t.key) ?? [];
        const cpu = rs.map((r) => r.proxyCpu).filter((c): c is number => c !== null);
        // CPU seconds per GiB relayed: the proxy's cost, less noisy than GB/s.
        const perGib = rs.filter((r) => r.proxyCpu !== null).map((r) => ((r.proxyCpu as number) * r.seconds) / (total / GIB));
        const rss = rs.map((r) => r.proxyRssMb).filter((m): m is number => m !== null);
        return [
          t.label,
          num(best(t.key), 2),
          rs.map((r) => num(r.gbPerSecond, 2)).join(', '),
          num(best(t.key) * 8 * 1.073741824, 1),
          ratio(best(t.key), direct),
          ratio(best(t.key), ha),
          ratio(best(t.key), haSp),
          cpu.length === 0 ? '—' : `${Math.round(median(cpu) * 100)} %`,
          perGib.length === 0 ? '—' : num(median(perGib), 2),
          rss.length === 0 ? '—' : num(max(rss), 0),
        ];
      });
      const met = poly >= TARGET * ha;
      const verdict = `Target ${met ? 'met' : 'missed'}: polyproxy ${num(poly, 2)} GiB/s = ${ratio(poly, ha)} HAProxy tcp (target ≥ ${TARGET.toFixed(2)}×), ${ratio(poly, haSp)} HAProxy with splice, ${ratio(poly, direct)} direct`;
      return {
        title: `TCP bulk throughput: ${gib} GiB over ${connections} connections`,
        verdict,
        tables: [
          {
            table: {
              headers: ['target', 'GiB/s (best)', 'GiB/s per run', 'Gbit/s', 'vs direct', 'vs HAProxy', 'vs HAProxy splice', 'proxy CPU', 'proxy CPU s/GiB', 'proxy RSS max MB'],
              rows,
            },
          },
        ],
        notes: [
          `Sender bench/lib/bulk-send.ts opens ${connections} connections at once and writes ${num(perConnection / 2 ** 20)} MiB on each (a reused 1 MiB buffer, honouring backpressure), half-closes and waits for the close; the sink bench/lib/bulk-sink.ts reads into one shared buffer (no allocation per read), counts, checks the total and closes on end. GiB/s = bytes / time from the first connect to the last close. ${rounds} interleaved round(s) (order reversed every other round) after a 0.5 GiB warm-up each; best run.`,
          `polyproxy (\`--protocol tcp\`, one worker, \`--log-level warn\`), HAProxy (${haVersion}; \`mode tcp\`, \`nbthread 1\`, once plain and once with \`option splice-auto\`) and the naive pipe() proxy ${ctx.proxyCpu < 0 ? 'are not pinned' : `are each pinned to CPU ${ctx.proxyCpu}; sender and sink to CPU ${clientCpu(ctx)}`}. "proxy CPU" is the proxy's user+system CPU time over the run's wall time (100 % = one core); "s/GiB" is CPU seconds per GiB relayed; "RSS max" is the proxy's highest VmRSS sampled every 200 ms (medians / maxima of the runs).`,
          'The naive pipe() proxy is bench/lib/pipe-proxy.ts: `client.pipe(backend).pipe(client)`. iperf3 is not used (not installed); the Node sender/sink pair reaches the direct figure above on one core.',
        ],
        data: {
          settings: { gib, connections, rounds, perConnection, proxyCpu: ctx.proxyCpu, clientCpu: clientCpu(ctx) },
          versions: { haproxy: haVersion },
          targets: targets.map((t) => ({ key: t.key, label: t.label, bestGiBps: best(t.key), runs: runs.get(t.key) })),
          ratios: { polyproxyToHaproxy: poly / ha, polyproxyToHaproxySplice: poly / haSp, polyproxyToDirect: poly / direct, pipeToHaproxy: best('pipe') / ha },
          targetMet: met,
        },
      };
    } finally {
      progress('tcp-bulk: stopping proxies and sink');
      await Promise.all(started.map((r) => r.stop()));
    }
  },
};
