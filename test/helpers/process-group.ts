/**
 * Starts a command in its own process group, as a shell script's `cmd &` or
 * a process manager would, and waits for polyproxy's "polyproxy ready" log
 * line. The test signals the PID it spawned (npm, a forwarder, unshare —
 * whatever the user started) and then checks nothing is left: not in the
 * group, and not the polyproxy process itself (a forwarder may have put it
 * in a group of its own).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';

export interface Started {
  readonly child: ChildProcess;
  /** pid of the process that logged "polyproxy ready" (polyproxy itself). */
  readonly proxyPid: number;
  readonly port: number;
  readonly output: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export async function startInGroup(command: string, args: readonly string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Started> {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const ready = new Promise<{ pid: number; port: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready in time:\n${output}`)), options.timeoutMs ?? 30000);
    const onText = (text: string): void => {
      output += text;
      for (const line of output.split('\n')) {
        if (!line.includes('"polyproxy ready"')) continue;
        clearTimeout(timer);
        const parsed = JSON.parse(line) as { pid: number; listeners: Array<{ port: number }> };
        resolve({ pid: parsed.pid, port: parsed.listeners[0]?.port ?? 0 });
      }
    };
    child.stdout.setEncoding('utf8').on('data', onText);
    child.stderr.setEncoding('utf8').on('data', onText);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`exited (code ${code}, signal ${signal}) before ready:\n${output}`));
    });
  });
  try {
    const { pid, port } = await ready;
    return { child, proxyPid: pid, port, output: () => output, exited };
  } catch (err) {
    killGroup(child.pid ?? 0);
    throw err;
  } finally {
    // The spawned tree must not hold this test file open if it outlives a
    // failure; the tests' own timers keep the loop up while they wait.
    child.unref();
    (child.stdout as unknown as Socket).unref();
    (child.stderr as unknown as Socket).unref();
  }
}

/**
 * The exit, or a failure carrying the output once `timeoutMs` has passed —
 * a process that never exits must fail the test, not hang the run.
 */
export async function exitedWithin(run: Started, timeoutMs = 30000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running ${timeoutMs} ms after the signal:\n${run.output()}`)), timeoutMs);
  });
  try {
    return await Promise.race([run.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Polls until no process is in the group and `pid` is gone; false at the deadline. */
export async function waitGone(group: number, pids: readonly number[], timeoutMs = 20000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive(-group) && pids.every((pid) => !alive(pid))) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

/**
 * Cleanup after a failed test: SIGKILL to the whole group. Only real pids
 * above 1: kill(0) or kill(-0) would hit the test runner's own group.
 */
export function killGroup(group: number, pids: readonly number[] = []): void {
  for (const target of [-group, ...pids]) {
    if (!Number.isInteger(target) || Math.abs(target) <= 1) continue;
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      // gone
    }
  }
}
