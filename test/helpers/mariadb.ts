/**
 * The real MariaDB for integration tests (root without a password on
 * 127.0.0.1:3306). Under CI=true a missing MariaDB fails the test;
 * elsewhere the test is skipped with the reason printed.
 */
import net from 'node:net';
import mysql from 'mysql2/promise';

export const MY_HOST = process.env.MYHOST_TEST ?? '127.0.0.1';
export const MY_PORT = Number(process.env.MYPORT_TEST ?? 3306);
export const MY_USER = process.env.MYUSER_TEST ?? 'root';

function canConnect(host: string, port: number): Promise<boolean> {
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
 * Returns null when MariaDB is up, else the reason to skip (printed).
 * Under CI=true a missing MariaDB throws: CI must not pass by skipping.
 */
export async function mariadbMissing(): Promise<string | null> {
  if (await canConnect(MY_HOST, MY_PORT)) return null;
  const why = `MariaDB is not reachable on ${MY_HOST}:${MY_PORT}`;
  if (process.env.CI === 'true') throw new Error(`${why} (CI=true: integration tests need it; .ci/run starts it)`);
  process.stderr.write(`skipping: ${why}\n`);
  return why;
}

/** Runs statements directly against MariaDB (not through the proxy) as root. */
export async function mariadbDirect(statements: readonly string[]): Promise<void> {
  const conn = await mysql.createConnection({ host: MY_HOST, port: MY_PORT, user: MY_USER });
  try {
    for (const sql of statements) await conn.query(sql);
  } finally {
    await conn.end();
  }
}
