/** Helper processes the scenarios start (bench/lib scripts and chaos/lib ones), and small client probes. */
import net from 'node:net';
import path from 'node:path';
import { spawnTracked } from '../../bench/lib/process.ts';
import type { Tracked } from '../../bench/lib/process.ts';
import type { ChaosContext } from './scenario.ts';

const CHAOS_LIB = path.dirname(new URL(import.meta.url).pathname);
const BENCH_LIB = path.join(CHAOS_LIB, '..', '..', 'bench', 'lib');

export interface Helper {
  readonly proc: Tracked;
  readonly pid: number;
  readonly ports: readonly number[];
  readonly port: number;
}

/** Starts a script that prints {"type":"ready","port":N[,"ports":[...]]} once listening. */
export async function startHelper(ctx: ChaosContext, name: string, script: string, args: readonly string[] = []): Promise<Helper> {
  const file = script.startsWith('bench:') ? path.join(BENCH_LIB, script.slice(6)) : path.join(CHAOS_LIB, script);
  const proc = spawnTracked(ctx.node, [file, ...args], { name, cwd: ctx.root, stdin: true });
  const line = await proc.waitForOutput(/"type":"ready"/, 15_000);
  const ready = JSON.parse(line) as { port: number; ports?: number[] };
  return { proc, pid: proc.pid, port: ready.port, ports: ready.ports ?? [ready.port] };
}

export function startupMessage(database: string, user = 'postgres'): Buffer {
  const body = Buffer.from(`user\0${user}\0database\0${database}\0\0`);
  const msg = Buffer.alloc(8 + body.length);
  msg.writeInt32BE(msg.length, 0);
  msg.writeInt32BE(196608, 4);
  body.copy(msg, 8);
  return msg;
}

/**
 * One PostgreSQL session opening through `port`: 'ok' when the first
 * message is an authentication request or ParameterStatus, else the
 * SQLSTATE of the ErrorResponse, 'closed' or 'timeout'.
 */
export function pgOpen(port: number, database: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => socket.write(startupMessage(database)));
    let got = Buffer.alloc(0);
    const done = (result: string): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (got.length < 5 || got.length < 1 + got.readInt32BE(1)) return;
      const type = String.fromCharCode(got[0] as number);
      if (type === 'E') done(/C([0-9A-Z]{5})\0/.exec(got.subarray(5).toString('latin1'))?.[1] ?? 'E');
      else done('ok');
    });
    socket.on('error', () => done('closed'));
    socket.on('close', () => done('closed'));
  });
}

/** Sends `ping\n` through a tcp listener and waits for it back: 'ok', 'closed' or 'timeout'. */
export function tcpEcho(port: number, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => socket.write('ping\n'));
    let got = '';
    const done = (result: string): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (s: string) => {
      got += s;
      if (got.includes('ping\n')) done('ok');
    });
    socket.on('error', () => done('closed'));
    socket.on('close', () => done('closed'));
  });
}

/** One HTTP/1.1 GET with `Connection: close` through `port` for `host`: 'ok' for 2xx, else the status or 'closed'/'timeout'. */
export function httpGet(port: number, host: string, pathName = '/', timeoutMs = 5000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => socket.write(`GET ${pathName} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    let got = '';
    const done = (result: string): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    socket.setEncoding('latin1');
    socket.on('data', (s: string) => {
      got += s;
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(got);
      if (m !== null) done(m[1]?.startsWith('2') === true ? 'ok' : (m[1] as string));
    });
    socket.on('error', () => done('closed'));
    socket.on('close', () => done(got === '' ? 'closed' : 'garbled'));
  });
}

/** Least-squares slope of y over x. */
export function slope(points: ReadonlyArray<readonly [number, number]>): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((s, p) => s + p[0], 0) / n;
  const my = points.reduce((s, p) => s + p[1], 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}
