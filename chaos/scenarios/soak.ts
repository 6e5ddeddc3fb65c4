/**
 * A soak (issue 16: flat memory, flat fds): CHAOS_SOAK_SECONDS (default 120)
 * of pgbench -S (8 clients, the machine's PostgreSQL) and wrk (32 keep-alive
 * connections, nginx) through one polyproxy worker, plus a new PostgreSQL
 * session every 200 ms (connection churn). RSS and descriptors are sampled
 * every 5 s; their least-squares slopes over the second half (after warm-up)
 * are reported; after the load the descriptors must come back to the
 * baseline.
 */
import { startNginx } from '../../bench/lib/nginx.ts';
import { sleep } from '../../bench/lib/net.ts';
import { envNumber } from '../../bench/lib/env.ts';
import { readRssKb } from '../../bench/lib/rss.ts';
import { num } from '../../bench/lib/table.ts';
import { pgOpen, slope } from '../lib/helpers.ts';
import { PG_HOST, PG_PORT, preparePgbench, pgbench, wrk } from '../lib/load.ts';
import { fdBaseline, fdTotal, fdsSettle, startProxy } from '../lib/proxy.ts';
import type { ChaosContext, ChaosReport, ChaosScenario, Check } from '../lib/scenario.ts';
import { figure, must } from '../lib/scenario.ts';

const SAMPLE_MS = 5000;

export const soakScenario: ChaosScenario = {
  name: 'soak',
  description: 'pgbench + wrk + session churn for CHAOS_SOAK_SECONDS (default 120): RSS and fd slopes',
  async run(ctx: ChaosContext): Promise<ChaosReport> {
    const seconds = envNumber('CHAOS_SOAK_SECONDS', 120);
    await preparePgbench();
    const nginx = await startNginx(-1, 'nginx');
    const checks: Check[] = [];
    const proxy = await startProxy(ctx, {
      security: { allowPrivateBackends: true },
      routes: { pp_chaos: `${PG_HOST}:${PG_PORT}`, 'web.test': `127.0.0.1:${nginx.port}` },
      listeners: [
        { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0 },
        { name: 'web', protocol: 'http', host: '127.0.0.1', port: 0, pool: { idleTimeoutMs: 2000 } },
      ],
    });
    const pid = proxy.workerPids[0] as number;
    try {
      const baseline = await fdBaseline(proxy.workerPids);
      const rssStart = readRssKb(pid);
      const started = Date.now();
      const load = Promise.all([pgbench(proxy.ports.pg as number, seconds), wrk(`http://127.0.0.1:${proxy.ports.web}/`, seconds, 32, 'web.test')]);
      let churn = 0;
      let churnFailed = 0;
      const churner = (async () => {
        while (Date.now() - started < seconds * 1000) {
          churn++;
          if ((await pgOpen(proxy.ports.pg as number, 'pp_chaos')) !== 'ok') churnFailed++;
          await sleep(200);
        }
      })();
      const samples: Array<{ t: number; rss: number; fds: number }> = [];
      while (Date.now() - started < seconds * 1000) {
        await sleep(SAMPLE_MS);
        samples.push({ t: (Date.now() - started) / 1000, rss: readRssKb(pid), fds: fdTotal(proxy.workerPids) });
      }
      const [pg, web] = await load;
      await churner;
      const half = samples.filter((s) => s.t >= seconds / 2);
      const rssSlope = slope(half.map((s) => [s.t / 60, s.rss / 1024] as const));
      const fdSlope = slope(half.map((s) => [s.t / 60, s.fds] as const));
      const rssMax = Math.max(...samples.map((s) => s.rss));
      checks.push(figure(`load over ${seconds} s`, `pgbench ${num(pg.transactions)} tx (${num(pg.tps)} TPS), wrk ${num(web.requests)} req (${num(web.rps)}/s), ${num(churn)} new sessions`));
      checks.push(must('failed transactions / requests / new sessions', `${pg.failed} / ${web.failed + web.connectErrors} / ${churnFailed}`, '0 / 0 / 0', pg.failed === 0 && web.failed + web.connectErrors === 0 && churnFailed === 0));
      checks.push(figure('RSS: start → max → end; slope over the second half', `${num(rssStart / 1024, 1)} → ${num(rssMax / 1024, 1)} → ${num((samples.at(-1)?.rss ?? 0) / 1024, 1)} MB; ${rssSlope >= 0 ? '+' : ''}${rssSlope.toFixed(2)} MB/min`));
      checks.push(figure('fds under load: slope over the second half', `${fdSlope >= 0 ? '+' : ''}${fdSlope.toFixed(2)} fds/min (samples ${half.map((s) => s.fds).join(', ')})`));
      const settled = await fdsSettle(proxy.workerPids, baseline, 20_000);
      checks.push(must('proxy fds after the soak', `${settled.fds} (baseline ${baseline})`, 'flat', settled.flat));
      checks.push(must('proxy still running', proxy.proc.running ? 'yes' : 'no', 'yes', proxy.proc.running));
      return {
        checks,
        notes: [
          `RSS (VmRSS of the worker) and descriptors (/proc/<pid>/fd) sampled every ${SAMPLE_MS / 1000} s; slopes are least-squares fits over the samples from ${seconds / 2} s on (the first half includes warm-up: JIT, pools, buffers). Readings, MB: ${samples.map((s) => num(s.rss / 1024, 1)).join(', ')}.`,
        ],
      };
    } finally {
      await proxy.stop();
      await nginx.stop();
    }
  },
};
