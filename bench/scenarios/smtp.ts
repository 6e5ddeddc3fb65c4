/**
 * smtp: messages per second, N parallel SMTP sessions each sending small
 * messages back to back (bench/lib/smtp-load.ts), to an smtp-server sink
 * (bench/lib/smtp-sink.ts) directly, through polyproxy (smtp listener,
 * routeBy: ehlo) and, for reference, through HAProxy in TCP mode (one
 * thread), in the same run. The proxies are pinned to the proxy CPU; the
 * sink and the load process share the other one.
 * Target (issue 5): polyproxy ≥ 0.8× direct.
 *
 * The shape measures a proxy's message throughput, not its added latency:
 * enough sessions, with the client pipelining as RFC 2920 allows (the final
 * "." and the next envelope in one write: one round trip per message), that
 * the sink's core — the smtp-server backend with the load generator beside
 * it — is what saturates, in every target alike. The table shows the sink's
 * and the load generator's CPU so a run tells which one was the limit. With
 * 8 sessions and two round trips per message (the first shape) every
 * target was latency-bound: HAProxy scored 0.72× direct, like polyproxy.
 *
 * Env: BENCH_DURATION (s per run, default 10), BENCH_WARMUP (s, default 1),
 * BENCH_ROUNDS (default 2, interleaved, order reversed every other round),
 * BENCH_SMTP_CONNECTIONS (parallel sessions, default 64),
 * BENCH_SMTP_PIPELINE (1 = "." and the next envelope in one write, the
 * default; 0 = wait for each message's 250 first, the first shape).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { haproxyVersion, startHaproxyTcp } from '../lib/haproxy.ts';
import { pinned } from '../lib/machine.ts';
import { freePort } from '../lib/net.ts';
import { startPolyproxyWithConfig } from '../lib/polyproxy-config.ts';
import { progress } from '../lib/progress.ts';
import { runCommand, spawnTracked } from '../lib/process.ts';
import { readCpuSeconds } from '../lib/rss.ts';
import type { Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { max, median } from '../lib/stats.ts';
import { num, ratio } from '../lib/table.ts';
import type { Running } from '../lib/targets.ts';
import { clientCpu } from './tcp-rr.ts';
import { envNumber } from '../lib/env.ts';

const DEFAULT_CONNECTIONS = 64;
const MESSAGE_BYTES = 512;
const DOMAIN = 'bench.test';
const TARGET = 0.8;
const BENCH_LIB = path.join(path.dirname(path.dirname(new URL(import.meta.url).pathname)), 'lib');

const CONNECTIONS = Math.max(1, envNumber('BENCH_SMTP_CONNECTIONS', DEFAULT_CONNECTIONS));
const PIPELINE = envNumber('BENCH_SMTP_PIPELINE', 1) !== 0;

function loadArgs(port: number, seconds: number): string[] {
  const args = ['--port', String(port), '--connections', String(CONNECTIONS), '--seconds', String(seconds), '--ehlo', DOMAIN, '--size', String(MESSAGE_BYTES)];
  if (PIPELINE) args.push('--pipeline');
  return args;
}

interface RunResult {
  readonly messagesPerSecond: number;
  readonly messages: number;
  /** CPU used by the proxy during the run, in cores (null for direct). */
  readonly proxyCpu: number | null;
  /** CPU used by the smtp-server sink during the run, in cores. */
  readonly sinkCpu: number;
  /** CPU used by the load generator during the run, in cores. */
  readonly loadCpu: number;
}

async function runLoad(ctx: ScenarioContext, port: number, seconds: number, proxyPid: number | null, sinkPid: number): Promise<RunResult> {
  const cpuBefore = proxyPid === null ? 0 : readCpuSeconds(proxyPid);
  const sinkBefore = readCpuSeconds(sinkPid);
  const started = Date.now();
  const [cmd, args] = pinned(clientCpu(ctx), ctx.node, [path.join(BENCH_LIB, 'smtp-load.ts'), ...loadArgs(port, seconds)]);
  const r = await runCommand(cmd, args, { name: 'smtp-load' });
  const elapsed = (Date.now() - started) / 1000;
  const cpuAfter = proxyPid === null ? 0 : readCpuSeconds(proxyPid);
  const sinkCpu = (readCpuSeconds(sinkPid) - sinkBefore) / elapsed;
  const line = r.stdout.split('\n').find((l) => l.includes('"type":"result"'));
  if (r.code !== 0 || line === undefined) throw new Error(`smtp-load on port ${port} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  const result = JSON.parse(line) as { messages: number; seconds: number; cpuSeconds: number };
  return {
    messages: result.messages,
    messagesPerSecond: result.messages / result.seconds,
    proxyCpu: proxyPid === null ? null : (cpuAfter - cpuBefore) / elapsed,
    sinkCpu,
    // The load process's CPU includes its start-up (well under 0.1 s): over the session time it errs high, never low.
    loadCpu: result.cpuSeconds / result.seconds,
  };
}

interface Target {
  readonly key: string;
  readonly label: string;
  readonly port: number;
  readonly pid: number | null;
}

export const smtpScenario: Scenario = {
  name: 'smtp',
  description: 'N (64) pipelining SMTP sessions sending 512-byte messages to an smtp-server sink: direct vs polyproxy (smtp, routeBy ehlo) vs HAProxy tcp',
  needsBuild: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const seconds = envNumber('BENCH_DURATION', 10);
    const warmup = envNumber('BENCH_WARMUP', 1);
    const rounds = Math.max(1, envNumber('BENCH_ROUNDS', 2));
    const loadCpu = clientCpu(ctx);
    const versions = {
      smtpServer: (JSON.parse(readFileSync(path.join(ctx.root, 'node_modules', 'smtp-server', 'package.json'), 'utf8')) as { version: string }).version,
      haproxy: await haproxyVersion(),
    };

    const started: Running[] = [];
    try {
      progress('smtp: starting smtp-server sink, polyproxy, HAProxy');
      const [sinkCmd, sinkArgs] = pinned(loadCpu, ctx.node, [path.join(BENCH_LIB, 'smtp-sink.ts')]);
      const sinkProc = spawnTracked(sinkCmd, sinkArgs, { name: 'smtp-sink', cwd: ctx.root, stdin: true });
      const sinkPort = (JSON.parse(await sinkProc.waitForOutput(/"type":"ready"/, 15_000)) as { port: number }).port;
      started.push({ name: 'smtp-sink', port: sinkPort, pid: sinkProc.pid, proc: sinkProc, stop: () => sinkProc.stop('SIGTERM', 5000) });
      const backend = `127.0.0.1:${sinkPort}`;
      const polyproxy = await startPolyproxyWithConfig(ctx, {
        security: { allowBackends: ['127.0.0.0/8'] },
        routes: { [DOMAIN]: backend },
        listeners: [{ name: 'mail', protocol: 'smtp', host: '127.0.0.1', port: await freePort(), routeBy: 'ehlo', hostname: 'mx.bench.test' }],
      });
      started.push(polyproxy);
      const haproxy = await startHaproxyTcp(ctx, { backend });
      started.push(haproxy);

      const targets: Target[] = [
        { key: 'direct', label: 'direct (smtp-server)', port: sinkPort, pid: null },
        { key: 'polyproxy', label: 'polyproxy (smtp, routeBy ehlo)', port: polyproxy.port, pid: polyproxy.pid },
        { key: 'haproxy', label: 'HAProxy tcp (nbthread 1)', port: haproxy.port, pid: haproxy.pid },
      ];
      for (const t of targets) {
        progress(`smtp: warm-up ${t.label}`);
        await runLoad(ctx, t.port, warmup, t.pid, sinkProc.pid);
      }
      const runs = new Map<string, RunResult[]>(targets.map((t) => [t.key, []]));
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? targets : [...targets].reverse();
        for (const t of order) {
          progress(`smtp: round ${round + 1}/${rounds}, ${t.label} (${seconds} s)`);
          runs.get(t.key)?.push(await runLoad(ctx, t.port, seconds, t.pid, sinkProc.pid));
        }
      }
      sinkProc.send('count');
      const counted = (JSON.parse(await sinkProc.waitForLine(/"type":"count"/, 5000)) as { messages: number }).messages;
      const sent = [...runs.values()].flat().reduce((a, r) => a + r.messages, 0);

      const best = (key: string): number => max((runs.get(key) ?? []).map((r) => r.messagesPerSecond));
      const direct = best('direct');
      const ha = best('haproxy');
      const poly = best('polyproxy');
      const rows = targets.map((t) => {
        const rs = runs.get(t.key) ?? [];
        const mps = best(t.key);
        const cpu = rs.map((r) => r.proxyCpu).filter((c): c is number => c !== null);
        const perMsg = rs.filter((r) => r.proxyCpu !== null).map((r) => ((r.proxyCpu as number) / r.messagesPerSecond) * 1e6);
        return [
          t.label,
          num(mps),
          rs.map((r) => num(r.messagesPerSecond)).join(', '),
          ratio(mps, direct),
          ratio(mps, ha),
          cpu.length === 0 ? '—' : `${Math.round(median(cpu) * 100)} %`,
          perMsg.length === 0 ? '—' : num(median(perMsg), 1),
          `${Math.round(median(rs.map((r) => r.sinkCpu)) * 100)} %`,
          num(median(rs.map((r) => (r.sinkCpu / r.messagesPerSecond) * 1e6)), 1),
          `${Math.round(median(rs.map((r) => r.loadCpu)) * 100)} %`,
          `${Math.round(median(rs.map((r) => r.sinkCpu + r.loadCpu)) * 100)} %`,
        ];
      });
      const met = poly >= TARGET * direct;
      const verdict = `Target ${met ? 'met' : 'missed'}: polyproxy ${num(poly)} messages/s = ${ratio(poly, direct)} direct (target ≥ ${TARGET.toFixed(2)}×), ${ratio(poly, ha)} HAProxy tcp`;
      return {
        title: `SMTP message rate: ${CONNECTIONS} ${PIPELINE ? 'pipelining ' : ''}sessions, ${MESSAGE_BYTES}-byte messages, smtp-server sink`,
        verdict,
        tables: [{ table: { headers: ['target', 'messages/s (best)', 'messages/s per run', 'vs direct', 'vs HAProxy', 'proxy CPU', 'proxy CPU µs/message', 'sink CPU', 'sink CPU µs/message', 'load CPU', `sink + load (CPU ${loadCpu})`], rows } }],
        notes: [
          `\`node bench/lib/smtp-load.ts ${loadArgs(0, seconds).join(' ').replace('--port 0', '--port <port>')}\` per target: ${CONNECTIONS} sessions, each EHLO ${DOMAIN} once, then messages back to back — MAIL FROM + RCPT TO + DATA in one write (PIPELINING), the ~${MESSAGE_BYTES}-byte message and its "." after the 354, ${PIPELINE ? 'with the next MAIL FROM + RCPT TO + DATA in the same write (RFC 2920 3.1: one round trip per message)' : 'next message after the 250 (two round trips per message)'}. ${rounds} interleaved round(s) (order reversed every other round) after a ${warmup} s warm-up each; best run. The sink counted ${num(counted)} messages over the whole run (warm-ups included); the load processes saw ${num(sent)} accepted in the measured runs.`,
          `Backend: smtp-server ${versions.smtpServer} (bench/lib/smtp-sink.ts: no AUTH, no STARTTLS, discards every message) in its own process; ${versions.haproxy}.`,
          `polyproxy (config: smtp listener, \`routeBy: ehlo\`, route \`${DOMAIN}\` → the sink, one worker, \`logLevel: warn\`) and HAProxy (\`mode tcp\`, \`nbthread 1\`, a byte relay for reference — it does not route by EHLO) ${ctx.proxyCpu < 0 ? 'are not pinned' : `are pinned to CPU ${ctx.proxyCpu}; the sink and the load process share CPU ${loadCpu}`}. "proxy CPU" is the proxy's user+system CPU time over the run's wall time (100 % = one core); "µs/message" is that CPU time per message (medians of the runs); "sink CPU" is the same for the smtp-server backend, "load CPU" for the load generator (its own process.cpuUsage()); "sink + load" near 100 % means their shared core was the limit, and the sink's share says it was mostly the backend.`,
        ],
        data: {
          settings: { seconds, warmup, rounds, connections: CONNECTIONS, pipeline: PIPELINE, messageBytes: MESSAGE_BYTES, proxyCpu: ctx.proxyCpu, loadCpu },
          versions,
          targets: targets.map((t) => ({ key: t.key, label: t.label, best: best(t.key), runs: runs.get(t.key) })),
          sinkCounted: counted,
          ratios: { polyproxyToDirect: poly / direct, polyproxyToHaproxy: poly / ha, haproxyToDirect: ha / direct },
          targetMet: met,
        },
      };
    } finally {
      progress('smtp: stopping processes');
      await Promise.all(started.map((r) => r.stop()));
    }
  },
};
