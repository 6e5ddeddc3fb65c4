/**
 * The system limits a six-figure connection count runs into (tcp-scale,
 * ws-scale): open files per process, the ephemeral port range (ports per
 * source address towards one destination address and port), the system-wide
 * file table and TIME_WAIT buckets. Read, never changed: the scale scenarios
 * plan around them and say so in their notes.
 */
import { readFileSync } from 'node:fs';

export interface SystemLimits {
  /** Open files per process (soft, hard). */
  readonly openFilesSoft: number;
  readonly openFilesHard: number;
  /** net.ipv4.ip_local_port_range. */
  readonly portLow: number;
  readonly portHigh: number;
  /** fs.file-max (open files, all processes). */
  readonly fileMax: number;
}

function readNumbers(file: string): number[] {
  try {
    return readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
  } catch {
    return [NaN];
  }
}

export function systemLimits(): SystemLimits {
  const limits = readFileSync('/proc/self/limits', 'utf8');
  const files = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
  const asNumber = (s: string | undefined): number => (s === undefined || s === 'unlimited' ? Infinity : Number(s));
  const [portLow = NaN, portHigh = NaN] = readNumbers('/proc/sys/net/ipv4/ip_local_port_range');
  return {
    openFilesSoft: asNumber(files?.[1]),
    openFilesHard: asNumber(files?.[2]),
    portLow,
    portHigh,
    fileMax: readNumbers('/proc/sys/fs/file-max')[0] ?? NaN,
  };
}

/** Ephemeral ports one source address has towards one destination address and port. */
export function ephemeralPorts(l: SystemLimits): number {
  return l.portHigh - l.portLow + 1;
}
