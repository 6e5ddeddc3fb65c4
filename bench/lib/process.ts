/**
 * Child processes for benchmarks: every child runs in its own process group
 * (detached), is tracked, and is killed as a group when it is stopped, when
 * the bench exits, and on SIGINT / SIGTERM — nothing is left running.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createInterface } from 'node:readline';

export interface SpawnOptions {
  /** Label used in messages. */
  readonly name: string;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Keep a pipe to the child's stdin (default: ignore). */
  readonly stdin?: boolean;
  /** Copy the child's stderr to ours (default: capture only). */
  readonly inheritStderr?: boolean;
}

type LineWaiter = { stream: 'stdout' | 'stderr'; test: (line: string) => boolean; resolve: (line: string) => void; reject: (err: Error) => void; timer: NodeJS.Timeout };

export class Tracked {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Last lines of output, for error messages. */
  readonly tail: string[] = [];
  readonly stdoutLines: string[] = [];
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  readonly exited: Promise<void>;
  #waiters: LineWaiter[] = [];
  #lineListeners: Array<(line: string) => void> = [];

  constructor(name: string, child: ChildProcess) {
    this.name = name;
    this.child = child;
    if (child.pid === undefined) throw new Error(`${name}: failed to start`);
    this.pid = child.pid;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        live.delete(this);
        for (const w of this.#waiters) {
          clearTimeout(w.timer);
          w.reject(new Error(`${name} exited (code ${code}, signal ${signal}) before the expected output\n${this.tail.join('\n')}`));
        }
        this.#waiters = [];
        resolve();
      });
    });
    child.once('error', (err) => this.#remember(`[spawn error] ${err.message}`));
    if (child.stdout !== null) {
      createInterface({ input: child.stdout }).on('line', (line) => {
        this.#remember(line);
        this.stdoutLines.push(line);
        if (this.stdoutLines.length > 1000) this.stdoutLines.shift();
        for (const fn of this.#lineListeners) fn(line);
        this.#match('stdout', line);
      });
    }
    if (child.stderr !== null) {
      createInterface({ input: child.stderr }).on('line', (line) => {
        this.#remember(line);
        this.#match('stderr', line);
      });
    }
  }

  #match(stream: 'stdout' | 'stderr', line: string): void {
    this.#waiters = this.#waiters.filter((w) => {
      if (w.stream !== stream || !w.test(line)) return true;
      clearTimeout(w.timer);
      w.resolve(line);
      return false;
    });
  }

  get running(): boolean {
    return this.exitCode === null && this.exitSignal === null;
  }

  #remember(line: string): void {
    this.tail.push(line);
    if (this.tail.length > 40) this.tail.shift();
  }

  onLine(fn: (line: string) => void): void {
    this.#lineListeners.push(fn);
  }

  /** Resolves with the first stdout (or stderr) line from now on that passes `test`. */
  waitForLine(test: RegExp | ((line: string) => boolean), timeoutMs: number, stream: 'stdout' | 'stderr' = 'stdout'): Promise<string> {
    const fn = typeof test === 'function' ? test : (line: string) => test.test(line);
    if (!this.running) return Promise.reject(new Error(`${this.name} is not running\n${this.tail.join('\n')}`));
    return new Promise((resolve, reject) => {
      const waiter: LineWaiter = {
        stream,
        test: fn,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          reject(new Error(`${this.name}: no expected output within ${timeoutMs} ms\n${this.tail.join('\n')}`));
        }, timeoutMs),
      };
      this.#waiters.push(waiter);
    });
  }

  /** Like waitForLine, but an stdout line already printed counts too (ready lines). */
  waitForOutput(test: RegExp, timeoutMs: number): Promise<string> {
    const seen = this.stdoutLines.find((line) => test.test(line));
    return seen !== undefined ? Promise.resolve(seen) : this.waitForLine(test, timeoutMs);
  }

  send(line: string): void {
    this.child.stdin?.write(`${line}\n`);
  }

  /** Signals the whole process group; SIGKILL after `timeoutMs` if it has not exited. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<void> {
    if (this.running) {
      killGroup(this.pid, signal);
      const timer = setTimeout(() => killGroup(this.pid, 'SIGKILL'), timeoutMs);
      await this.exited;
      clearTimeout(timer);
    }
    // Anything the leader left behind in its group goes too.
    killGroup(this.pid, 'SIGKILL');
  }
}

const live = new Set<Tracked>();
const tempDirs = new Set<string>();

/** Removes `dir` when the bench exits (also after Ctrl-C); `forget` when removed earlier. */
export function removeOnExit(dir: string): { forget(): void } {
  installCleanup();
  tempDirs.add(dir);
  return { forget: () => tempDirs.delete(dir) };
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: already gone.
  }
}

/** Starts a command in its own process group and tracks it for cleanup. */
export function spawnTracked(command: string, args: readonly string[], options: SpawnOptions): Tracked {
  installCleanup();
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    detached: true,
    stdio: [options.stdin === true ? 'pipe' : 'ignore', 'pipe', options.inheritStderr === true ? 'inherit' : 'pipe'],
  });
  const tracked = new Tracked(options.name, child);
  live.add(tracked);
  return tracked;
}

export interface CommandResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion (tracked, so Ctrl-C stops it too). */
export function runCommand(command: string, args: readonly string[], options: { name?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CommandResult> {
  installCleanup();
  const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const tracked = new Tracked(options.name ?? command, child);
  live.add(tracked);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Like runCommand, but throws with the output when the exit code is not 0. */
export async function runChecked(command: string, args: readonly string[], options: { name?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CommandResult> {
  const result = await runCommand(command, args, options);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} failed (exit ${result.code}):\n${result.stderr}${result.stdout}`);
  return result;
}

/** Stops every tracked child (used between scenarios and at the end). */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((t) => t.stop('SIGTERM', 5000)));
}

let installed = false;
let interrupted = false;

function installCleanup(): void {
  if (installed) return;
  installed = true;
  process.on('exit', () => {
    for (const t of live) killGroup(t.pid, 'SIGKILL');
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (interrupted) {
        for (const t of live) killGroup(t.pid, 'SIGKILL');
        process.exit(130);
      }
      interrupted = true;
      process.stderr.write(`\n[bench] ${signal}: stopping ${live.size} child process(es)\n`);
      const hardStop = setTimeout(() => process.exit(130), 8000);
      hardStop.unref();
      void stopAll().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    });
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`[bench] uncaught: ${err.stack ?? err.message}\n`);
    for (const t of live) killGroup(t.pid, 'SIGKILL');
    process.exit(1);
  });
}

export function isInterrupted(): boolean {
  return interrupted;
}
