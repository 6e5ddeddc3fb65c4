/**
 * Half-dead backends in balanced routes (issue 16, defect 5; must-show: the
 * breaker opens within 1 s or 5 failures for blackhole and reset backends).
 *
 * For each protocol (tcp, http, postgres) and each fault, a route balanced
 * over [good, bad] where bad is a backend process of its own:
 *
 * - sigkill: a live backend killed with SIGKILL (connects refused);
 * - sigstop: a live backend frozen with SIGSTOP (the kernel still accepts
 *   into its backlog; nothing answers);
 * - blackhole: accepts, never answers (chaos/lib/bad-backend.ts);
 * - reset: accepts and resets at once.
 *
 * Two client loops open sessions (tcp: an echo; http: GET with Connection:
 * close; postgres: a StartupMessage, answered = any non-error message) from
 * the moment of the fault until the bad endpoint's breaker is open (admin
 * /api/stats), counting the sessions that failed; then 10 more sessions,
 * which must all succeed (traffic moved). Passive health only sees what
 * happens after connect through the deadlines set here: tcp
 * firstResponseTimeoutMs 1000, http backendTimeoutMs 1000, postgres
 * firstResponseTimeoutMs 1000; health is the default (failureThreshold 3,
 * TCP probes every 2 s).
 */
import { sleep } from '../../bench/lib/net.ts';
import { num } from '../../bench/lib/table.ts';
import { httpGet, pgOpen, startHelper, tcpEcho } from '../lib/helpers.ts';
import type { Helper } from '../lib/helpers.ts';
import { endpointStates, fdBaseline, fdsSettle, startProxy } from '../lib/proxy.ts';
import type { Proxy } from '../lib/proxy.ts';
import type { ChaosContext, ChaosReport, ChaosScenario, Check } from '../lib/scenario.ts';
import { figure, must } from '../lib/scenario.ts';

const FAULTS = ['sigkill', 'sigstop', 'blackhole', 'reset'] as const;
type Fault = (typeof FAULTS)[number];
const PROTOCOLS = ['tcp', 'http', 'postgres'] as const;
type Protocol = (typeof PROTOCOLS)[number];
const OPEN_WAIT_MS = 15_000;

interface Combo {
  readonly protocol: Protocol;
  readonly fault: Fault;
  /** The bad endpoint's port. */
  readonly badPort: number;
  /** The victim process for sigkill / sigstop. */
  readonly victim: Helper | null;
}

function session(proxy: Proxy, c: Combo): Promise<string> {
  switch (c.protocol) {
    case 'tcp':
      return tcpEcho(proxy.ports[`tcp-${c.fault}`] as number);
    case 'http':
      return httpGet(proxy.ports.web as number, `${c.fault}.test`, '/download?bytes=3');
    case 'postgres':
      return pgOpen(proxy.ports.pg as number, `pp_${c.fault}`);
  }
}

export const backendFaultsScenario: ChaosScenario = {
  name: 'backend-faults',
  description: 'backend SIGKILL, SIGSTOP, blackhole and reset in balanced tcp/http/postgres routes: errors until the breaker opens',
  async run(ctx: ChaosContext): Promise<ChaosReport> {
    const checks: Check[] = [];
    const good = {
      tcp: await startHelper(ctx, 'echo-good', 'bench:echo-backend.ts'),
      http: await startHelper(ctx, 'http-good', 'bench:http-sink.ts'),
      postgres: await startHelper(ctx, 'pg-good', 'bench:pg-backend-process.ts', ['--name', 'good']),
    };
    const victimScript: Record<Protocol, string> = { tcp: 'bench:echo-backend.ts', http: 'bench:http-sink.ts', postgres: 'bench:pg-backend-process.ts' };
    const blackhole = await startHelper(ctx, 'blackhole', 'bad-backend.ts', ['--mode', 'blackhole', '--ports', '3']);
    const reset = await startHelper(ctx, 'reset', 'bad-backend.ts', ['--mode', 'reset', '--ports', '3']);
    const combos: Combo[] = [];
    for (const [i, protocol] of PROTOCOLS.entries()) {
      for (const fault of FAULTS) {
        if (fault === 'blackhole' || fault === 'reset') {
          combos.push({ protocol, fault, badPort: (fault === 'blackhole' ? blackhole : reset).ports[i] as number, victim: null });
        } else {
          const victim = await startHelper(ctx, `${protocol}-${fault}`, victimScript[protocol], protocol === 'postgres' ? ['--name', 'victim'] : []);
          combos.push({ protocol, fault, badPort: victim.port, victim });
        }
      }
    }
    const pair = (p: Protocol, c: Combo): string[] => [`127.0.0.1:${good[p].port}`, `127.0.0.1:${c.badPort}`];
    const routes: Record<string, string[]> = {};
    for (const c of combos) {
      if (c.protocol === 'http') routes[`${c.fault}.test`] = pair('http', c);
      if (c.protocol === 'postgres') routes[`pp_${c.fault}`] = pair('postgres', c);
    }
    const proxy = await startProxy(ctx, {
      admin: { host: '127.0.0.1', port: 0 },
      security: { allowPrivateBackends: true },
      routes,
      listeners: [
        { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0, firstResponseTimeoutMs: 1000 },
        { name: 'web', protocol: 'http', host: '127.0.0.1', port: 0, backendTimeoutMs: 1000, pool: { idleTimeoutMs: 2000 } },
        ...combos
          .filter((c) => c.protocol === 'tcp')
          .map((c) => ({ name: `tcp-${c.fault}`, protocol: 'tcp', host: '127.0.0.1', port: 0, backend: pair('tcp', c), firstResponseTimeoutMs: 1000 })),
      ],
    });
    const admin = proxy.admin as string;
    const notes: string[] = [];
    try {
      // Warm-up on the live victims (sigkill / sigstop): both endpoints serve.
      for (const c of combos.filter((x) => x.victim !== null)) for (let i = 0; i < 4; i++) await session(proxy, c);
      const baseline = await fdBaseline(proxy.workerPids);
      for (const c of combos) {
        const bad = `127.0.0.1:${c.badPort}`;
        const t0 = Date.now();
        if (c.fault === 'sigkill') process.kill(c.victim?.pid as number, 'SIGKILL');
        if (c.fault === 'sigstop') process.kill(c.victim?.pid as number, 'SIGSTOP');
        let openAt = 0;
        const watcher = (async () => {
          while (openAt === 0 && Date.now() - t0 < OPEN_WAIT_MS) {
            if ((await endpointStates(admin)).get(bad) === 'open') openAt = Date.now();
            else await sleep(25);
          }
        })();
        let failures = 0;
        let sessions = 0;
        const loop = async (): Promise<void> => {
          while (openAt === 0 && Date.now() - t0 < OPEN_WAIT_MS) {
            const r = await session(proxy, c);
            // A session that ended after the breaker opened still counts: it was sent to the bad backend before.
            sessions++;
            if (r !== 'ok') failures++;
          }
        };
        await Promise.all([loop(), loop(), watcher]);
        let after = 0;
        for (let i = 0; i < 10; i++) if ((await session(proxy, c)) !== 'ok') after++;
        const openMs = openAt === 0 ? null : openAt - t0;
        const label = `${c.protocol} ${c.fault}`;
        const figureText = `${openMs === null ? 'not open' : `open after ${num(openMs)} ms`}, ${failures} failed of ${sessions}; then ${after} of 10 failed`;
        if (c.fault === 'blackhole' || c.fault === 'reset') {
          checks.push(must(`${label}: breaker`, figureText, '≤ 1 s or ≤ 5 failures; then 0', openMs !== null && (openMs <= 1000 || failures <= 5) && after === 0));
        } else {
          checks.push(must(`${label}: breaker`, figureText, 'opens; then 0', openMs !== null && after === 0));
        }
        if (c.fault === 'sigstop') process.kill(c.victim?.pid as number, 'SIGCONT');
      }
      const settled = await fdsSettle(proxy.workerPids, baseline, 20_000);
      checks.push(must('proxy fds after the faults', `${settled.fds} (baseline ${baseline})`, 'flat', settled.flat));
      checks.push(must('proxy still running', proxy.proc.running ? 'yes' : 'no', 'yes', proxy.proc.running));
      notes.push(
        'Backends: one good process per protocol (bench/lib echo-backend, http-sink, and the embedded PostgreSQL wire server pg-backend-process — the machine\'s PostgreSQL is shared and may not be killed or stopped), one victim process per protocol and fault for SIGKILL/SIGSTOP, chaos/lib/bad-backend.ts for blackhole/reset. "failed" counts sessions of two client loops from the fault to the breaker opening (a session in flight at that moment is counted when it ends); "then" is 10 sessions after it opened.',
      );
      checks.push(figure('deadlines feeding passive health', 'tcp firstResponseTimeoutMs 1000, http backendTimeoutMs 1000, postgres firstResponseTimeoutMs 1000; failureThreshold 3'));
    } finally {
      for (const c of combos) if (c.fault === 'sigstop' && c.victim !== null && c.victim.proc.running) process.kill(c.victim.pid, 'SIGCONT');
      await proxy.stop();
    }
    return { checks, notes };
  },
};
