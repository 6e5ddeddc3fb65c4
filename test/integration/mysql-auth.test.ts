/**
 * Proxy-side MySQL authentication (listener `auth`): clients log in to the
 * proxy with the configured users (mysql_native_password, and
 * caching_sha2_password with its RSA exchange without TLS, cleartext over
 * TLS, and its fast path), then the proxy logs in to the real MariaDB as
 * `backendUser`. Driven by mysql2, the mariadb npm driver and the mariadb CLI.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import mariadb from 'mariadb';
import { createRequire } from 'node:module';
import mysql from 'mysql2/promise';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { makeTestPki } from '../helpers/certs.ts';
import type { TestPki } from '../helpers/certs.ts';
import { MY_HOST, MY_PORT, mariadbDirect, mariadbMissing } from '../helpers/mariadb.ts';

const run = promisify(execFile);
/** mysql2's auth plugin factories (exported by the package, not typed). */
const authPlugins = createRequire(import.meta.url)('mysql2').authPlugins as {
  caching_sha2_password: (options: { onServerPublicKey?: (key: Buffer) => void }) => mysql.AuthPlugin;
};
const BACKEND_USER = 'pp_myauth_backend';
const BACKEND_PASSWORD = 'pp-backend-secret';
const DB = 'pp_myauth_db';
const APP = 'app';
const APP_PASSWORD = 'app-secret';

let proxy: RunningCli | undefined;
let pki: TestPki | undefined;
let skip: string | null = null;

before(async () => {
  skip = await mariadbMissing();
  if (skip !== null) return;
  await mariadbDirect([
    `create database if not exists ${DB}`,
    `create user if not exists '${BACKEND_USER}'@'%' identified by '${BACKEND_PASSWORD}'`,
    `alter user '${BACKEND_USER}'@'%' identified by '${BACKEND_PASSWORD}'`,
    `grant all on ${DB}.* to '${BACKEND_USER}'@'%'`,
  ]);
  pki = await makeTestPki();
  const auth = (plugin: string) => ({ plugin, users: { [APP]: { password: APP_PASSWORD }, other: { password: 'other-secret' }, cli: { password: 'cli-secret' } }, backendUser: { user: BACKEND_USER, password: BACKEND_PASSWORD } });
  const file = await writeConfig({
    workers: 1,
    security: { allowBackends: ['127.0.0.0/8'] },
    routes: { [DB]: `${MY_HOST}:${MY_PORT}` },
    listeners: [
      { name: 'native', protocol: 'mysql', host: '127.0.0.1', port: 0, auth: auth('mysql_native_password') },
      { name: 'sha2', protocol: 'mysql', host: '127.0.0.1', port: 0, auth: auth('caching_sha2_password') },
      { name: 'sha2tls', protocol: 'mysql', host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey }, auth: auth('caching_sha2_password') },
    ],
  });
  proxy = await startCli(['--config', file]);
});

after(async () => {
  await proxy?.stop();
  await pki?.cleanup();
});

function port(name: string): number {
  if (proxy === undefined) throw new Error('proxy not started');
  return proxy.port(name);
}

/** The backend account the session really runs as, and the database. */
async function whoAmI(conn: mysql.Connection): Promise<{ user: string; db: string }> {
  const [rows] = await conn.query<mysql.RowDataPacket[]>('select current_user() as u, database() as d');
  const row = rows[0] as { u: string; d: string };
  return { user: row.u, db: row.d };
}

test('mysql_native_password: mysql2 logs in to the proxy as app and runs as backendUser (query and execute)', async (t) => {
  if (skip !== null) return t.skip(skip);
  const conn = await mysql.createConnection({ host: '127.0.0.1', port: port('native'), user: APP, password: APP_PASSWORD, database: DB });
  try {
    assert.deepEqual(await whoAmI(conn), { user: `${BACKEND_USER}@%`, db: DB });
    const [rows] = await conn.execute<mysql.RowDataPacket[]>('select ? + 1 as n', [41]);
    assert.equal(Number((rows[0] as { n: number }).n), 42);
  } finally {
    await conn.end();
  }
});

test('a wrong password and an unknown user get 1045 (28000) as MariaDB words it', async (t) => {
  if (skip !== null) return t.skip(skip);
  for (const listener of ['native', 'sha2']) {
    for (const [user, password] of [
      [APP, 'wrong'],
      ['nobody', APP_PASSWORD],
      [APP, BACKEND_PASSWORD],
      [BACKEND_USER, BACKEND_PASSWORD], // the backend account is not a proxy user
    ] as const) {
      const err = await mysql.createConnection({ host: '127.0.0.1', port: port(listener), user, password, database: DB }).then(
        async (c) => {
          await c.end();
          return null;
        },
        (e: { errno?: number; sqlState?: string; sqlMessage?: string }) => e,
      );
      assert.ok(err !== null, `${listener}: ${user}/${password} must be refused`);
      assert.equal(err.errno, 1045, `${listener} ${user}: ${String(err.sqlMessage)}`);
      assert.equal(err.sqlState, '28000');
      assert.equal(err.sqlMessage, `Access denied for user '${user}'@'localhost' (using password: YES)`);
    }
  }
  const noPassword = await mysql.createConnection({ host: '127.0.0.1', port: port('native'), user: APP, database: DB }).catch((e: { errno?: number; sqlMessage?: string }) => e);
  assert.equal((noPassword as { errno?: number }).errno, 1045);
  assert.equal((noPassword as { sqlMessage?: string }).sqlMessage, `Access denied for user '${APP}'@'localhost' (using password: NO)`);
});

test('caching_sha2_password without TLS: the first login fetches the proxy RSA key, the next takes the fast path', async (t) => {
  if (skip !== null) return t.skip(skip);
  const keys: string[] = [];
  const connect = (user: string, password: string) =>
    mysql.createConnection({
      host: '127.0.0.1',
      port: port('sha2'),
      user,
      password,
      database: DB,
      authPlugins: { caching_sha2_password: authPlugins.caching_sha2_password({ onServerPublicKey: (key: Buffer) => keys.push(key.toString('latin1')) }) },
    });
  const first = await connect('other', 'other-secret');
  assert.deepEqual(await whoAmI(first), { user: `${BACKEND_USER}@%`, db: DB });
  await first.end();
  assert.equal(keys.length, 1, 'full authentication asked for the public key');
  assert.match(keys[0] as string, /^-----BEGIN PUBLIC KEY-----/);
  const second = await connect('other', 'other-secret');
  assert.deepEqual(await whoAmI(second), { user: `${BACKEND_USER}@%`, db: DB });
  await second.end();
  assert.equal(keys.length, 1, 'the cached user took the fast path (no key asked)');
  // A cached user with a wrong password falls back to full authentication and is refused.
  const wrong = await connect('other', 'not-it').catch((e: { errno?: number }) => e);
  assert.equal((wrong as { errno?: number }).errno, 1045);
  assert.equal(keys.length, 2);
});

test('caching_sha2_password over TLS: full authentication with the cleartext password', async (t) => {
  if (skip !== null) return t.skip(skip);
  const ca = await readFile((pki as TestPki).caCert, 'utf8');
  const conn = await mysql.createConnection({ host: '127.0.0.1', port: port('sha2tls'), user: APP, password: APP_PASSWORD, database: DB, ssl: { ca } });
  try {
    assert.deepEqual(await whoAmI(conn), { user: `${BACKEND_USER}@%`, db: DB });
  } finally {
    await conn.end();
  }
  const err = await mysql.createConnection({ host: '127.0.0.1', port: port('sha2tls'), user: APP, password: 'wrong', database: DB, ssl: { ca } }).catch((e: { errno?: number }) => e);
  assert.equal((err as { errno?: number }).errno, 1045);
});

test('the mariadb npm driver logs in with both plugins; a wrong password is 1045', async (t) => {
  if (skip !== null) return t.skip(skip);
  for (const listener of ['native', 'sha2']) {
    const conn = await mariadb.createConnection({ host: '127.0.0.1', port: port(listener), user: APP, password: APP_PASSWORD, database: DB, allowPublicKeyRetrieval: true });
    try {
      const rows = (await conn.query('select current_user() as u')) as Array<{ u: string }>;
      assert.equal(rows[0]?.u, `${BACKEND_USER}@%`);
      const prepared = (await conn.execute('select ? * 2 as n', [21])) as Array<{ n: number | bigint }>;
      assert.equal(Number(prepared[0]?.n), 42);
    } finally {
      await conn.end();
    }
    const err = await mariadb
      .createConnection({ host: '127.0.0.1', port: port(listener), user: APP, password: 'wrong', database: DB, allowPublicKeyRetrieval: true })
      .catch((e: { errno?: number; sqlState?: string }) => e);
    assert.equal((err as { errno?: number }).errno, 1045, `${listener}: ${String(err)}`);
    assert.equal((err as { sqlState?: string }).sqlState, '28000');
  }
});

test('the mariadb CLI logs in through mysql_native_password; a wrong password prints ERROR 1045 (28000)', async (t) => {
  if (skip !== null) return t.skip(skip);
  const args = (password: string) => ['--no-defaults', '-h', '127.0.0.1', '-P', String(port('native')), '--connect-timeout=5', '-N', '-B', '-u', APP, `-p${password}`, DB, '-e', 'select current_user()'];
  const ok = await run('mariadb', args(APP_PASSWORD));
  assert.equal(ok.stdout.trim(), `${BACKEND_USER}@%`);
  const err = await run('mariadb', args('wrong')).catch((e: { code?: number; stderr?: string }) => e);
  assert.equal((err as { code?: number }).code, 1);
  assert.match(String((err as { stderr?: string }).stderr), new RegExp(`ERROR 1045 \\(28000\\): Access denied for user '${APP}'@'localhost' \\(using password: YES\\)`));
});

test('the backend login speaks caching_sha2_password too (RSA key from the server): a proxy logs in to another proxy\'s sha2 listener', async (t) => {
  if (skip !== null) return t.skip(skip);
  // Front proxy → (backendUser app, caching_sha2 with RSA over plaintext) → this file's sha2 listener → MariaDB.
  const file = await writeConfig({
    workers: 1,
    security: { allowBackends: ['127.0.0.0/8'] },
    routes: { [DB]: `127.0.0.1:${port('sha2')}` },
    listeners: [{ name: 'front', protocol: 'mysql', host: '127.0.0.1', port: 0, auth: { users: { client: { password: 'client-secret' } }, backendUser: { user: APP, password: APP_PASSWORD } } }],
  });
  const front = await startCli(['--config', file]);
  try {
    for (let i = 0; i < 2; i++) {
      // The second login finds `app` in the inner proxy's cache: the fast path.
      const conn = await mysql.createConnection({ host: '127.0.0.1', port: front.port('front'), user: 'client', password: 'client-secret', database: DB });
      try {
        assert.deepEqual(await whoAmI(conn), { user: `${BACKEND_USER}@%`, db: DB });
      } finally {
        await conn.end();
      }
    }
  } finally {
    await front.stop();
  }
});

test('the mariadb CLI with caching_sha2_password: full authentication over TLS; without TLS it sends the password in clear, which is refused (1045)', async (t) => {
  if (skip !== null) return t.skip(skip);
  // --no-defaults must come first.
  // `cli` logs in only here: never in the sha2 listener's cache (a cached user would take the fast path).
  const base = ['-h', '127.0.0.1', '--connect-timeout=5', '-N', '-B', '-u', 'cli', '-pcli-secret', DB, '-e', 'select current_user()'];
  const ok = await run('mariadb', ['--no-defaults', '-P', String(port('sha2tls')), '--ssl', `--ssl-ca=${(pki as TestPki).caCert}`, '--ssl-verify-server-cert', ...base]);
  assert.equal(ok.stdout.trim(), `${BACKEND_USER}@%`);
  const err = await run('mariadb', ['--no-defaults', '-P', String(port('sha2')), ...base]).catch((e: { code?: number; stderr?: string }) => e);
  assert.match(String((err as { stderr?: string }).stderr), /ERROR 1045 \(28000\)/);
});
