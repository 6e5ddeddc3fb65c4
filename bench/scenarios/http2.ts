/**
 * http2: HTTP/2 request rate and gRPC unary calls (issue 20).
 *
 * 1. `h2load -c 16 -m 32` (16 connections, 32 streams in flight each, h2c
 *    prior knowledge) against nginx's `return 200 "hello\n"` through
 *    polyproxy (http listener, HTTP/2 front, HTTP/1.1 backend, one worker),
 *    HAProxy (`bind ... proto h2`, `mode http`, HTTP/1.1 backend, one
 *    thread) and nginx as a proxy (`listen ... http2`, `proxy_pass` with
 *    upstream keep-alive, one worker), in the same run. The proxies are
 *    pinned to the proxy CPU; the backend nginx and h2load share the other.
 * 2. gRPC unary calls/s: a grpc-js load loop (one channel, 64 calls in
 *    flight) against a grpc-js echo server, direct and through polyproxy.
 * Target (issue 20): polyproxy ≥ 0.6× HAProxy req/s on one worker.
 *
 * Env: BENCH_DURATION (s per run, default 10), BENCH_WARMUP (s, default 1).
 */
import path from 'node:path';
import { haproxyVersion, startHaproxyTcp } from '../lib/haproxy.ts';
import { pinned } from '../lib/machine.ts';
import { freePort } from '../lib/net.ts';
import { launchNginx, nginxVersion, startNginx } from '../lib/nginx.ts';
import { startPolyproxyWithConfig } from '../lib/polyproxy-config.ts';
import { progress } from '../lib/progress.ts';
import { runCommand, spawnTracked } from '../lib/process.ts';
import { readCpuSeconds } from '../lib/rss.ts';
import type { Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { num, ratio } from '../lib/table.ts';
import type { Running } from '../lib/targets.ts';
import { clientCpu } from './tcp-rr.ts';
import { envNumber } from '../lib/env.ts';

const H2LOAD = '/usr/bin/h2load';
const CLIENTS = 16;
const STREAMS = 32;
const GRPC_CONCURRENCY = 64;
const TARGET = 0.6;
const GRPC_HOST = 'grpc.bench.test';
const BENCH_LIB = path.join(path.dirname(path.dirname(new URL(import.meta.url).pathname)), 'lib');

function h2loadArgs(port: number, seconds: number): string[] {
  return [`-c${CLIENTS}`, `-m${STREAMS}`, '-t1', `-D${seconds}`, `http://127.0.0.1:${port}/`];
}

interface H2Result {
  readonly requestsPerSecond: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly non2xx: number;
  readonly proxyCpu: number | null;
}

async function runH2load(ctx: ScenarioContext, port: number, seconds: number, proxyPid: number | null): Promise<H2Result> {
  const cpuBefore = proxyPid === null ? 0 : readCpuSeconds(proxyPid);
  const started = Date.now();
  const [cmd, args] = pinned(clientCpu(ctx), H2LOAD, h2loadArgs(port, seconds));
  const r = await runCommand(cmd, args, { name: 'h2load' });
  const elapsed = (Date.now() - started) / 1000;
  const cpuAfter = proxyPid === null ? 0 : readCpuSeconds(proxyPid);
  const rps = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(r.stdout);
  const reqs = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed/.exec(r.stdout);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(r.stdout);
  if (r.code !== 0 || rps === null || reqs === null || codes === null) throw new Error(`h2load on port ${port} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  return {
    requestsPerSecond: Number(rps[1]),
    succeeded: Number(reqs[1]),
    failed: Number(reqs[2]),
    non2xx: Number(codes[2]) + Number(codes[3]) + Number(codes[4]),
    proxyCpu: proxyPid === null ? null : (cpuAfter - cpuBefore) / elapsed,
  };
}

interface GrpcResult {
  readonly callsPerSecond: number;
  readonly errors: number;
}

async function runGrpcLoad(ctx: ScenarioContext, port: number, authority: string | null, seconds: number): Promise<GrpcResult> {
  const [cmd, args] = pinned(clientCpu(ctx), ctx.node, [path.join(BENCH_LIB, 'grpc-load.ts'), '--port', String(port), '--seconds', String(seconds), '--concurrency', String(GRPC_CONCURRENCY), ...(authority === null ? [] : ['--authority', authority])]);
  const r = await runCommand(cmd, args, { name: 'grpc-load' });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.code !== 0) throw new Error(`grpc-load on port ${port} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  const result = JSON.parse(line) as { calls: number; seconds: number; errors: number };
  return { callsPerSecond: result.calls / result.seconds, errors: result.errors };
}

export const http2Scenario: Scenario = {
  name: 'http2',
  description: 'h2load -c16 -m32, nginx "hello": polyproxy (h2 front, h1 backend) vs HAProxy (h2 front) vs nginx (http2); gRPC unary calls/s through polyproxy vs direct',
  needsBuild: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const seconds = envNumber('BENCH_DURATION', 10);
    const warmup = envNumber('BENCH_WARMUP', 1);
    const loadCpu = clientCpu(ctx);
    const versions = {
      h2load: (await runCommand(H2LOAD, ['--version'])).stdout.split('\n')[0]?.trim() ?? '',
      nginx: await nginxVersion(),
      haproxy: await haproxyVersion(),
    };
    const started: Running[] = [];
    try {
      progress('http2: starting nginx backend, gRPC echo server, polyproxy, HAProxy, nginx proxy');
      const backend = await startNginx(loadCpu, 'nginx-backend');
      started.push(backend);
      const [grpcCmd, grpcArgs] = pinned(loadCpu, ctx.node, [path.join(BENCH_LIB, 'grpc-echo.ts')]);
      const grpcProc = spawnTracked(grpcCmd, grpcArgs, { name: 'grpc-echo', cwd: ctx.root });
      const grpcPort = (JSON.parse(await grpcProc.waitForOutput(/"type":"ready"/, 15_000)) as { port: number }).port;
      started.push({ name: 'grpc-echo', port: grpcPort, pid: grpcProc.pid, proc: grpcProc, stop: () => grpcProc.stop('SIGTERM', 5000) });
      const backendEndpoint = `127.0.0.1:${backend.port}`;
      const polyproxy = await startPolyproxyWithConfig(ctx, {
        security: { allowBackends: ['127.0.0.0/8'] },
        // h2load sends ":authority: 127.0.0.1:<port>": routed on the host without the port.
        routes: { '127.0.0.1': backendEndpoint, [GRPC_HOST]: `127.0.0.1:${grpcPort}` },
        listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: await freePort() }],
      });
      started.push(polyproxy);
      const haproxy = await startHaproxyTcp(ctx, { backend: backendEndpoint, mode: 'http', bind: 'proto h2', name: 'haproxy' });
      started.push(haproxy);
      const nginxPort = await freePort();
      const nginxProxy = await launchNginx(ctx.proxyCpu, 'nginx-proxy', [nginxPort], [
        `upstream be { server ${backendEndpoint}; keepalive 64; }`,
        `server { listen 127.0.0.1:${nginxPort} http2; http2_max_concurrent_streams 128; location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } }`,
      ]);
      started.push(nginxProxy);
      const [bareCmd, bareArgs] = pinned(ctx.proxyCpu, ctx.node, [path.join(BENCH_LIB, 'h2-bare.ts')]);
      const bareProc = spawnTracked(bareCmd, bareArgs, { name: 'h2-bare', cwd: ctx.root });
      const barePort = (JSON.parse(await bareProc.waitForOutput(/"type":"ready"/, 15_000)) as { port: number }).port;
      started.push({ name: 'h2-bare', port: barePort, pid: bareProc.pid, proc: bareProc, stop: () => bareProc.stop('SIGTERM', 5000) });

      const targets = [
        { key: 'polyproxy', label: 'polyproxy (h2 front, h1 backend)', port: polyproxy.port, pid: polyproxy.pid },
        { key: 'haproxy', label: 'HAProxy (proto h2, nbthread 1)', port: haproxy.port, pid: haproxy.pid },
        // nginx's pid is its master; the worker that does the work is a child: no CPU figure.
        { key: 'nginx', label: 'nginx (http2, proxy_pass, 1 worker)', port: nginxProxy.port, pid: null },
        // Not a proxy: node:http2 answering by itself, the floor under polyproxy's HTTP/2 front.
        { key: 'bare', label: 'node:http2 bare (floor: answers itself, no backend)', port: barePort, pid: bareProc.pid },
      ];
      for (const t of targets) {
        progress(`http2: warm-up ${t.label}`);
        const w = await runH2load(ctx, t.port, warmup, t.pid);
        if (w.non2xx > 0 || w.succeeded === 0) throw new Error(`${t.label}: ${w.non2xx} non-2xx, ${w.succeeded} succeeded in the warm-up`);
      }
      const runs = new Map<string, H2Result>();
      for (const t of targets) {
        progress(`http2: h2load through ${t.label} (${seconds} s)`);
        runs.set(t.key, await runH2load(ctx, t.port, seconds, t.pid));
      }
      progress('http2: gRPC warm-up');
      await runGrpcLoad(ctx, grpcPort, null, warmup);
      await runGrpcLoad(ctx, polyproxy.port, GRPC_HOST, warmup);
      progress(`http2: gRPC unary direct (${seconds} s)`);
      const grpcDirect = await runGrpcLoad(ctx, grpcPort, null, seconds);
      progress(`http2: gRPC unary through polyproxy (${seconds} s)`);
      const grpcPoly = await runGrpcLoad(ctx, polyproxy.port, GRPC_HOST, seconds);

      const rps = (key: string): number => runs.get(key)?.requestsPerSecond ?? 0;
      const poly = rps('polyproxy');
      const ha = rps('haproxy');
      const ngx = rps('nginx');
      const rows = targets.map((t) => {
        const r = runs.get(t.key) as H2Result;
        return [t.label, num(r.requestsPerSecond), ratio(r.requestsPerSecond, ha), ratio(r.requestsPerSecond, ngx), r.proxyCpu === null ? '—' : `${Math.round(r.proxyCpu * 100)} %`, r.proxyCpu === null ? '—' : num((r.proxyCpu / r.requestsPerSecond) * 1e6, 1), `${r.failed} / ${r.non2xx}`];
      });
      const grpcRows = [
        ['direct (grpc-js server)', num(grpcDirect.callsPerSecond), '1.00×', String(grpcDirect.errors)],
        ['polyproxy (h2c front, h2c backend)', num(grpcPoly.callsPerSecond), ratio(grpcPoly.callsPerSecond, grpcDirect.callsPerSecond), String(grpcPoly.errors)],
      ];
      const met = poly >= TARGET * ha;
      const verdict = `Target ${met ? 'met' : 'missed'}: polyproxy ${num(poly)} req/s over HTTP/2 = ${ratio(poly, ha)} HAProxy (target ≥ ${TARGET.toFixed(2)}×), ${ratio(poly, ngx)} nginx; gRPC unary ${num(grpcPoly.callsPerSecond)} calls/s through polyproxy = ${ratio(grpcPoly.callsPerSecond, grpcDirect.callsPerSecond)} direct`;
      return {
        title: 'HTTP/2 request rate (h2load -c16 -m32, nginx "hello") and gRPC unary calls',
        verdict,
        tables: [
          { table: { headers: ['proxy', 'req/s', 'vs HAProxy', 'vs nginx', 'proxy CPU', 'proxy CPU µs/req', 'failed / non-2xx'], rows } },
          { caption: `gRPC unary (grpc-js load loop: one channel, ${GRPC_CONCURRENCY} calls in flight, ${seconds} s):`, table: { headers: ['path', 'calls/s', 'vs direct', 'errors'], rows: grpcRows } },
        ],
        notes: [
          `\`h2load ${h2loadArgs(0, seconds).join(' ').replace('127.0.0.1:0', '127.0.0.1:<port>')}\` per proxy (h2c, prior knowledge), one run each after a ${warmup} s warm-up.`,
          `${versions.h2load}; nginx ${versions.nginx}; ${versions.haproxy}.`,
          `Backend: nginx (\`worker_processes 1\`, \`return 200 "hello\\n"\`) speaking HTTP/1.1 to every proxy. polyproxy: http listener, route \`127.0.0.1\` → nginx, one worker, HTTP/2 to the client by its own framing layer (h2/wire/: RFC 9113 + HPACK), HTTP/1.1 backend by its own client (h2/h1-backends.ts). node:http2 bare (bench/lib/h2-bare.ts): a node:http2 server on the proxy CPU answering "hello" itself — no proxying — what node:http2 alone costs per stream (the front polyproxy used before its own framing layer). HAProxy: \`bind … proto h2\`, \`mode http\`, \`option http-keep-alive\`, \`nbthread 1\`. nginx proxy: \`listen … http2\`, \`proxy_pass\` to an upstream with \`keepalive 64\`, one worker. The proxies ${ctx.proxyCpu < 0 ? 'are not pinned' : `are pinned to CPU ${ctx.proxyCpu}; h2load, the backend nginx, the gRPC server and the gRPC load loop share CPU ${loadCpu}`}.`,
          'gRPC: bench/lib/grpc-echo.ts (grpc-js server, Unary echo) and bench/lib/grpc-load.ts (grpc-js client); through polyproxy the channel sets `grpc.default_authority` to the route name and the proxy uses an HTTP/2 backend session (gRPC always goes to HTTP/2 backends).',
          'The machine is shared with other work running at the same time (other helpers’ tests and builds); ratios are same-run and stay meaningful, absolute figures less so.',
        ],
        data: {
          settings: { seconds, warmup, clients: CLIENTS, streams: STREAMS, grpcConcurrency: GRPC_CONCURRENCY, proxyCpu: ctx.proxyCpu, loadCpu },
          versions,
          h2load: Object.fromEntries(runs),
          grpc: { direct: grpcDirect, polyproxy: grpcPoly },
          ratios: { polyproxyToHaproxy: poly / ha, polyproxyToNginx: poly / ngx, bareToHaproxy: rps('bare') / ha, grpcPolyproxyToDirect: grpcPoly.callsPerSecond / grpcDirect.callsPerSecond },
          targetMet: met,
        },
      };
    } finally {
      progress('http2: stopping processes');
      await Promise.all(started.map((r) => r.stop()));
    }
  },
};
