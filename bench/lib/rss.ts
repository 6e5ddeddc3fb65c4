/** Resident memory of a process, from /proc/<pid>/status. */
import { readFileSync, readdirSync } from 'node:fs';
import { sleep } from './net.ts';

/** VmRSS in KiB. */
export function readRssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (match === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]);
}

export interface StableOptions {
  /** Time between samples. */
  readonly intervalMs?: number;
  /** Samples in a row that must stay within `toleranceKb` of each other. */
  readonly samples?: number;
  readonly toleranceKb?: number;
  readonly maxWaitMs?: number;
}

/**
 * Samples RSS until `samples` consecutive readings lie within `toleranceKb`
 * (or `maxWaitMs` passes); returns the last reading and whether it settled.
 * Given several pids (a supervisor and its workers), the reading is their
 * sum and the default tolerance is 256 KB per process.
 */
export async function waitForStableRss(pid: number | readonly number[], options: StableOptions = {}): Promise<{ rssKb: number; stable: boolean; waitedMs: number }> {
  const pids = typeof pid === 'number' ? [pid] : pid;
  const intervalMs = options.intervalMs ?? 500;
  const samples = options.samples ?? 4;
  const toleranceKb = options.toleranceKb ?? 256 * pids.length;
  const maxWaitMs = options.maxWaitMs ?? 15_000;
  const start = Date.now();
  const window: number[] = [];
  while (true) {
    window.push(pids.reduce((sum, p) => sum + readRssKb(p), 0));
    if (window.length > samples) window.shift();
    if (window.length === samples && Math.max(...window) - Math.min(...window) <= toleranceKb) {
      return { rssKb: window[window.length - 1] as number, stable: true, waitedMs: Date.now() - start };
    }
    if (Date.now() - start >= maxWaitMs) return { rssKb: window[window.length - 1] as number, stable: false, waitedMs: Date.now() - start };
    await sleep(intervalMs);
  }
}

/** User + system CPU seconds a process has used so far (/proc/<pid>/stat; USER_HZ = 100). */
export function readCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): utime is field 14, stime field 15.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU (user + system, seconds) of `pid` and its live descendants (a supervisor and its workers). */
export function readTreeCpuSeconds(pid: number): number {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid);
      if (list === undefined) children.set(ppid, [Number(entry)]);
      else list.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  let total = 0;
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop() as number;
    try {
      total += readCpuSeconds(p);
    } catch {
      continue;
    }
    for (const c of children.get(p) ?? []) stack.push(c);
  }
  return total;
}
