/**
 * http-rps: HTTP/1.1 keep-alive request rate. wrk (1 thread, 64 connections)
 * against nginx answering `return 200 "hello\n"` directly, through polyproxy
 * (http listener, Host route → nginx, one worker) and through HAProxy
 * (`mode http`, `option http-keep-alive`, one thread), in the same run. The
 * proxies are pinned to the proxy CPU; nginx and wrk share the other one.
 * Then a streaming check: 1 GiB uploaded and 1 GiB downloaded through each
 * proxy (node:http sink backend), sampling the proxy's VmRSS.
 * Target (issue 3): polyproxy ≥ 0.6× HAProxy req/s; RSS flat while streaming.
 *
 * Env: BENCH_DURATION (s per run, default 10), BENCH_WARMUP (s, default 1),
 * BENCH_ROUNDS (default 2, interleaved, order reversed every other round),
 * BENCH_STREAM_GB (GiB each way, default 1; 0 skips the streaming check).
 */
import http from 'node:http';
import path from 'node:path';
import { haproxyVersion, startHaproxyTcp } from '../lib/haproxy.ts';
import { pinned } from '../lib/machine.ts';
import { freePort } from '../lib/net.ts';
import { startNginx, nginxVersion } from '../lib/nginx.ts';
import { startPolyproxyWithConfig } from '../lib/polyproxy-config.ts';
import { progress } from '../lib/progress.ts';
import { runCommand, spawnTracked } from '../lib/process.ts';
import { readRssKb, readTreeCpuSeconds } from '../lib/rss.ts';
import type { Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { max, median } from '../lib/stats.ts';
import { num, ratio } from '../lib/table.ts';
import { TWO_WORKERS_NOTE } from '../lib/targets.ts';
import type { Running } from '../lib/targets.ts';
import { clientCpu } from './tcp-rr.ts';
import { envNumber } from '../lib/env.ts';

const WRK = '/usr/bin/wrk';
const CONNECTIONS = 64;
/** Issue 23: ≥ 0.8× HAProxy, one worker, keep-alive. */
const TARGET = 0.8;
const SINK_HOST = 'sink.bench.test';
const BENCH_LIB = path.join(path.dirname(path.dirname(new URL(import.meta.url).pathname)), 'lib');

function wrkArgs(port: number, seconds: number): string[] {
  return ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, `http://127.0.0.1:${port}/`];
}

interface RunResult {
  readonly requestsPerSecond: number;
  readonly non2xx: number;
  readonly socketErrors: string | null;
  /** CPU used by the proxy during the run, in cores (null for direct). */
  readonly proxyCpu: number | null;
}

async function runWrk(ctx: ScenarioContext, port: number, seconds: number, proxyPid: number | null): Promise<RunResult> {
  const cpuBefore = proxyPid === null ? 0 : readTreeCpuSeconds(proxyPid);
  const started = Date.now();
  const [cmd, args] = pinned(clientCpu(ctx), WRK, wrkArgs(port, seconds));
  const r = await runCommand(cmd, args, { name: 'wrk' });
  const elapsed = (Date.now() - started) / 1000;
  const cpuAfter = proxyPid === null ? 0 : readTreeCpuSeconds(proxyPid);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout);
  if (r.code !== 0 || rps === null) throw new Error(`wrk on port ${port} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(r.stdout);
  const errors = /Socket errors:\s+(.+)/.exec(r.stdout);
  return {
    requestsPerSecond: Number(rps[1]),
    non2xx: non2xx === null ? 0 : Number(non2xx[1]),
    socketErrors: errors === null ? null : (errors[1] as string).trim(),
    proxyCpu: proxyPid === null ? null : (cpuAfter - cpuBefore) / elapsed,
  };
}

interface StreamResult {
  readonly direction: 'upload' | 'download';
  readonly bytes: number;
  readonly seconds: number;
  readonly rssStartKb: number;
  /** VmRSS once a quarter of the bytes had passed. */
  readonly rssQuarterKb: number;
  /** Highest VmRSS sample while the first half of the bytes passed. */
  readonly rssFirstHalfMaxKb: number;
  readonly rssMaxKb: number;
  readonly rssEndKb: number;
}

/** One 1 GiB-ish transfer through `port` (Host: SINK_HOST), sampling `pid`'s VmRSS every 50 ms. */
function stream(port: number, pid: number, direction: 'upload' | 'download', bytes: number): Promise<StreamResult> {
  const rssStartKb = readRssKb(pid);
  let rssMaxKb = rssStartKb;
  let rssQuarterKb = 0;
  let rssFirstHalfMaxKb = 0;
  let moved = 0;
  const progressed = (n: number): void => {
    moved += n;
    if (rssQuarterKb === 0 && moved >= bytes / 4) rssQuarterKb = readRssKb(pid);
    if (rssFirstHalfMaxKb === 0 && moved >= bytes / 2) rssFirstHalfMaxKb = Math.max(rssMaxKb, readRssKb(pid));
  };
  const sampler = setInterval(() => {
    try {
      rssMaxKb = Math.max(rssMaxKb, readRssKb(pid));
    } catch {
      // process gone: the request fails below
    }
  }, 50);
  const started = process.hrtime.bigint();
  const agent = new http.Agent({ keepAlive: false });
  return new Promise<StreamResult>((resolve, reject) => {
    const finish = (received: number): void => {
      clearInterval(sampler);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const rssEndKb = readRssKb(pid);
      rssMaxKb = Math.max(rssMaxKb, rssEndKb);
      if (received !== bytes) return reject(new Error(`${direction}: ${received} of ${bytes} bytes arrived`));
      resolve({ direction, bytes, seconds, rssStartKb, rssQuarterKb, rssFirstHalfMaxKb, rssMaxKb, rssEndKb });
    };
    const fail = (err: Error): void => {
      clearInterval(sampler);
      reject(err);
    };
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        agent,
        method: direction === 'upload' ? 'POST' : 'GET',
        path: direction === 'upload' ? '/upload' : `/download?bytes=${bytes}`,
        headers: { host: SINK_HOST, ...(direction === 'upload' ? { 'content-length': String(bytes), 'content-type': 'application/octet-stream' } : {}) },
      },
      (res) => {
        let received = 0;
        let body = '';
        res.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (direction === 'download') progressed(chunk.length);
          if (direction === 'upload') body += chunk.toString('utf8');
        });
        res.on('end', () => {
          if (res.statusCode !== 200) return fail(new Error(`${direction}: HTTP ${res.statusCode} ${body.slice(0, 200)}`));
          finish(direction === 'upload' ? (JSON.parse(body) as { bytes: number }).bytes : received);
        });
        res.on('error', fail);
      },
    );
    req.on('error', fail);
    if (direction === 'download') {
      req.end();
      return;
    }
    const CHUNK = Buffer.alloc(1024 * 1024, 0x5a);
    let left = bytes;
    const pump = (): void => {
      while (left > 0) {
        const chunk = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
        left -= chunk.length;
        progressed(chunk.length);
        if (!req.write(chunk)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

interface Target {
  readonly key: string;
  readonly label: string;
  readonly port: number;
  readonly pid: number | null;
}

const mb = (kb: number): string => `${(kb / 1024).toFixed(1)} MB`;

export const httpRpsScenario: Scenario = {
  name: 'http-rps',
  description: 'wrk keep-alive, 64 conns, nginx "hello": direct vs polyproxy (http) vs HAProxy http (1 thread); 1 GiB streaming RSS',
  needsBuild: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const seconds = envNumber('BENCH_DURATION', 10);
    const warmup = envNumber('BENCH_WARMUP', 1);
    const rounds = Math.max(1, envNumber('BENCH_ROUNDS', 2));
    const streamBytes = Math.round(envNumber('BENCH_STREAM_GB', 1) * 2 ** 30);
    const loadCpu = clientCpu(ctx);
    const versions = {
      wrk: (await runCommand(WRK, ['--version'])).stdout.split('\n')[0]?.trim() ?? '',
      nginx: await nginxVersion(),
      haproxy: await haproxyVersion(),
    };

    const started: Running[] = [];
    try {
      progress('http-rps: starting nginx, HTTP sink, polyproxy, HAProxy');
      const nginx = await startNginx(loadCpu);
      started.push(nginx);
      const [sinkCmd, sinkArgs] = pinned(loadCpu, ctx.node, [path.join(BENCH_LIB, 'http-sink.ts')]);
      const sinkProc = spawnTracked(sinkCmd, sinkArgs, { name: 'http-sink', cwd: ctx.root, stdin: true });
      const sinkPort = (JSON.parse(await sinkProc.waitForOutput(/"type":"ready"/, 15_000)) as { port: number }).port;
      started.push({ name: 'http-sink', port: sinkPort, pid: sinkProc.pid, proc: sinkProc, stop: () => sinkProc.stop('SIGTERM', 5000) });
      const backend = `127.0.0.1:${nginx.port}`;
      const polyproxy = await startPolyproxyWithConfig(ctx, {
        security: { allowBackends: ['127.0.0.0/8'] },
        // wrk sends "Host: 127.0.0.1:<port>": routed on the host without the port.
        routes: { '127.0.0.1': backend, [SINK_HOST]: `127.0.0.1:${sinkPort}` },
        listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: await freePort() }],
      });
      started.push(polyproxy);
      const polyproxy2 = await startPolyproxyWithConfig(
        ctx,
        {
          workers: 2,
          security: { allowBackends: ['127.0.0.0/8'] },
          routes: { '127.0.0.1': backend },
          listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: await freePort() }],
        },
        'polyproxy-2w',
      );
      started.push(polyproxy2);
      const haproxy = await startHaproxyTcp(ctx, { backend, mode: 'http', name: 'haproxy' });
      started.push(haproxy);
      const haproxySink = await startHaproxyTcp(ctx, { backend: `127.0.0.1:${sinkPort}`, mode: 'http', name: 'haproxy-sink' });
      started.push(haproxySink);

      const targets: Target[] = [
        { key: 'direct', label: 'direct (nginx)', port: nginx.port, pid: null },
        { key: 'polyproxy', label: 'polyproxy (http, Host route)', port: polyproxy.port, pid: polyproxy.pid },
        { key: 'polyproxy2', label: 'polyproxy, 2 workers (unpinned)', port: polyproxy2.port, pid: polyproxy2.pid },
        { key: 'haproxy', label: 'HAProxy http (nbthread 1)', port: haproxy.port, pid: haproxy.pid },
      ];
      for (const t of targets) {
        progress(`http-rps: warm-up ${t.label}`);
        const w = await runWrk(ctx, t.port, warmup, t.pid);
        if (w.non2xx > 0) throw new Error(`${t.label}: ${w.non2xx} non-2xx responses in the warm-up`);
      }
      const runs = new Map<string, RunResult[]>(targets.map((t) => [t.key, []]));
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? targets : [...targets].reverse();
        for (const t of order) {
          progress(`http-rps: round ${round + 1}/${rounds}, ${t.label} (${seconds} s)`);
          runs.get(t.key)?.push(await runWrk(ctx, t.port, seconds, t.pid));
        }
      }

      const streams: Array<{ key: string; label: string; results: StreamResult[] }> = [];
      if (streamBytes > 0) {
        for (const t of [
          { key: 'polyproxy', label: 'polyproxy', port: polyproxy.port, pid: polyproxy.pid },
          { key: 'haproxy', label: 'HAProxy http', port: haproxySink.port, pid: haproxySink.pid },
        ]) {
          const results: StreamResult[] = [];
          for (const direction of ['upload', 'download'] as const) {
            progress(`http-rps: streaming ${num(streamBytes / 2 ** 30, 1)} GiB ${direction} through ${t.label}`);
            results.push(await stream(t.port, t.pid, direction, streamBytes));
          }
          streams.push({ key: t.key, label: t.label, results });
        }
      }

      const best = (key: string): number => max((runs.get(key) ?? []).map((r) => r.requestsPerSecond));
      const direct = best('direct');
      const ha = best('haproxy');
      const poly = best('polyproxy');
      const rows = targets.map((t) => {
        const rs = runs.get(t.key) ?? [];
        const rps = best(t.key);
        const cpu = rs.map((r) => r.proxyCpu).filter((c): c is number => c !== null);
        const perReq = rs.filter((r) => r.proxyCpu !== null).map((r) => ((r.proxyCpu as number) / r.requestsPerSecond) * 1e6);
        return [
          t.label,
          num(rps),
          rs.map((r) => num(r.requestsPerSecond)).join(', '),
          ratio(rps, direct),
          ratio(rps, ha),
          cpu.length === 0 ? '—' : `${Math.round(median(cpu) * 100)} %`,
          perReq.length === 0 ? '—' : num(median(perReq), 1),
        ];
      });
      const errors = [...runs.values()].flat().filter((r) => r.non2xx > 0 || r.socketErrors !== null);
      const polyStream = streams.find((s) => s.key === 'polyproxy')?.results ?? [];
      const growthKb = polyStream.length === 0 ? null : max(polyStream.map((r) => r.rssMaxKb - r.rssStartKb));
      // Flat: the second half of the bytes raises the RSS peak by less than 16 MB over the first half's (bounded, not growing with the body).
      const lateGrowthKb = polyStream.length === 0 ? null : max(polyStream.map((r) => r.rssMaxKb - r.rssFirstHalfMaxKb));
      const flat = lateGrowthKb !== null && lateGrowthKb < 16 * 1024;
      const met = poly >= TARGET * ha;
      const verdict =
        `Target ${met ? 'met' : 'missed'}: polyproxy ${num(poly)} req/s = ${ratio(poly, ha)} HAProxy http (target ≥ ${TARGET.toFixed(2)}×), ${ratio(poly, direct)} direct` +
        (growthKb === null ? '' : `; ${num(streamBytes / 2 ** 30, 2)} GiB each way: polyproxy RSS rose at most ${mb(growthKb)} above its start, then ${mb(lateGrowthKb ?? 0)} more in the second half of the bytes (${flat ? 'flat: bounded, not growing with the body' : 'NOT flat'})`);
      const streamRows = streams.flatMap((s) =>
        s.results.map((r) => [s.label, r.direction, `${num(r.bytes / 2 ** 30, 2)} GiB`, `${num(r.bytes / 2 ** 20 / r.seconds)} MiB/s`, mb(r.rssStartKb), mb(r.rssQuarterKb), mb(r.rssFirstHalfMaxKb), mb(r.rssMaxKb), mb(r.rssEndKb), mb(r.rssMaxKb - r.rssStartKb), mb(Math.max(0, r.rssMaxKb - r.rssFirstHalfMaxKb))]),
      );
      return {
        title: 'HTTP keep-alive request rate: wrk, 64 connections, nginx "hello"',
        verdict,
        tables: [
          { table: { headers: ['target', 'req/s (best)', 'req/s per run', 'vs direct', 'vs HAProxy', 'proxy CPU', 'proxy CPU µs/req'], rows } },
          ...(streamRows.length === 0
            ? []
            : [{ caption: `Streaming ${num(streamBytes / 2 ** 30, 2)} GiB each way through the proxy (node:http sink backend), proxy VmRSS sampled every 50 ms:`, table: { headers: ['proxy', 'direction', 'bytes', 'throughput', 'RSS start', 'RSS at 25 %', 'RSS max, 1st half', 'RSS max', 'RSS end', 'max growth', '2nd-half growth'], rows: streamRows } }]),
        ],
        notes: [
          `\`wrk ${wrkArgs(0, seconds).join(' ').replace('127.0.0.1:0', '127.0.0.1:<port>')}\` per target; ${rounds} interleaved round(s) (order reversed every other round) after a ${warmup} s warm-up each; best run.${errors.length > 0 ? ` Errors seen: ${errors.map((e) => `${e.non2xx} non-2xx, socket ${e.socketErrors ?? 'ok'}`).join('; ')}.` : ' No non-2xx responses or socket errors.'}`,
          `${versions.wrk}; nginx ${versions.nginx}; ${versions.haproxy}.`,
          TWO_WORKERS_NOTE,
          `Backend: nginx, \`worker_processes 1\`, \`access_log off\`, \`keepalive_requests 1000000\`, \`location / { return 200 "hello\\n"; }\`. polyproxy (config: http listener, route \`127.0.0.1\` → nginx — wrk sends \`Host: 127.0.0.1:<port>\` — one worker, \`logLevel: warn\`) and HAProxy (\`mode http\`, \`option http-keep-alive\`, \`nbthread 1\`) ${ctx.proxyCpu < 0 ? 'are not pinned' : `are pinned to CPU ${ctx.proxyCpu}; wrk and nginx share CPU ${loadCpu} (so "direct" is limited by wrk and nginx competing for one core)`}. "proxy CPU" is the proxy's user+system CPU time over the run's wall time (100 % = one core); "µs/req" is that CPU time per request (medians of the runs).`,
          ...(streamRows.length === 0
            ? []
            : [
                `Streaming: one \`POST /upload\` with a ${num(streamBytes)}-byte Content-Length body and one \`GET /download\` answering the same size, sent by the bench process (unpinned, node:http, 1 MiB writes honouring backpressure) with \`Host: ${SINK_HOST}\` to bench/lib/http-sink.ts (node:http, pinned to CPU ${loadCpu}); HAProxy here is a second \`mode http\` instance in front of the sink. "max growth" = highest VmRSS sample minus the sample taken just before the transfer; "2nd-half growth" = highest sample overall minus the highest while the first half of the bytes passed — "flat" means under 16 MB there (memory bounded, not growing with the body). The early rise is presumably read buffers awaiting garbage collection (V8 frees Buffer memory at GC), not the body being held.`,
              ]),
        ],
        data: {
          settings: { seconds, warmup, rounds, connections: CONNECTIONS, proxyCpu: ctx.proxyCpu, loadCpu, streamBytes },
          versions,
          targets: targets.map((t) => ({ key: t.key, label: t.label, best: best(t.key), runs: runs.get(t.key) })),
          streams,
          ratios: { polyproxyToHaproxy: poly / ha, twoWorkersToHaproxy: best('polyproxy2') / ha, twoWorkersToOne: best('polyproxy2') / poly, polyproxyToDirect: poly / direct, haproxyToDirect: ha / direct },
          targetMet: met,
          rssFlat: growthKb === null ? null : flat,
        },
      };
    } finally {
      progress('http-rps: stopping processes');
      await Promise.all(started.map((r) => r.stop()));
    }
  },
};
