/**
 * Hostile resolver modules (issue 16, defects 1, 2 and 6; must-show: no
 * process exit from any resolver behaviour, a drain that ends by its
 * deadline).
 *
 * polyproxy with 2 workers, a module resolver (chaos/fixtures/
 * hostile-resolver.ts) whose every resource id misbehaves in its own way,
 * and a well-behaved tenant from the config's routes (the machine's
 * PostgreSQL). Each kind gets 10 concurrent sessions; then the supervisor
 * and both workers must be the same processes, still running, and the good
 * tenant served. Finally: SIGTERM while 20 clients wait on a resolver that
 * never answers (resolver.timeoutMs 5 s) and 4 idle relayed sessions stay
 * open; the process must exit by shutdownTimeoutSeconds (3 s) + 1 s.
 */
import net from 'node:net';
import path from 'node:path';
import { sleep } from '../../bench/lib/net.ts';
import { num } from '../../bench/lib/table.ts';
import { KINDS } from '../fixtures/hostile-resolver.ts';
import { pgOpen, startupMessage } from '../lib/helpers.ts';
import { PG_HOST, PG_PORT, preparePgbench } from '../lib/load.ts';
import { fdBaseline, fdsSettle, metric, startProxy } from '../lib/proxy.ts';
import type { ChaosContext, ChaosReport, ChaosScenario, Check } from '../lib/scenario.ts';
import { figure, must } from '../lib/scenario.ts';

const DRAIN_SECONDS = 3;
const PER_KIND = 10;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A session opened and left open: resolves once the first answer came (the session is then relayed or refused). */
function holdSession(port: number, database: string): Promise<net.Socket> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => socket.write(startupMessage(database)));
    socket.on('error', () => {});
    socket.once('data', () => resolve(socket));
    socket.once('close', () => resolve(socket));
  });
}

export const hostileResolverScenario: ChaosScenario = {
  name: 'hostile-resolver',
  description: 'a resolver module with rejecting/throwing hooks, hostile ttlMs, never-settling thenables and bad Route fields: no exit, drain by its deadline',
  async run(ctx: ChaosContext): Promise<ChaosReport> {
    await preparePgbench();
    const checks: Check[] = [];
    const config = {
      workers: 2,
      shutdownTimeoutSeconds: DRAIN_SECONDS,
      admin: { host: '127.0.0.1', port: 0 },
      security: { allowBackends: ['127.0.0.0/8'] },
      resolver: { module: path.join(ctx.root, 'chaos', 'fixtures', 'hostile-resolver.ts'), timeoutMs: 5000 },
      routes: { pp_chaos: `${PG_HOST}:${PG_PORT}` },
      listeners: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0 }],
    };
    const proxy = await startProxy(ctx, config, { env: { ...process.env, CHAOS_BACKEND: `${PG_HOST}:${PG_PORT}` } });
    const port = proxy.ports.pg as number;
    const pids = [proxy.proc.pid, ...proxy.workerPids];
    const baseline = await fdBaseline(proxy.workerPids);
    const answers: string[] = [];
    const started = Date.now();
    for (const [id, kind] of Object.entries(KINDS)) {
      const results = await Promise.all(Array.from({ length: PER_KIND }, () => pgOpen(port, id, 15_000)));
      const counts = new Map<string, number>();
      for (const r of results) counts.set(r, (counts.get(r) ?? 0) + 1);
      answers.push(`${id} (${kind}): ${[...counts].map(([k, v]) => `${v}× ${k}`).join(', ')}`);
    }
    const kindsMs = Date.now() - started;
    // An unhandled rejection is reported after the microtasks drain: give it a moment.
    await sleep(300);
    const allAlive = pids.every(alive);
    const good = await pgOpen(port, 'pp_chaos');
    const restarts = proxy.logs.filter((l) => l.msg === 'worker died; restarting').length;
    checks.push(must(`${Object.keys(KINDS).length} hostile kinds × ${PER_KIND} sessions: supervisor + 2 workers alive, same pids`, allAlive ? `yes (${(kindsMs / 1000).toFixed(1)} s)` : 'NO', 'yes', allAlive));
    checks.push(must('worker restarts', num(restarts), '0', restarts === 0));
    checks.push(must('well-behaved tenant served afterwards', good, 'ok', good === 'ok'));
    const hookErrors = await metric(proxy.admin as string, 'polyproxy_resolver_hook_errors_total');
    checks.push(figure('resolver hook errors counted (polyproxy_resolver_hook_errors_total)', num(hookErrors)));
    const settled = await fdsSettle(proxy.workerPids, baseline, 20_000);
    checks.push(must('proxy fds after the hostile sessions', `${settled.fds} (baseline ${baseline})`, 'flat', settled.flat));

    // Drain while clients wait on a resolver that never answers and relayed sessions stay open.
    const idle = await Promise.all(Array.from({ length: 4 }, () => holdSession(port, 'pp_chaos')));
    const hung = Array.from({ length: 20 }, () => pgOpen(port, 'hr_thenable', 30_000));
    await sleep(500);
    const termAt = Date.now();
    process.kill(proxy.proc.pid, 'SIGTERM');
    await Promise.race([proxy.proc.exited, sleep((DRAIN_SECONDS + 10) * 1000)]);
    const exitMs = Date.now() - termAt;
    const hungAnswers = await Promise.all(hung);
    for (const s of idle) s.destroy();
    const shutdownAnswers = hungAnswers.filter((a) => a === '57P01').length;
    checks.push(
      must(
        `drain with 20 clients on a never-settling resolver + 4 open sessions (deadline ${DRAIN_SECONDS} s)`,
        proxy.proc.running ? `still running after ${(exitMs / 1000).toFixed(1)} s` : `exit ${proxy.proc.exitCode} after ${(exitMs / 1000).toFixed(1)} s`,
        `exits ≤ ${DRAIN_SECONDS + 1} s`,
        !proxy.proc.running && exitMs <= (DRAIN_SECONDS + 1) * 1000,
      ),
    );
    checks.push(figure('waiting clients answered 57P01 (shutting down) at the deadline', `${shutdownAnswers} of 20 (${[...new Set(hungAnswers)].join(', ')})`));
    await proxy.stop();
    return {
      checks,
      notes: [
        `workers: 2, resolver.timeoutMs 5 s, shutdownTimeoutSeconds ${DRAIN_SECONDS}; the module is chaos/fixtures/hostile-resolver.ts. What each kind's ${PER_KIND} sessions got (ok = the backend answered; a SQLSTATE = the proxy refused with that error): ${answers.join('; ')}.`,
      ],
    };
  },
};
