/**
 * Drain and reload under load (issue 16, must-show: 0 failed sessions).
 *
 * polyproxy (one worker) in front of the machine's PostgreSQL and an nginx,
 * loaded by pgbench -S (8 clients) and wrk (32 keep-alive connections):
 *
 * 1. reload: SIGHUP × CHAOS_RELOADS (default 20), one every 400 ms while
 *    the load runs, each with a changed route table (a route added and
 *    removed), so every reload swaps a new snapshot. pgbench's failed
 *    transactions and wrk's failed requests (socket errors of any kind,
 *    non-2xx) must be 0.
 * 2. drain: SIGTERM two seconds into a fresh load run (pgbench, and 32
 *    keep-alive HTTP connections of chaos/lib/http-load.ts, which tells a
 *    refused reconnect from a failed request). Sessions open at that
 *    moment finish: pgbench's connections run to their end, HTTP keep-alive
 *    connections get `Connection: close` on their next response. Failed
 *    transactions and failed requests must be 0; connects refused after
 *    the listener closed are expected (nothing listens any more) and shown
 *    apart. The process must exit 0 before shutdownTimeoutSeconds.
 */
import { startNginx } from '../../bench/lib/nginx.ts';
import { sleep } from '../../bench/lib/net.ts';
import { envNumber } from '../../bench/lib/env.ts';
import { num } from '../../bench/lib/table.ts';
import { httpLoad } from '../lib/http-load.ts';
import { PG_HOST, PG_PORT, preparePgbench, pgbench, wrk } from '../lib/load.ts';
import { fdBaseline, fdsSettle, startProxy } from '../lib/proxy.ts';
import type { ChaosContext, ChaosReport, ChaosScenario, Check } from '../lib/scenario.ts';
import { figure, must } from '../lib/scenario.ts';

const LOAD_SECONDS = 8;
const DRAIN_SECONDS = 20;

export const drainReloadScenario: ChaosScenario = {
  name: 'drain-reload',
  description: 'SIGHUP ×20 and SIGTERM under pgbench + wrk load: 0 failed transactions and requests',
  async run(ctx: ChaosContext): Promise<ChaosReport> {
    const reloads = envNumber('CHAOS_RELOADS', 20);
    await preparePgbench();
    const nginx = await startNginx(-1, 'nginx');
    const checks: Check[] = [];
    const notes: string[] = [];
    try {
      const config = (extra: Record<string, string>): Record<string, unknown> => ({
        shutdownTimeoutSeconds: DRAIN_SECONDS,
        security: { allowPrivateBackends: true },
        routes: { pp_chaos: `${PG_HOST}:${PG_PORT}`, 'web.test': `127.0.0.1:${nginx.port}`, ...extra },
        listeners: [
          { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0 },
          // Pooled backend connections close 2 s after their last use, so the fds check sees the baseline again.
          { name: 'web', protocol: 'http', host: '127.0.0.1', port: 0, pool: { idleTimeoutMs: 2000 } },
        ],
      });

      // 1. reload under load
      const proxy = await startProxy(ctx, config({}));
      const pids = proxy.workerPids;
      const baseline = await fdBaseline(pids);
      const reloadLoad = Promise.all([pgbench(proxy.ports.pg as number, LOAD_SECONDS), wrk(`http://127.0.0.1:${proxy.ports.web}/`, LOAD_SECONDS, 32, 'web.test')]);
      await sleep(1000);
      let sent = 0;
      for (let i = 0; i < reloads; i++) {
        proxy.rewrite(config(i % 2 === 0 ? { [`reload-${i}.test`]: `127.0.0.1:${nginx.port}` } : {}));
        process.kill(proxy.proc.pid, 'SIGHUP');
        sent++;
        await sleep(Math.max(50, Math.floor(((LOAD_SECONDS - 2) * 1000) / reloads)));
      }
      const [pgR, wrkR] = await reloadLoad;
      // At level warn "configuration reloaded" is not logged; a refused or failed reload is (error).
      const refusals = proxy.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('reload'));
      const refused = refusals.length;
      if (refused > 0) notes.push(`Reload refusals: ${refusals.map((l) => `${String(l.msg)} ${String(l.err)}`).join('; ')}`);
      checks.push(must(`reload: pgbench failed transactions (SIGHUP ×${sent})`, `${num(pgR.failed)} of ${num(pgR.transactions)}`, '0', pgR.failed === 0 && pgR.exitCode === 0));
      checks.push(must('reload: wrk failed requests (incl. connect errors)', `${num(wrkR.failed + wrkR.connectErrors)} of ${num(wrkR.requests)}`, '0', wrkR.failed + wrkR.connectErrors === 0));
      checks.push(must('reload: reloads refused or failed (log)', num(refused), '0', refused === 0));
      checks.push(must('reload: proxy still running', proxy.proc.running ? 'yes' : `no (exit ${proxy.proc.exitCode})`, 'yes', proxy.proc.running));
      const settled = await fdsSettle(pids, baseline);
      checks.push(must('reload: proxy fds after the load', `${settled.fds} (baseline ${baseline})`, 'flat', settled.flat));
      notes.push(`Reload: ${sent} SIGHUPs ${Math.floor(((LOAD_SECONDS - 2) * 1000) / reloads)} ms apart during ${LOAD_SECONDS} s of \`pgbench -S -c 8 -j 2\` (${num(pgR.tps)} TPS) and \`wrk -t1 -c32\` (${num(wrkR.rps)} req/s) through one worker; every reload rewrote the route table (a route added, then removed). Each was applied (no "reload refused" / "reload failed" line).`);

      // 2. drain under load
      const drainLoad = Promise.all([pgbench(proxy.ports.pg as number, LOAD_SECONDS), httpLoad(`http://127.0.0.1:${proxy.ports.web}/`, 'web.test', LOAD_SECONDS, 32)]);
      await sleep(2000);
      const termAt = Date.now();
      process.kill(proxy.proc.pid, 'SIGTERM');
      await proxy.proc.exited;
      const drainMs = Date.now() - termAt;
      const [pgD, httpD] = await drainLoad;
      await proxy.stop();
      checks.push(must('drain: pgbench failed transactions', `${num(pgD.failed)} of ${num(pgD.transactions)}`, '0', pgD.failed === 0 && pgD.exitCode === 0));
      checks.push(
        must('drain: HTTP keep-alive requests failed (sent, then cut or non-2xx)', `${num(httpD.failed)} of ${num(httpD.ok + httpD.failed)}${httpD.reasons.length > 0 ? ` (${httpD.reasons.join('; ')})` : ''}`, '0', httpD.failed === 0),
      );
      checks.push(figure('drain: HTTP connects refused once the listener closed (nothing sent)', num(httpD.refused)));
      checks.push(must('drain: exit code, time SIGTERM → exit', `${proxy.proc.exitCode} in ${(drainMs / 1000).toFixed(1)} s`, `0, < ${DRAIN_SECONDS} s deadline`, proxy.proc.exitCode === 0 && drainMs < DRAIN_SECONDS * 1000));
      notes.push(`Drain: SIGTERM 2 s into another ${LOAD_SECONDS} s run of the same load (shutdownTimeoutSeconds ${DRAIN_SECONDS}); pgbench's 8 connections were open at SIGTERM and ran to the end of their -T; the HTTP load here is chaos/lib/http-load.ts (32 undici keep-alive connections, no retries), not wrk: wrk counts a reconnect refused by the closed listener as a read error, the same as a request cut off, so it cannot tell whether the drain failed a request. Its connections were retired with \`Connection: close\`; their reconnects were refused (expected: nothing was sent on them).`);
    } finally {
      await nginx.stop();
    }
    return { checks, notes };
  },
};
