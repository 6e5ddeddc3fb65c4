/**
 * Runs the real `polyproxy` command (bin/polyproxy.js → dist/) as a user
 * would, and waits for its "polyproxy ready" log line.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'bin/polyproxy.js');

export interface LogLine {
  level: string;
  msg: string;
  pid: number;
  [key: string]: unknown;
}

export interface RunningCli {
  readonly child: ChildProcess;
  readonly logs: LogLine[];
  readonly stderr: () => string;
  readonly ready: { listeners: Array<{ name: string; port: number }>; pids?: number[] };
  port(name: string): number;
  /** Resolves with the first log line matching, waiting if needed. */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<void>;
}

export async function writeConfig(config: unknown): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'polyproxy-test-'));
  const file = path.join(dir, 'polyproxy.yaml');
  await writeFile(file, stringify(config));
  return file;
}

/** `wrap`: a command that execs polyproxy, e.g. `['prlimit', '--nofile=200:200']` (the child's pid stays polyproxy's). */
export async function startCli(args: string[], timeoutMs = 20000, wrap: readonly string[] = []): Promise<RunningCli> {
  const argv = [...wrap, process.execPath, BIN, ...args];
  const child = spawn(argv[0] as string, argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  let stderr = '';
  let buffered = '';
  const waiters: Array<{ predicate: (line: LogLine) => boolean; resolve: (line: LogLine) => void }> = [];
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (text: string) => {
    buffered += text;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const raw = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let line: LogLine;
      try {
        line = JSON.parse(raw) as LogLine;
      } catch {
        continue;
      }
      logs.push(line);
      for (let i = waiters.length - 1; i >= 0; i--) {
        const waiter = waiters[i] as (typeof waiters)[number];
        if (waiter.predicate(line)) {
          waiters.splice(i, 1);
          waiter.resolve(line);
        }
      }
    }
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => {
    stderr += text;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

  const waitForLog = (predicate: (line: LogLine) => boolean, ms = timeoutMs): Promise<LogLine> => {
    const found = logs.find(predicate);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for a log line; stderr: ${stderr}\nlogs: ${JSON.stringify(logs.slice(-5))}`)), ms);
      const waiter = {
        predicate,
        resolve: (line: LogLine) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      waiters.push(waiter);
      void exited.then(({ code }) => {
        clearTimeout(timer);
        if (waiters.includes(waiter)) reject(new Error(`polyproxy exited (code ${code}) before the expected log line; stderr: ${stderr}`));
      });
    });
  };

  let readyLine: LogLine;
  try {
    readyLine = await waitForLog((line) => line.msg === 'polyproxy ready');
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  const ready = readyLine as unknown as RunningCli['ready'];
  return {
    child,
    logs,
    stderr: () => stderr,
    ready,
    port(name: string) {
      const listener = ready.listeners.find((l) => l.name === name);
      if (listener === undefined) throw new Error(`no listener named ${name}`);
      return listener.port;
    },
    waitForLog,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
      await exited;
      clearTimeout(timer);
    },
  };
}
