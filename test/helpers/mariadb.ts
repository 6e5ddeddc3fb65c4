/**
 * The real MariaDB for integration tests (root without a password on
 * 127.0.0.1:3306). Under CI=true a missing MariaDB fails the test;
 * elsewhere the test is skipped with the reason printed.
 */
import mysql from 'mysql2/promise';
import { canConnect, serviceMissing } from './services.ts';

export const MY_HOST = process.env.MYHOST_TEST ?? '127.0.0.1';
export const MY_PORT = Number(process.env.MYPORT_TEST ?? 3306);
export const MY_USER = process.env.MYUSER_TEST ?? 'root';

/**
 * Returns null when MariaDB is up, else the reason to skip (printed).
 * Under CI=true a missing MariaDB throws: CI must not pass by skipping.
 */
export function mariadbMissing(): Promise<string | null> {
  return serviceMissing(`MariaDB is not reachable on ${MY_HOST}:${MY_PORT}`, () => canConnect(MY_HOST, MY_PORT));
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
