/**
 * Real services for integration tests. Under CI=true a missing service
 * fails the test; elsewhere the test is skipped with the reason printed.
 */
import net from 'node:net';
import pg from 'pg';

export const PG_HOST = process.env.PGHOST_TEST ?? '127.0.0.1';
export const PG_PORT = Number(process.env.PGPORT_TEST ?? 5432);
export const PG_USER = process.env.PGUSER_TEST ?? 'postgres';

/** True when a TCP connection to host:port is accepted. */
export function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Returns null when PostgreSQL is up, else the reason to skip (printed).
 * Under CI=true a missing PostgreSQL throws: CI must not pass by skipping.
 */
export function postgresMissing(): Promise<string | null> {
  return serviceMissing(`PostgreSQL is not reachable on ${PG_HOST}:${PG_PORT}`, () => canConnect(PG_HOST, PG_PORT));
}

/**
 * The rule every real-service test follows: null when `isUp()` says the
 * service answers; otherwise the reason to skip (printed), except under
 * CI=true, where a missing service throws so CI cannot pass by skipping.
 */
export async function serviceMissing(why: string, isUp: () => Promise<boolean>): Promise<string | null> {
  if (await isUp()) return null;
  if (process.env.CI === 'true') throw new Error(`${why} (CI=true: integration tests need it; .ci/run starts it)`);
  process.stderr.write(`skipping: ${why}\n`);
  return why;
}

/** Runs one statement directly against PostgreSQL (not through the proxy). */
export async function pgDirect<T extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, database = 'postgres'): Promise<T[]> {
  const client = new pg.Client({ host: PG_HOST, port: PG_PORT, user: PG_USER, database });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

/** Creates the databases if they do not exist yet. */
export async function ensureDatabases(names: readonly string[]): Promise<void> {
  const existing = new Set((await pgDirect<{ datname: string }>('select datname from pg_database')).map((r) => r.datname));
  for (const name of names) {
    if (existing.has(name)) continue;
    try {
      await pgDirect(`create database "${name}"`);
    } catch (err) {
      if ((err as { code?: string }).code !== '42P04') throw err; // created concurrently
    }
  }
}
