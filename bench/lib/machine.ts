/** CPU pinning (taskset) and a description of the machine for the results. */
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';

const TASKSET = ['/usr/bin/taskset', '/bin/taskset'].find((p) => existsSync(p)) ?? null;

/** CPU the proxy under test and its anchor are pinned to (the last core; -1 = unpinned). */
export function proxyCpu(): number {
  const env = process.env.BENCH_PROXY_CPU;
  if (env !== undefined && env !== '') return Number(env);
  const n = os.availableParallelism();
  return n >= 2 && TASKSET !== null ? n - 1 : -1;
}

/** `command args` wrapped in `taskset -c cpu` (unchanged when cpu < 0 or taskset is missing). */
export function pinned(cpu: number, command: string, args: readonly string[]): [string, string[]] {
  if (cpu < 0 || TASKSET === null) return [command, [...args]];
  return [TASKSET, ['-c', String(cpu), command, ...args]];
}

export interface MachineInfo {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly openFilesLimit: string;
}

export function machineInfo(): MachineInfo {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (match?.[1] !== undefined) cpuModel = match[1].trim();
  } catch {
    // not Linux
  }
  let openFilesLimit = 'unknown';
  try {
    const match = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (match !== null) openFilesLimit = `${match[1]} (hard ${match[2]})`;
  } catch {
    // not Linux
  }
  return {
    cpus: os.availableParallelism(),
    cpuModel,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    openFilesLimit,
  };
}

export function describeMachine(m: MachineInfo): string {
  return `${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.kernel}, Node ${m.node}, open files ${m.openFilesLimit}`;
}
