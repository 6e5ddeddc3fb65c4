/**
 * php-fpm's status page (`pm.status_path`), parsed from its default text
 * output with `?full` or from `?json&full`. Field meanings follow php-fpm's
 * documentation (sapi/fpm/www.conf.in, "pm.status_path"): durations in
 * microseconds, CPU in percent, memory in bytes.
 */
import { FastCgiError } from './errors.ts';

export interface FpmProcessStatus {
  readonly pid: number;
  /** Idle, Running, Reading headers, Finishing, Ending... */
  readonly state: string;
  readonly startTime: Date | null;
  /** Seconds since the process started. */
  readonly startSince: number;
  /** Requests this process served. */
  readonly requests: number;
  /** Duration of the current or last request, µs. */
  readonly requestDurationUs: number;
  readonly requestMethod: string;
  readonly requestUri: string;
  readonly contentLength: number;
  readonly user: string;
  readonly script: string;
  /** CPU of the last request, percent (0 while one runs). */
  readonly lastRequestCpu: number;
  /** Peak memory of the last request, bytes (0 while one runs). */
  readonly lastRequestMemory: number;
}

export interface FpmStatus {
  readonly pool: string;
  /** static, dynamic or ondemand. */
  readonly processManager: string;
  readonly startTime: Date | null;
  /** Seconds since the pool started. */
  readonly startSince: number;
  readonly acceptedConnections: number;
  /** Connections waiting for a free process now. */
  readonly listenQueue: number;
  /** Most connections ever waiting. */
  readonly maxListenQueue: number;
  /** Size of the socket's listen queue (backlog). */
  readonly listenQueueLength: number;
  readonly idleProcesses: number;
  readonly activeProcesses: number;
  readonly totalProcesses: number;
  readonly maxActiveProcesses: number;
  /** Times the process manager could not start a process because pm.max_children was reached. */
  readonly maxChildrenReached: number;
  readonly slowRequests: number;
  /** php-fpm 8.3+: peak memory of the pool's processes, bytes; null when not reported. */
  readonly memoryPeak: number | null;
  /** Only with `full`. */
  readonly processes: readonly FpmProcessStatus[];
  /** Every field as sent, by php-fpm's own name (pool-level fields). */
  readonly raw: Readonly<Record<string, string>>;
}

type Fields = Map<string, string>;

const MONTHS: Record<string, number> = { Jan: 0, Feb: 1, Mar: 2, Apr: 3, May: 4, Jun: 5, Jul: 6, Aug: 7, Sep: 8, Oct: 9, Nov: 10, Dec: 11 };

/** `22/Nov/2026:07:00:12 +0000` (text) or Unix seconds (JSON). */
export function parseFpmTime(value: string): Date | null {
  if (/^\d+$/.test(value)) return new Date(Number(value) * 1000);
  const m = /^(\d{2})\/(\w{3})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$/.exec(value);
  if (m === null) return null;
  const month = MONTHS[m[2] as string];
  if (month === undefined) return null;
  const utc = Date.UTC(Number(m[3]), month, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]));
  const offset = (Number(m[8]) * 60 + Number(m[9])) * 60000 * (m[7] === '-' ? -1 : 1);
  return new Date(utc - offset);
}

function need(fields: Fields, name: string): string {
  const v = fields.get(name);
  if (v === undefined) throw new FastCgiError('FCGI_ERR_PROTOCOL', `php-fpm status: missing field "${name}"`);
  return v;
}

function int(fields: Fields, name: string): number {
  const v = need(fields, name);
  const n = Number(v);
  if (!Number.isFinite(n)) throw new FastCgiError('FCGI_ERR_PROTOCOL', `php-fpm status: "${name}" is not a number: ${JSON.stringify(v)}`);
  return n;
}

function processFrom(fields: Fields): FpmProcessStatus {
  return {
    pid: int(fields, 'pid'),
    state: need(fields, 'state'),
    startTime: parseFpmTime(need(fields, 'start time')),
    startSince: int(fields, 'start since'),
    requests: int(fields, 'requests'),
    requestDurationUs: int(fields, 'request duration'),
    requestMethod: need(fields, 'request method'),
    requestUri: need(fields, 'request uri'),
    contentLength: int(fields, 'content length'),
    user: fields.get('user') ?? '-',
    script: fields.get('script') ?? '-',
    lastRequestCpu: int(fields, 'last request cpu'),
    lastRequestMemory: int(fields, 'last request memory'),
  };
}

function statusFrom(fields: Fields, processes: FpmProcessStatus[]): FpmStatus {
  const memoryPeak = fields.get('memory peak');
  return {
    pool: need(fields, 'pool'),
    processManager: need(fields, 'process manager'),
    startTime: parseFpmTime(need(fields, 'start time')),
    startSince: int(fields, 'start since'),
    acceptedConnections: int(fields, 'accepted conn'),
    listenQueue: int(fields, 'listen queue'),
    maxListenQueue: int(fields, 'max listen queue'),
    listenQueueLength: int(fields, 'listen queue len'),
    idleProcesses: int(fields, 'idle processes'),
    activeProcesses: int(fields, 'active processes'),
    totalProcesses: int(fields, 'total processes'),
    maxActiveProcesses: int(fields, 'max active processes'),
    maxChildrenReached: int(fields, 'max children reached'),
    slowRequests: int(fields, 'slow requests'),
    memoryPeak: memoryPeak === undefined || !Number.isFinite(Number(memoryPeak)) ? null : Number(memoryPeak),
    processes,
    raw: Object.fromEntries(fields),
  };
}

/** Text blocks of `name: value` lines; php-fpm separates processes with a line of asterisks. */
function parseText(text: string): FpmStatus {
  const blocks: Fields[] = [new Map()];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.length === 0) continue;
    if (/^\*+$/.test(line)) {
      blocks.push(new Map());
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new FastCgiError('FCGI_ERR_PROTOCOL', `php-fpm status: unexpected line ${JSON.stringify(line.slice(0, 80))}`);
    // Names are lower-cased: the text page says "request URI", the JSON page "request uri".
    (blocks[blocks.length - 1] as Fields).set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  const [pool, ...processes] = blocks as [Fields, ...Fields[]];
  return statusFrom(pool, processes.filter((p) => p.size > 0).map(processFrom));
}

function toFields(object: Record<string, unknown>): Fields {
  const fields: Fields = new Map();
  for (const [k, v] of Object.entries(object)) if (typeof v === 'string' || typeof v === 'number') fields.set(k.toLowerCase(), String(v));
  return fields;
}

function parseJson(text: string): FpmStatus {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new FastCgiError('FCGI_ERR_PROTOCOL', `php-fpm status: invalid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new FastCgiError('FCGI_ERR_PROTOCOL', 'php-fpm status: the JSON is not an object');
  const object = value as Record<string, unknown>;
  const processes = Array.isArray(object.processes) ? object.processes : [];
  return statusFrom(
    toFields(object),
    processes.map((p) => {
      if (p === null || typeof p !== 'object') throw new FastCgiError('FCGI_ERR_PROTOCOL', 'php-fpm status: a process entry is not an object');
      return processFrom(toFields(p as Record<string, unknown>));
    }),
  );
}

/** Parses the status page body (text or JSON). Throws FCGI_ERR_PROTOCOL naming a missing or bad field. */
export function parseFpmStatus(body: string): FpmStatus {
  const text = body.trim();
  if (text.length === 0) throw new FastCgiError('FCGI_ERR_PROTOCOL', 'php-fpm status: empty page');
  return text.startsWith('{') ? parseJson(text) : parseText(text);
}
