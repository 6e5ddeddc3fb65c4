/**
 * A throwaway PostgreSQL cluster for tests that must reconfigure, stop or
 * kill their server (the shared one on 5432 is trust-only and must not be
 * touched): initdb into a temp dir as the `postgres` OS user, a free
 * port on 127.0.0.1, the unix socket in the temp dir, pg_hba lines and
 * settings chosen by the test, roles with passwords. `stop()` stops it and
 * removes the directory.
 *
 * The superuser `postgres` always connects over the unix socket with
 * trust (`local all all trust` comes first), so `query()` works whatever
 * the TCP lines demand. Primary-side options for a later streaming
 * replica are plain settings and hba lines (`wal_level: 'replica'`,
 * `host replication all 127.0.0.1/32 trust`).
 *
 * Under CI=true a cluster that cannot start is a failure; elsewhere
 * `startPostgresInstance` resolves null after printing why.
 */
import { execFile } from 'node:child_process';
import { chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);
export const PG_BIN = process.env.POLYPROXY_PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface PostgresRole {
  readonly name: string;
  /** Absent: a role without password (only trust lines let it in). */
  readonly password?: string;
  /** How the password is stored (password_encryption while it is set); default the instance's. */
  readonly encryption?: 'scram-sha-256' | 'md5';
  readonly superuser?: boolean;
  /** Also create a database of this name owned by the role. */
  readonly database?: string;
}

export interface PostgresInstanceOptions {
  /**
   * pg_hba.conf lines after `local all all trust`. Default: the superuser by
   * TCP with trust, everyone else with `scram-sha-256`.
   */
  readonly hba?: readonly string[];
  /** password_encryption; default scram-sha-256. */
  readonly passwordEncryption?: 'scram-sha-256' | 'md5';
  /** More postgresql.conf settings (wal_level, max_wal_senders, max_connections...). */
  readonly settings?: Readonly<Record<string, string | number | boolean>>;
  readonly roles?: readonly PostgresRole[];
}

export interface PostgresInstance {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** `host:port`, for routes. */
  readonly endpoint: string;
  /** The unix socket's directory (libpq/pg `host`). */
  readonly socketDir: string;
  readonly dataDir: string;
  readonly dir: string;
  /** Runs SQL as the superuser over the unix socket. */
  query<T extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, values?: unknown[], database?: string): Promise<T[]>;
  createRole(role: PostgresRole): Promise<void>;
  /** Replaces the pg_hba lines (after `local all all trust`) and reloads. */
  setHba(lines: readonly string[]): Promise<void>;
  /** The server's log so far (for failure messages). */
  log(): Promise<string>;
  stop(): Promise<void>;
}

export const DEFAULT_HBA: readonly string[] = ['host all postgres 127.0.0.1/32 trust', 'host all all 127.0.0.1/32 scram-sha-256'];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export function asPostgres(command: string, args: readonly string[]): Promise<{ stdout: string; stderr: string }> {
  return run('runuser', ['-u', 'postgres', '--', path.join(PG_BIN, command), ...args], { timeout: 120_000 });
}

function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

function quoteIdent(text: string): string {
  return `"${text.replaceAll('"', '""')}"`;
}

function conf(value: string | number | boolean): string {
  return typeof value === 'string' ? quoteLiteral(value) : String(value);
}

/** Starts a cluster; null (with the reason printed) when it cannot outside CI; throws under CI=true. */
/**
 * Starts the cluster in `dataDir` on a free port, writing it with
 * `configure` first; a port taken between the pick and the server's bind
 * is retried twice. Resolves the port.
 */
export async function startOnFreePort(dataDir: string, logFile: string, configure: (port: number) => Promise<void>): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    await configure(port);
    try {
      await asPostgres('pg_ctl', ['start', '-D', dataDir, '-l', logFile, '-w', '-t', '60']);
      return port;
    } catch (err) {
      if (attempt >= 2) throw new Error(`${(err as Error).message}\n${await readFile(logFile, 'utf8').catch(() => '')}`, { cause: err });
    }
  }
}

/** One query as the postgres superuser over the cluster's unix socket (a connection per call). */
export function socketQuery(dir: string, port: number) {
  return async <T extends pg.QueryResultRow>(sql: string, values?: unknown[], database = 'postgres'): Promise<T[]> => {
    const client = new pg.Client({ host: dir, port, user: 'postgres', database });
    await client.connect();
    try {
      return (await client.query<T>(sql, values)).rows;
    } finally {
      await client.end();
    }
  };
}

export async function startPostgresInstance(options: PostgresInstanceOptions = {}): Promise<PostgresInstance | null> {
  try {
    return await start(options);
  } catch (err) {
    const why = `cannot start a throwaway PostgreSQL from ${PG_BIN}: ${(err as Error).message}`;
    if (process.env.CI === 'true') throw new Error(`${why} (CI=true: this test needs it)`, { cause: err });
    process.stderr.write(`skipping: ${why}\n`);
    return null;
  }
}

async function start(options: PostgresInstanceOptions): Promise<PostgresInstance> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'polyproxy-pg-'));
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  const { stdout } = await run('id', ['-u', 'postgres']);
  const uid = Number(stdout.trim());
  const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
  await chown(dir, uid, gid);
  let started = false;
  const cleanup = async (): Promise<void> => {
    if (started) await asPostgres('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w']).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await asPostgres('initdb', ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions']);
    const hbaFile = path.join(dataDir, 'pg_hba.conf');
    const writeHba = (lines: readonly string[]): Promise<void> => writeFile(hbaFile, ['local all all trust', ...lines, ''].join('\n'));
    await writeHba(options.hba ?? DEFAULT_HBA);
    const settings: Record<string, string | number | boolean> = {
      listen_addresses: '127.0.0.1',
      unix_socket_directories: dir,
      password_encryption: options.passwordEncryption ?? 'scram-sha-256',
      fsync: false,
      synchronous_commit: false,
      full_page_writes: false,
      shared_buffers: '16MB',
      max_connections: 50,
      ...options.settings,
    };
    const port = await startOnFreePort(dataDir, logFile, (free) => {
      const lines = Object.entries({ ...settings, port: free }).map(([key, value]) => `${key} = ${conf(value)}`);
      return writeFile(path.join(dataDir, 'postgresql.auto.conf'), `${lines.join('\n')}\n`);
    });
    started = true;
    const query = socketQuery(dir, port);
    const createRole = async (role: PostgresRole): Promise<void> => {
      const client = new pg.Client({ host: dir, port, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        if (role.encryption !== undefined) await client.query(`set password_encryption = ${quoteLiteral(role.encryption)}`);
        const password = role.password === undefined ? '' : ` password ${quoteLiteral(role.password)}`;
        await client.query(`create role ${quoteIdent(role.name)} login${role.superuser === true ? ' superuser' : ''}${password}`);
        if (role.database !== undefined) await client.query(`create database ${quoteIdent(role.database)} owner ${quoteIdent(role.name)}`);
      } finally {
        await client.end();
      }
    };
    for (const role of options.roles ?? []) await createRole(role);
    return {
      host: '127.0.0.1',
      port,
      endpoint: `127.0.0.1:${port}`,
      socketDir: dir,
      dataDir,
      dir,
      query,
      createRole,
      setHba: async (lines) => {
        await writeHba(lines);
        // The postmaster reloads asynchronously: wait until it has (its load time moves).
        const [before] = await query<{ t: string }>('select pg_conf_load_time()::text as t');
        await query('select pg_reload_conf()');
        for (let i = 0; i < 500; i++) {
          const [now] = await query<{ t: string }>('select pg_conf_load_time()::text as t');
          if (now?.t !== before?.t) return;
          await new Promise((resolve) => setImmediate(resolve));
        }
        throw new Error('PostgreSQL did not reload its configuration');
      },
      log: () => readFile(logFile, 'utf8'),
      stop: cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
