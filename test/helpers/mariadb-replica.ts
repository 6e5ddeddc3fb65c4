/**
 * A throwaway MariaDB primary with a replica, for the read/write split
 * tests (the shared MariaDB on 3306 is never reconfigured): two `mariadbd`
 * processes as the `mysql` OS user, each with its own temp datadir
 * (`mariadb-install-db`), unix socket, free port on 127.0.0.1 and
 * server_id; the primary writes a binlog (ROW), the replica follows it by
 * GTID (`CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos`, `START SLAVE`).
 * root has no password over the unix socket (what `query()` uses); TCP
 * accounts are created by the test (`createUser`, run on the primary and
 * replicated).
 *
 * Under CI=true a pair that cannot start is a failure; elsewhere
 * `startMariadbReplicaPair` resolves null after printing why.
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chown, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';

const run = promisify(execFile);
const MARIADBD = process.env.POLYPROXY_MARIADBD ?? '/usr/sbin/mariadbd';
const INSTALL_DB = process.env.POLYPROXY_MARIADB_INSTALL_DB ?? 'mariadb-install-db';
const REPL_USER = 'pp_repl';
const REPL_PASSWORD = 'pp-repl-secret';

export interface MariadbInstance {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** `host:port`, for routes. */
  readonly endpoint: string;
  readonly serverId: number;
  readonly socket: string;
  /** Runs SQL as root over the unix socket. */
  query<T = mysql.RowDataPacket>(sql: string, values?: unknown[]): Promise<T[]>;
  /** The server's error log so far. */
  log(): Promise<string>;
  /** Stops the server (SIGTERM, waits for it to exit). */
  stop(): Promise<void>;
}

export interface MariadbReplicaPair {
  readonly primary: MariadbInstance;
  readonly replica: MariadbInstance;
  /** Creates `user`@'%' with `password` (mysql_native_password) and all privileges on `database`, on the primary (it replicates). */
  createUser(user: string, password: string, database: string): Promise<void>;
  /** Resolves once the replica has applied everything the primary has written so far. */
  waitReplicated(timeoutMs?: number): Promise<void>;
  /** SHOW SLAVE STATUS on the replica. */
  replicaStatus(): Promise<{ ioRunning: string; sqlRunning: string; secondsBehind: number | null }>;
  /** Stops both servers and removes their directories. */
  stop(): Promise<void>;
}

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

/** Starts a primary and its replica; null (with the reason printed) when it cannot outside CI; throws under CI=true. */
export async function startMariadbReplicaPair(): Promise<MariadbReplicaPair | null> {
  const started: MariadbInstance[] = [];
  const dirs: string[] = [];
  try {
    const [primary, replica] = await Promise.all([startInstance(1, true, started, dirs), startInstance(2, false, started, dirs)]);
    await primary.query(`CREATE USER '${REPL_USER}'@'%' IDENTIFIED BY '${REPL_PASSWORD}'`);
    await primary.query(`GRANT REPLICATION SLAVE ON *.* TO '${REPL_USER}'@'%'`);
    await replica.query(
      `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${primary.port}, MASTER_USER='${REPL_USER}', MASTER_PASSWORD='${REPL_PASSWORD}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1`,
    );
    await replica.query('START SLAVE');
    const pair: MariadbReplicaPair = {
      primary,
      replica,
      async createUser(user, password, database) {
        await primary.query(`CREATE DATABASE IF NOT EXISTS \`${database}\``);
        await primary.query(`CREATE USER IF NOT EXISTS '${user}'@'%' IDENTIFIED BY '${password}'`);
        await primary.query(`GRANT ALL ON \`${database}\`.* TO '${user}'@'%'`);
        await pair.waitReplicated();
      },
      async waitReplicated(timeoutMs = 20_000) {
        const [{ pos }] = (await primary.query('SELECT @@gtid_binlog_pos AS pos')) as [{ pos: string }];
        const until = Date.now() + timeoutMs;
        for (;;) {
          const [{ ok }] = (await replica.query('SELECT MASTER_GTID_WAIT(?, 1) AS ok', [pos])) as [{ ok: number }];
          if (Number(ok) === 0) return;
          if (Date.now() > until) throw new Error(`the replica did not reach the primary's GTID ${pos} within ${timeoutMs} ms: ${JSON.stringify(await pair.replicaStatus())}`);
        }
      },
      async replicaStatus() {
        const rows = (await replica.query('SHOW SLAVE STATUS')) as Array<Record<string, unknown>>;
        const row = rows[0] ?? {};
        const behind = row.Seconds_Behind_Master;
        return { ioRunning: String(row.Slave_IO_Running), sqlRunning: String(row.Slave_SQL_Running), secondsBehind: behind === null || behind === undefined ? null : Number(behind) };
      },
      async stop() {
        await Promise.all(started.map((s) => s.stop()));
        await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 }).catch(() => undefined)));
      },
    };
    return pair;
  } catch (err) {
    await Promise.all(started.map((s) => s.stop().catch(() => undefined)));
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 }).catch(() => undefined)));
    const why = `cannot start a throwaway MariaDB primary and replica (${MARIADBD}): ${(err as Error).message}`;
    if (process.env.CI === 'true') throw new Error(`${why} (CI=true: this test needs it)`, { cause: err });
    process.stderr.write(`skipping: ${why}\n`);
    return null;
  }
}

async function startInstance(serverId: number, primary: boolean, started: MariadbInstance[], dirs: string[]): Promise<MariadbInstance> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'polyproxy-mariadb-'));
  dirs.push(dir);
  const dataDir = path.join(dir, 'data');
  await mkdir(dataDir);
  const uid = Number((await run('id', ['-u', 'mysql'])).stdout.trim());
  const gid = Number((await run('id', ['-g', 'mysql'])).stdout.trim());
  await chown(dir, uid, gid);
  await chown(dataDir, uid, gid);
  await run(INSTALL_DB, ['--no-defaults', `--datadir=${dataDir}`, '--user=mysql', '--auth-root-authentication-method=socket', '--skip-test-db'], { timeout: 120_000 });
  const port = await freePort();
  const socket = path.join(dir, 'mysqld.sock');
  const logFile = path.join(dir, 'error.log');
  const args = [
    '--no-defaults',
    `--datadir=${dataDir}`,
    '--user=mysql',
    `--port=${port}`,
    '--bind-address=127.0.0.1',
    `--socket=${socket}`,
    `--pid-file=${path.join(dir, 'mysqld.pid')}`,
    `--log-error=${logFile}`,
    `--server-id=${serverId}`,
    '--skip-name-resolve',
    '--innodb-buffer-pool-size=16M',
    '--max-connections=200',
    ...(primary ? [`--log-bin=${path.join(dir, 'binlog')}`, '--binlog-format=ROW'] : ['--read-only=0', `--relay-log=${path.join(dir, 'relay')}`]),
  ];
  const child: ChildProcess = spawn(MARIADBD, args, { stdio: 'ignore' });
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const query = async <T>(sql: string, values?: unknown[]): Promise<T[]> => {
    const conn = await mysql.createConnection({ socketPath: socket, user: 'root' });
    try {
      const [rows] = await conn.query(sql, values);
      return rows as T[];
    } finally {
      await conn.end();
    }
  };
  const instance: MariadbInstance = {
    host: '127.0.0.1',
    port,
    endpoint: `127.0.0.1:${port}`,
    serverId,
    socket,
    query,
    log: () => readFile(logFile, 'utf8').catch(() => ''),
    async stop() {
      if (!exited) child.kill('SIGTERM');
      await exit;
    },
  };
  started.push(instance);
  // Ready when root gets in over the socket.
  const until = Date.now() + 60_000;
  for (;;) {
    if (exited) throw new Error(`mariadbd exited during startup: ${(await instance.log()).slice(-2000)}`);
    try {
      await query('SELECT 1');
      return instance;
    } catch {
      if (Date.now() > until) throw new Error(`mariadbd did not accept connections within 60 s: ${(await instance.log()).slice(-2000)}`);
      await delay(100);
    }
  }
}
