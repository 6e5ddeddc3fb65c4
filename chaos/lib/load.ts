/**
 * The real load generators the campaign drives through the proxy: pgbench
 * (PostgreSQL's own) and wrk, with their reports parsed into the figures
 * the must-shows need (failed transactions, failed requests).
 */
import { runChecked, runCommand } from '../../bench/lib/process.ts';

export const PG_HOST = '127.0.0.1';
export const PG_PORT = 5432;
export const CHAOS_DB = 'pp_chaos';

async function psql(database: string, sql: string): Promise<{ ok: boolean; out: string }> {
  const r = await runCommand('psql', ['-h', PG_HOST, '-p', String(PG_PORT), '-U', 'postgres', '-d', database, '-tAXc', sql], { name: 'psql' });
  return { ok: r.code === 0, out: r.stdout.trim() };
}

/** Creates pp_chaos with `pgbench -i -s 1` unless it is there. */
export async function preparePgbench(): Promise<void> {
  const exists = await psql('postgres', `select 1 from pg_database where datname = '${CHAOS_DB}'`);
  if (!exists.ok) throw new Error(`cannot reach PostgreSQL on ${PG_HOST}:${PG_PORT} as postgres`);
  if (exists.out !== '1') await runChecked('psql', ['-h', PG_HOST, '-U', 'postgres', '-d', 'postgres', '-qc', `create database ${CHAOS_DB}`]);
  const branches = await psql(CHAOS_DB, 'select count(*) from pgbench_branches');
  if (branches.ok && branches.out === '1') return;
  await runChecked('pgbench', ['-i', '-q', '-s', '1', '-h', PG_HOST, '-p', String(PG_PORT), '-U', 'postgres', CHAOS_DB], { name: 'pgbench -i' });
}

export interface PgbenchResult {
  readonly exitCode: number | null;
  readonly transactions: number;
  /** pgbench's "number of failed transactions" plus clients that aborted (their transactions never ran). */
  readonly failed: number;
  readonly abortedClients: number;
  readonly tps: number;
  readonly output: string;
}

/** `pgbench -S` (select-only) through `port` for `seconds`, `clients` connections held for the whole run. */
export async function pgbench(port: number, seconds: number, clients = 8, selectOnly = true): Promise<PgbenchResult> {
  const args = [...(selectOnly ? ['-S'] : []), '-n', '-c', String(clients), '-j', '2', '-T', String(seconds), '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', CHAOS_DB];
  const r = await runCommand('pgbench', args, { name: 'pgbench' });
  const out = `${r.stdout}\n${r.stderr}`;
  const transactions = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? 0);
  const failedTx = Number(/number of failed transactions: (\d+)/.exec(out)?.[1] ?? 0);
  const aborted = (out.match(/client \d+ aborted/g) ?? []).length;
  const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1] ?? 0);
  return { exitCode: r.code, transactions, failed: failedTx + aborted, abortedClients: aborted, tps, output: out };
}

export interface WrkResult {
  readonly requests: number;
  readonly non2xx: number;
  readonly connectErrors: number;
  /** read + write + timeout socket errors and non-2xx/3xx answers: requests that failed. */
  readonly failed: number;
  readonly rps: number;
  readonly output: string;
}

/** `wrk -t1 -c<connections> -d<seconds>s` against `url` (Host header `host`). */
export async function wrk(url: string, seconds: number, connections = 32, host?: string): Promise<WrkResult> {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '5s', ...(host === undefined ? [] : ['-H', `Host: ${host}`]), url];
  const r = await runCommand('wrk', args, { name: 'wrk' });
  const out = r.stdout;
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const connectErrors = Number(errors?.[1] ?? 0);
  const socketFailures = errors === null ? 0 : Number(errors[2]) + Number(errors[3]) + Number(errors[4]);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  if (r.code !== 0) throw new Error(`wrk failed (exit ${r.code}): ${r.stderr}${out}`);
  return { requests, non2xx, connectErrors, failed: non2xx + socketFailures, rps, output: out };
}
