/**
 * The echo backend and connection-rate client of the raw TCP scenarios:
 * the C versions (echo-backend.c, connect-rate.c, built once per bench run
 * with `cc -O2` into a temp dir) when a C compiler is present, else the Node
 * versions (echo-backend.ts, connect-rate.ts).
 */
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pinned } from './machine.ts';
import { removeOnExit, runCommand, spawnTracked } from './process.ts';
import type { ScenarioContext } from './scenario.ts';
import type { Running } from './targets.ts';

const BENCH_LIB = path.dirname(new URL(import.meta.url).pathname);
const CC = ['/usr/bin/cc', '/usr/bin/gcc', '/usr/bin/clang'].find((p) => existsSync(p)) ?? null;

let built: Promise<string | null> | null = null;

/** Directory holding the compiled `echo-backend` and `connect-rate`, or null (no compiler / build failed). */
export function buildNativeHelpers(): Promise<string | null> {
  built ??= (async () => {
    if (CC === null || process.env.BENCH_NATIVE === '0') return null;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'polyproxy-bench-native-'));
    removeOnExit(dir);
    for (const name of ['echo-backend', 'connect-rate']) {
      const r = await runCommand(CC, ['-O2', '-o', path.join(dir, name), path.join(BENCH_LIB, `${name}.c`)], { name: 'cc' });
      if (r.code !== 0) return null;
    }
    return dir;
  })();
  return built;
}

export interface EchoBackend extends Running {
  /** One listening port per target. */
  readonly ports: readonly number[];
  readonly native: boolean;
}

/** Starts the echo backend pinned to `cpu`, listening on `ports` ports (native unless `node` is set). */
export async function startEchoBackend(ctx: ScenarioContext, ports: number, cpu: number, options: { node?: boolean; closeAfterEcho?: boolean } = {}): Promise<EchoBackend> {
  const close = options.closeAfterEcho === true;
  const native = options.node === true ? null : await buildNativeHelpers();
  const [cmd, args] =
    native !== null
      ? pinned(cpu, path.join(native, 'echo-backend'), [String(ports), close ? '1' : '0'])
      : pinned(cpu, ctx.node, [path.join(BENCH_LIB, 'echo-backend.ts'), '--ports', String(ports), ...(close ? ['--close-after-echo'] : [])]);
  const proc = spawnTracked(cmd, args, { name: 'echo-backend', cwd: ctx.root, stdin: true });
  const line = await proc.waitForOutput(/"type":"ready"/, 15_000);
  const ready = JSON.parse(line) as { ports: number[]; port: number };
  return { name: 'echo-backend', port: ready.port, ports: ready.ports, pid: proc.pid, proc, native: native !== null, stop: () => proc.stop('SIGTERM', 5000) };
}

/** Command line of one connection-rate load process. */
export async function connectRateCommand(ctx: ScenarioContext, cpu: number, port: number, concurrency: number, seconds: number, startAt: number, waitEof: boolean): Promise<[string, string[]]> {
  const native = await buildNativeHelpers();
  return native !== null
    ? pinned(cpu, path.join(native, 'connect-rate'), [String(port), String(concurrency), String(seconds), String(startAt), waitEof ? '1' : '0'])
    : pinned(cpu, ctx.node, [path.join(BENCH_LIB, 'connect-rate.ts'), '--port', String(port), '--concurrency', String(concurrency), '--seconds', String(seconds), '--start-at', String(startAt), ...(waitEof ? ['--wait-eof'] : [])]);
}
