/**
 * fastcgi: the FastCGI gateway (issue 7) against nginx `fastcgi_pass` to the
 * same two php-fpm pools (pm static, one on 127.0.0.1:<port>, one on a unix
 * socket), round-robin over both, in the same run. wrk (1 thread, 64
 * connections) asks for a one-line PHP script. nginx runs twice: with its
 * default (a new FastCGI connection per request) and with `keepalive` +
 * `fastcgi_keep_conn on` (like polyproxy, which keeps connections). The
 * proxies are pinned to the proxy CPU; php-fpm and wrk share the other one,
 * so php-fpm is the bottleneck, as in production.
 * Target (issue 7): polyproxy ≥ 0.8× the better nginx req/s.
 *
 * Env: BENCH_DURATION (s per run, default 10), BENCH_WARMUP (s, default 1),
 * BENCH_ROUNDS (default 2, interleaved, order reversed every other round),
 * BENCH_FPM_CHILDREN (per pool, default 4).
 */
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { pinned } from '../lib/machine.ts';
import { freePort } from '../lib/net.ts';
import { launchNginx, nginxVersion } from '../lib/nginx.ts';
import { phpFpmVersion, startPhpFpmPool, writePhpDocroot } from '../lib/php-fpm.ts';
import { startPolyproxyWithConfig } from '../lib/polyproxy-config.ts';
import { progress } from '../lib/progress.ts';
import { runCommand } from '../lib/process.ts';
import { readCpuSeconds } from '../lib/rss.ts';
import type { Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { max, median } from '../lib/stats.ts';
import { num, ratio } from '../lib/table.ts';
import type { Running } from '../lib/targets.ts';
import { clientCpu } from './tcp-rr.ts';
import { envNumber } from '../lib/env.ts';

const WRK = '/usr/bin/wrk';
const CONNECTIONS = 64;
const TARGET = 0.8;
const SCRIPT = '/hello.php';

function wrkArgs(port: number, seconds: number): string[] {
  return ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, `http://127.0.0.1:${port}${SCRIPT}`];
}

interface RunResult {
  readonly requestsPerSecond: number;
  readonly non2xx: number;
  readonly socketErrors: string | null;
  readonly proxyCpu: number;
}

/** CPU seconds of a process and its children (nginx: master + worker). */
function treeCpuSeconds(pid: number): number {
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((p) => p !== '').map(Number);
  } catch {
    // no children file (kernel without CONFIG_PROC_CHILDREN): the process alone
  }
  return readCpuSeconds(pid) + children.reduce((sum, child) => sum + readCpuSeconds(child), 0);
}

async function runWrk(ctx: ScenarioContext, port: number, seconds: number, proxyPid: number): Promise<RunResult> {
  const cpuBefore = treeCpuSeconds(proxyPid);
  const started = Date.now();
  const [cmd, args] = pinned(clientCpu(ctx), WRK, wrkArgs(port, seconds));
  const r = await runCommand(cmd, args, { name: 'wrk' });
  const elapsed = (Date.now() - started) / 1000;
  const cpuAfter = treeCpuSeconds(proxyPid);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout);
  if (r.code !== 0 || rps === null) throw new Error(`wrk on port ${port} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(r.stdout);
  const errors = /Socket errors:\s+(.+)/.exec(r.stdout);
  return { requestsPerSecond: Number(rps[1]), non2xx: non2xx === null ? 0 : Number(non2xx[1]), socketErrors: errors === null ? null : (errors[1] as string).trim(), proxyCpu: (cpuAfter - cpuBefore) / elapsed };
}

const FASTCGI_PARAMS = [
  'fastcgi_param QUERY_STRING $query_string;',
  'fastcgi_param REQUEST_METHOD $request_method;',
  'fastcgi_param CONTENT_TYPE $content_type;',
  'fastcgi_param CONTENT_LENGTH $content_length;',
  'fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;',
  'fastcgi_param SCRIPT_NAME $fastcgi_script_name;',
  'fastcgi_param REQUEST_URI $request_uri;',
  'fastcgi_param DOCUMENT_URI $document_uri;',
  'fastcgi_param DOCUMENT_ROOT $document_root;',
  'fastcgi_param SERVER_PROTOCOL $server_protocol;',
  'fastcgi_param REQUEST_SCHEME $scheme;',
  'fastcgi_param GATEWAY_INTERFACE CGI/1.1;',
  'fastcgi_param SERVER_SOFTWARE nginx/$nginx_version;',
  'fastcgi_param REMOTE_ADDR $remote_addr;',
  'fastcgi_param REMOTE_PORT $remote_port;',
  'fastcgi_param SERVER_ADDR $server_addr;',
  'fastcgi_param SERVER_PORT $server_port;',
  'fastcgi_param SERVER_NAME $server_name;',
  'fastcgi_param REDIRECT_STATUS 200;',
].join(' ');

/** nginx with two servers in front of the pools: `plain` (connection per request) and `keep` (keepalive + fastcgi_keep_conn). */
async function startNginxFastcgi(cpu: number, docroot: string, plainBackends: readonly string[], keepBackends: readonly string[], keepalive: number): Promise<Running & { readonly keepPort: number }> {
  const [port, keepPort] = [await freePort(), await freePort()];
  const servers = (backends: readonly string[]): string => backends.map((b) => `server ${b};`).join(' ');
  const running = await launchNginx(cpu, 'nginx-fastcgi', [port, keepPort], [
    `upstream php_plain { ${servers(plainBackends)} }`,
    `upstream php_keep { ${servers(keepBackends)} keepalive ${keepalive}; }`,
    `server { listen 127.0.0.1:${port}; root ${docroot}; location ~ \\.php$ { fastcgi_pass php_plain; ${FASTCGI_PARAMS} } }`,
    `server { listen 127.0.0.1:${keepPort}; root ${docroot}; location ~ \\.php$ { fastcgi_pass php_keep; fastcgi_keep_conn on; ${FASTCGI_PARAMS} } }`,
  ]);
  return { ...running, keepPort };
}

/** Which pools answer `n` requests to /pool.php through `port` (checks the balancing before measuring). */
async function poolsSeen(port: number, n: number): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < n; i++) {
      const body = await new Promise<string>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: '/pool.php', agent }, (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (text += c));
            res.on('end', () => (res.statusCode === 200 ? resolve(text.trim()) : reject(new Error(`/pool.php: HTTP ${res.statusCode} ${text.slice(0, 200)}`))));
          })
          .on('error', reject);
      });
      counts[body] = (counts[body] ?? 0) + 1;
    }
  } finally {
    agent.destroy();
  }
  return counts;
}

interface Target {
  readonly key: string;
  readonly label: string;
  readonly port: number;
  readonly pid: number;
}

export const fastcgiScenario: Scenario = {
  name: 'fastcgi',
  description: 'wrk keep-alive, 64 conns, PHP "hello" on two php-fpm pools: polyproxy fastcgi gateway vs nginx fastcgi_pass',
  needsBuild: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const seconds = envNumber('BENCH_DURATION', 10);
    const warmup = envNumber('BENCH_WARMUP', 1);
    const rounds = Math.max(1, envNumber('BENCH_ROUNDS', 2));
    const children = Math.max(1, envNumber('BENCH_FPM_CHILDREN', 4));
    const loadCpu = clientCpu(ctx);
    const versions = {
      wrk: (await runCommand(WRK, ['--version'])).stdout.split('\n')[0]?.trim() ?? '',
      nginx: await nginxVersion(),
      phpFpm: await phpFpmVersion(),
    };
    const docroot = writePhpDocroot({ 'hello.php': '<?php echo "hello\\n";\n', 'pool.php': "<?php echo $_SERVER['FPM_POOL'] ?? '?';\n" });
    const started: Array<{ stop(): Promise<void> }> = [];
    try {
      progress('fastcgi: starting two php-fpm pools, nginx, polyproxy');
      // Each target gets its own pair of pools (same config): a kept FastCGI connection pins a php-fpm
      // worker even while idle, so one target's idle kept connections would starve the next target.
      const pair = async (tag: string): Promise<string[]> => {
        const pools = await Promise.all([startPhpFpmPool({ name: `alpha`, tag, listen: 'tcp', children, cpu: loadCpu }), startPhpFpmPool({ name: `beta`, tag, listen: 'unix', children, cpu: loadCpu })]);
        started.push(...pools);
        return pools.map((p) => p.endpoint);
      };
      const [plainBackends, keepBackends, polyBackends] = [await pair('nginx'), await pair('nginx-keep'), await pair('polyproxy')];
      const nginx = await startNginxFastcgi(ctx.proxyCpu, docroot.dir, plainBackends, keepBackends, 2 * children);
      started.push(nginx);
      const polyproxy = await startPolyproxyWithConfig(ctx, {
        listeners: [{ name: 'php', protocol: 'fastcgi', host: '127.0.0.1', port: await freePort(), backends: polyBackends, balance: 'round-robin', documentRoot: docroot.dir, maxConnectionsPerBackend: children }],
      });
      started.push(polyproxy);

      const targets: Target[] = [
        { key: 'nginx', label: 'nginx fastcgi_pass', port: nginx.port, pid: nginx.pid },
        { key: 'nginxKeep', label: 'nginx fastcgi_pass keepalive', port: nginx.keepPort, pid: nginx.pid },
        { key: 'polyproxy', label: 'polyproxy fastcgi gateway', port: polyproxy.port, pid: polyproxy.pid },
      ];
      const distribution: Record<string, Record<string, number>> = {};
      for (const t of targets) {
        distribution[t.key] = await poolsSeen(t.port, 10);
        if (Object.keys(distribution[t.key] ?? {}).length !== 2) throw new Error(`${t.label}: requests did not reach both pools: ${JSON.stringify(distribution[t.key])}`);
        progress(`fastcgi: warm-up ${t.label}`);
        const w = await runWrk(ctx, t.port, warmup, t.pid);
        if (w.non2xx > 0) throw new Error(`${t.label}: ${w.non2xx} non-2xx responses in the warm-up`);
      }
      const runs = new Map<string, RunResult[]>(targets.map((t) => [t.key, []]));
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? targets : [...targets].reverse();
        for (const t of order) {
          progress(`fastcgi: round ${round + 1}/${rounds}, ${t.label} (${seconds} s)`);
          runs.get(t.key)?.push(await runWrk(ctx, t.port, seconds, t.pid));
        }
      }
      const best = (key: string): number => max((runs.get(key) ?? []).map((r) => r.requestsPerSecond));
      const nginxBest = Math.max(best('nginx'), best('nginxKeep'));
      const poly = best('polyproxy');
      const rows = targets.map((t) => {
        const rs = runs.get(t.key) ?? [];
        const rps = best(t.key);
        return [
          t.label,
          num(rps),
          rs.map((r) => num(r.requestsPerSecond)).join(', '),
          ratio(rps, best('nginx')),
          ratio(rps, best('nginxKeep')),
          `${Math.round(median(rs.map((r) => r.proxyCpu)) * 100)} %`,
          num(median(rs.map((r) => (r.proxyCpu / r.requestsPerSecond) * 1e6)), 1),
        ];
      });
      const errors = targets.flatMap((t) => (runs.get(t.key) ?? []).filter((r) => r.non2xx > 0 || r.socketErrors !== null).map((r) => ({ ...r, label: t.label })));
      const met = poly >= TARGET * nginxBest;
      return {
        title: 'FastCGI gateway: wrk, 64 connections, PHP "hello" on two php-fpm pools',
        verdict: `Target ${met ? 'met' : 'missed'}: polyproxy ${num(poly)} req/s = ${ratio(poly, nginxBest)} the better nginx (target ≥ ${TARGET.toFixed(2)}×); ${ratio(poly, best('nginx'))} nginx default, ${ratio(poly, best('nginxKeep'))} nginx with keepalive`,
        tables: [{ table: { headers: ['target', 'req/s (best)', 'req/s per run', 'vs nginx', 'vs nginx keepalive', 'proxy CPU', 'proxy CPU µs/req'], rows } }],
        notes: [
          `\`wrk ${wrkArgs(0, seconds).join(' ').replace('127.0.0.1:0', '127.0.0.1:<port>')}\` per target; ${rounds} interleaved round(s) (order reversed every other round) after a ${warmup} s warm-up each; best run.${errors.length > 0 ? ` Errors seen: ${errors.map((e) => `${e.label}: ${e.non2xx} non-2xx, socket ${e.socketErrors ?? 'ok'}`).join('; ')} (wrk's 2 s request timeout; presumably requests that queued in php-fpm's listen backlog behind workers pinned by kept connections).` : ' No non-2xx responses or socket errors.'}`,
          `${versions.wrk}; nginx ${versions.nginx}; ${versions.phpFpm}.`,
          `Backends: for each target its own pair of php-fpm masters, configured alike (a kept FastCGI connection pins a php-fpm worker even while idle, so targets sharing pools would starve each other; \`-n\`: no php.ini, so no OPcache for anyone): \`pm = static\`, ${children} children each, pool alpha on 127.0.0.1:<port> and pool beta on a unix socket, script \`<?php echo "hello\\n";\`. Each target spreads requests round-robin over both pools (checked before measuring: 10 requests to /pool.php → ${Object.entries(distribution)
            .map(([k, v]) => `${k} ${JSON.stringify(v)}`)
            .join(', ')}).`,
          `nginx: \`worker_processes 1\`, \`access_log off\`, Debian's fastcgi_params written out; "nginx fastcgi_pass" opens a FastCGI connection per request (nginx's default); "keepalive" is \`upstream { keepalive ${2 * children}; }\` + \`fastcgi_keep_conn on\`. polyproxy: one worker, \`logLevel: warn\`, fastcgi listener with \`maxConnectionsPerBackend: ${children}\` (kept FCGI_KEEP_CONN connections; a kept connection pins a php-fpm worker, so no more than the pool's children). ${ctx.proxyCpu < 0 ? 'Nothing is pinned.' : `nginx and polyproxy are pinned to CPU ${ctx.proxyCpu}; php-fpm and wrk share CPU ${loadCpu}, so php-fpm is the bottleneck.`} "proxy CPU" is the proxy's user+system CPU (nginx: master + worker) over the run's wall time (100 % = one core); "µs/req" is that CPU per request (medians).`,
        ],
        data: {
          settings: { seconds, warmup, rounds, connections: CONNECTIONS, children, proxyCpu: ctx.proxyCpu, loadCpu },
          versions,
          distribution,
          targets: targets.map((t) => ({ key: t.key, label: t.label, best: best(t.key), runs: runs.get(t.key) })),
          ratios: { polyproxyToBestNginx: poly / nginxBest, polyproxyToNginx: poly / best('nginx'), polyproxyToNginxKeepalive: poly / best('nginxKeep') },
          targetMet: met,
        },
      };
    } finally {
      progress('fastcgi: stopping processes');
      await Promise.all(started.map((r) => r.stop()));
      docroot.remove();
    }
  },
};
