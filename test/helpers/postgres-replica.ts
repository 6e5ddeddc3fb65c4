/**
 * A throwaway PostgreSQL primary with a real streaming hot standby, for the
 * read/write split tests (issue 17): the primary is a postgres-instance
 * cluster with `wal_level = replica` and a replication hba line; the
 * standby is `pg_basebackup -R -c fast -X stream` of it into its own temp
 * directory, started on another free port. `startPostgresReplica` resolves
 * once the standby is in recovery and shows a row written on the primary.
 *
 * Replay can be paused (`pg_wal_replay_pause()`) to make the standby lag,
 * and the standby stopped on its own to test failover of reads. `stop()`
 * stops both and removes both directories.
 *
 * Under CI=true a pair that cannot start is a failure; elsewhere
 * `startPostgresReplica` resolves null after printing why.
 */
import { execFile } from 'node:child_process';
import { chown, mkdtemp, readFile, rm, appendFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type pg from 'pg';
import { PG_BIN, asPostgres, socketQuery, startOnFreePort, startPostgresInstance, type PostgresInstance, type PostgresInstanceOptions } from './postgres-instance.ts';

const run = promisify(execFile);

export interface ReplicaLag {
  /** `now() - pg_last_xact_replay_timestamp()` in ms; null before the standby replayed any commit. */
  readonly lagMs: number | null;
  /** `pg_last_wal_replay_lsn()` as text (`0/3000060`). */
  readonly replayLsn: string | null;
}

export interface PostgresStandby {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly endpoint: string;
  readonly socketDir: string;
  readonly dataDir: string;
  /** Runs SQL as the superuser over the standby's unix socket. */
  query<T extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, values?: unknown[], database?: string): Promise<T[]>;
  /** `pg_wal_replay_pause()`, resolved once the pause state is `paused`. */
  pauseReplay(): Promise<void>;
  resumeReplay(): Promise<void>;
  lag(): Promise<ReplicaLag>;
  /** Waits until the standby replayed past `lsn` (default: the primary's current WAL LSN). */
  waitForReplay(lsn?: string, timeoutMs?: number): Promise<void>;
  log(): Promise<string>;
  /** Stops the standby (fast shutdown); its directory stays until the pair's `stop()`. */
  stop(): Promise<void>;
  readonly running: boolean;
}

export interface PostgresReplicaPair {
  readonly primary: PostgresInstance;
  readonly standby: PostgresStandby;
  /** Stops both servers and removes their directories. */
  stop(): Promise<void>;
}

export const REPLICATION_HBA: readonly string[] = ['host replication all 127.0.0.1/32 trust', 'host all postgres 127.0.0.1/32 trust', 'host all all 127.0.0.1/32 scram-sha-256'];

/** Polls `check` (about every 20 ms) until it is true; throws `what` after timeoutMs. */
export async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Starts a primary (options as for postgres-instance; wal_level, senders and
 * the replication hba line are added) and a streaming standby of it.
 */
export async function startPostgresReplica(options: PostgresInstanceOptions = {}): Promise<PostgresReplicaPair | null> {
  const primary = await startPostgresInstance({
    ...options,
    hba: ['host replication all 127.0.0.1/32 trust', ...(options.hba ?? REPLICATION_HBA.slice(1))],
    settings: { wal_level: 'replica', max_wal_senders: 5, max_replication_slots: 5, hot_standby: true, ...options.settings },
  });
  if (primary === null) return null;
  try {
    return await startStandby(primary);
  } catch (err) {
    await primary.stop();
    const why = `cannot start a PostgreSQL streaming standby from ${PG_BIN}: ${(err as Error).message}`;
    if (process.env.CI === 'true') throw new Error(`${why} (CI=true: this test needs it)`, { cause: err });
    process.stderr.write(`skipping: ${why}\n`);
    return null;
  }
}

async function startStandby(primary: PostgresInstance): Promise<PostgresReplicaPair> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'polyproxy-pg-standby-'));
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
  const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
  await chown(dir, uid, gid);
  let running = false;
  const stopServer = async (): Promise<void> => {
    if (!running) return;
    running = false;
    await asPostgres('pg_ctl', ['stop', '-D', dataDir, '-m', 'fast', '-w']).catch(() => asPostgres('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w']).catch(() => undefined));
  };
  const cleanup = async (): Promise<void> => {
    await stopServer();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    // -R writes primary_conninfo and standby.signal; -X stream brings the WAL the backup needs.
    await asPostgres('pg_basebackup', ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', dataDir, '-R', '-c', 'fast', '-X', 'stream', '--no-sync']);
    const port = await startOnFreePort(dataDir, logFile, (free) =>
      // The copied postgresql.auto.conf holds the primary's port and socket dir: later lines win.
      appendFile(path.join(dataDir, 'postgresql.auto.conf'), `port = ${free}\nunix_socket_directories = '${dir}'\nhot_standby = on\nhot_standby_feedback = on\n`),
    );
    running = true;
    const query = socketQuery(dir, port);
    const waitForReplay = async (lsn?: string, timeoutMs = 30_000): Promise<void> => {
      const target = lsn ?? (await primary.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn'))[0]?.lsn;
      await waitUntil(`the standby to replay past ${target}`, async () => (await query<{ ok: boolean | null }>('select pg_last_wal_replay_lsn() >= $1::pg_lsn as ok', [target]))[0]?.ok === true, timeoutMs);
    };
    const standby: PostgresStandby = {
      host: '127.0.0.1',
      port,
      endpoint: `127.0.0.1:${port}`,
      socketDir: dir,
      dataDir,
      query,
      pauseReplay: async () => {
        await query('select pg_wal_replay_pause()');
        await waitUntil('replay to pause', async () => (await query<{ s: string }>('select pg_get_wal_replay_pause_state() as s'))[0]?.s === 'paused');
      },
      resumeReplay: async () => {
        await query('select pg_wal_replay_resume()');
      },
      lag: async () => {
        const [row] = await query<{ lag_ms: number | null; lsn: string | null }>(
          'select (extract(epoch from now() - pg_last_xact_replay_timestamp()) * 1000)::float8 as lag_ms, pg_last_wal_replay_lsn()::text as lsn',
        );
        return { lagMs: row?.lag_ms ?? null, replayLsn: row?.lsn ?? null };
      },
      waitForReplay,
      log: () => readFile(logFile, 'utf8'),
      stop: stopServer,
      get running() {
        return running;
      },
    };
    await waitUntil('the standby to be in recovery', async () => (await query<{ r: boolean }>('select pg_is_in_recovery() as r'))[0]?.r === true);
    // Replication works end to end: a row committed on the primary shows on the standby.
    const marker = `ready-${process.pid}-${Date.now()}`;
    await primary.query('create table if not exists polyproxy_replica_ready (marker text)');
    await primary.query('insert into polyproxy_replica_ready values ($1)', [marker]);
    await waitUntil('a primary row on the standby', async () => {
      const rows = await query<{ n: number }>("select count(*)::int as n from pg_class where relname = 'polyproxy_replica_ready'");
      if (rows[0]?.n !== 1) return false;
      return (await query<{ n: number }>('select count(*)::int as n from polyproxy_replica_ready where marker = $1', [marker]))[0]?.n === 1;
    });
    return {
      primary,
      standby,
      stop: async () => {
        await cleanup();
        await primary.stop();
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
