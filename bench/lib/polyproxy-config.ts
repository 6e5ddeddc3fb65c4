/**
 * polyproxy started from a generated config file (for listeners that need
 * routes: http, smtp), one worker, pinned to the proxy CPU. Waits for the
 * "polyproxy ready" line, which names every bound listener and its port.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pinned } from './machine.ts';
import { removeOnExit, spawnTracked } from './process.ts';
import type { ScenarioContext } from './scenario.ts';
import type { Running } from './targets.ts';

/**
 * `config` is written as JSON (valid YAML); `workers: 1` and `logLevel: warn`
 * are filled in unless given (many workers on a busy machine may need a
 * longer `readyTimeoutMs`). `nodeFlags` go to Node before the script (the
 * workers inherit them). The listener ports must be set by the caller
 * (e.g. from freePort()); the returned port is the first listener's.
 */
export async function startPolyproxyWithConfig(ctx: ScenarioContext, config: Record<string, unknown>, name = 'polyproxy', readyTimeoutMs = 15_000, nodeFlags: readonly string[] = []): Promise<Running & { readonly ports: Record<string, number> }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'polyproxy-bench-config-'));
  const cleanup = removeOnExit(dir);
  const file = path.join(dir, 'polyproxy.json');
  writeFileSync(file, `${JSON.stringify({ workers: 1, logLevel: 'warn', ...config }, null, 2)}\n`);
  const extra = (process.env.BENCH_POLYPROXY_NODE_FLAGS ?? '').split(/\s+/).filter((s) => s !== '');
  // Several workers are meant to spread over the cores: not pinned.
  const workers = typeof config.workers === 'number' ? config.workers : 1;
  const [cmd, args] = pinned(workers > 1 ? -1 : ctx.proxyCpu, ctx.node, [...nodeFlags, ...extra, path.join(ctx.root, 'bin', 'polyproxy.js'), '--config', file]);
  const proc = spawnTracked(cmd, args, { name, cwd: ctx.root });
  const stop = async (): Promise<void> => {
    await proc.stop('SIGTERM', 10_000);
    rmSync(dir, { recursive: true, force: true });
    cleanup.forget();
  };
  try {
    const line = await proc.waitForOutput(/polyproxy ready/, readyTimeoutMs);
    const ready = JSON.parse(line) as { listeners: Array<{ name?: string; port: number }> };
    const ports = Object.fromEntries(ready.listeners.map((l, i) => [l.name ?? String(i), l.port]));
    const first = ready.listeners[0];
    if (first === undefined) throw new Error(`${name}: no listener in the ready line: ${line}`);
    return { name, port: first.port, ports, pid: proc.pid, proc, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
