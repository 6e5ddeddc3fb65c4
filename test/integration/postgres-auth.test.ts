/**
 * Proxy-side authentication on the postgres listener (issue 24): clients
 * log in to polyproxy with SCRAM-SHA-256 (pg, psql), md5 or a cleartext
 * password over TLS, against `users` (a password, or a stored verifier)
 * or the auth query; the proxy then logs in to a backend that itself
 * demands passwords — with the client's SCRAM keys when it holds only a
 * verifier (pass-through: no password of the app user in the config).
 * Wrong password and unknown user get the same 28P01.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { makeTestPki } from '../helpers/certs.ts';
import type { TestPki } from '../helpers/certs.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { startPostgresInstance } from '../helpers/postgres-instance.ts';
import type { PostgresInstance } from '../helpers/postgres-instance.ts';

const run = promisify(execFile);
let pgi: PostgresInstance | null = null;
let proxy: RunningCli | undefined;
let pki: TestPki | undefined;
let appVerifier = '';

const LOOKUP = 'SELECT usename, passwd FROM polyproxy_auth.lookup($1)';

before(async () => {
  pgi = await startPostgresInstance({
    hba: ['host all postgres 127.0.0.1/32 trust', 'host all md5_app 127.0.0.1/32 md5', 'host all all 127.0.0.1/32 scram-sha-256'],
    roles: [
      { name: 'app', password: 'app secret' },
      { name: 'passthru', password: 'pass-through secret' },
      { name: 'auth_user', password: 'auth secret' },
      { name: 'md5_app', password: 'md5 secret', encryption: 'md5' },
    ],
  });
  if (pgi === null) return;
  // PgBouncer's recommended shape: a SECURITY DEFINER function, so the auth user needs no superuser.
  await pgi.query(`create schema polyproxy_auth;
    create function polyproxy_auth.lookup(p_user name) returns table (usename name, passwd text) language sql security definer
      as $$ select usename, passwd from pg_catalog.pg_shadow where usename = p_user $$;
    revoke all on function polyproxy_auth.lookup(name) from public;
    grant usage on schema polyproxy_auth to auth_user;
    grant execute on function polyproxy_auth.lookup(name) to auth_user;`);
  const [row] = await pgi.query<{ rolpassword: string }>("select rolpassword from pg_authid where rolname = 'app'");
  appVerifier = row?.rolpassword ?? '';
  pki = await makeTestPki();
  const file = await writeConfig({
    workers: 1,
    security: { allowBackends: ['127.0.0.0/8'] },
    routes: { postgres: pgi.endpoint },
    listeners: [
      { name: 'users', protocol: 'postgres', host: '127.0.0.1', port: 0, auth: { users: { app: { password: 'app secret' } } } },
      { name: 'verifier', protocol: 'postgres', host: '127.0.0.1', port: 0, auth: { users: { app: { scramSecret: appVerifier } } } },
      { name: 'query', protocol: 'postgres', host: '127.0.0.1', port: 0, auth: { authQuery: { user: 'auth_user', password: 'auth secret', query: LOOKUP } } },
      { name: 'md5', protocol: 'postgres', host: '127.0.0.1', port: 0, auth: { method: 'md5', users: { app: { password: 'app secret' } }, authQuery: { user: 'auth_user', password: 'auth secret', query: LOOKUP } } },
      {
        name: 'cleartext',
        protocol: 'postgres',
        host: '127.0.0.1',
        port: 0,
        tls: { cert: pki.serverCert, key: pki.serverKey },
        auth: { method: 'password', users: { app: { scramSecret: appVerifier } } },
      },
    ],
  });
  proxy = await startCli(['--config', file]);
});

after(async () => {
  await proxy?.stop();
  await pki?.cleanup();
  await pgi?.stop();
});

function port(name: string): number {
  return (proxy as RunningCli).port(name);
}

async function pgQuery(listener: string, user: string, password: string, sql = 'select current_user as u'): Promise<Record<string, unknown>> {
  const client = new pg.Client({ host: '127.0.0.1', port: port(listener), user, password, database: 'postgres' });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query(sql)).rows[0] as Record<string, unknown>;
  } finally {
    await client.end();
  }
}

function psql(listener: string, user: string, password: string, extra = ''): Promise<{ stdout: string; stderr: string }> {
  return run('psql', ['-X', '-At', `host=127.0.0.1 port=${port(listener)} user=${user} dbname=postgres ${extra}`, '-c', 'select current_user', '-c', 'show password_encryption'], {
    env: { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: '10' },
  });
}

async function refusal(listener: string, user: string, password: string): Promise<{ code: string; message: string; severity: string }> {
  try {
    await pgQuery(listener, user, password);
  } catch (err) {
    const e = err as { code: string; message: string; severity: string };
    return { code: e.code, message: e.message, severity: e.severity };
  }
  throw new Error('the login succeeded');
}

test('pg: SCRAM login with a configured password; the proxy logs in to a backend that demands SCRAM', async (t) => {
  if (pgi === null) return t.skip('no PostgreSQL instance');
  const row = await pgQuery('users', 'app', 'app secret', "select current_user as u, current_setting('application_name') as a");
  assert.equal(row.u, 'app');
});

test('psql: SCRAM login with a configured password, and with a configured verifier (pass-through)', async (t) => {
  if (pgi === null) return t.skip('no PostgreSQL instance');
  assert.equal((await psql('users', 'app', 'app secret')).stdout.split('\n')[0], 'app');
  assert.equal((await psql('verifier', 'app', 'app secret')).stdout.split('\n')[0], 'app');
  assert.equal((await pgQuery('verifier', 'app', 'app secret')).u, 'app');
});

test('auth query returning a SCRAM verifier: pg and psql log in, no password of the user in the config', async (t) => {
  if (pgi === null) return t.skip('no PostgreSQL instance');
  assert.equal((await pgQuery('query', 'passthru', 'pass-through secret')).u, 'passthru');
  assert.equal((await psql('query', 'passthru', 'pass-through secret')).stdout.split('\n')[0], 'passthru');
});

test('wrong password and unknown user: the same 28P01 with PostgreSQL\'s message', async (t) => {
  if (pgi === null) return t.skip('no PostgreSQL instance');
  for (const listener of ['users', 'verifier', 'query']) {
    const wrong = await refusal(listener, listener === 'query' ? 'passthru' : 'app', 'wrong');
    assert.deepEqual(wrong, { code: '28P01', message: `password authentication failed for user "${listener === 'query' ? 'passthru' : 'app'}"`, severity: 'FATAL' }, listener);
    const unknown = await refusal(listener, 'nobody', 'wrong');
    assert.deepEqual(unknown, { code: '28P01', message: 'password authentication failed for user "nobody"', severity: 'FATAL' }, listener);
  }
  await assert.rejects(psql('users', 'nobody', 'x'), (err: { stderr: string }) => /FATAL: {2}password authentication failed for user "nobody"/.test(err.stderr));
});

test('md5: clients answer md5 for a configured password and for an md5 secret from the auth query', async (t) => {
  if (pgi === null) return t.skip('no PostgreSQL instance');
  assert.equal((await pgQuery('md5', 'app', 'app secret')).u, 'app');
  assert.equal((await psql('md5', 'md5_app', 'md5 secret')).stdout.split('\n')[0], 'md5_app');
  assert.equal((await pgQuery('md5', 'md5_app', 'md5 secret')).u, 'md5_app');
  // A user whose secret is a SCRAM verifier gets SCRAM even on an md5 listener, as in PostgreSQL.
  assert.equal((await pgQuery('md5', 'passthru', 'pass-through secret')).u, 'passthru');
  assert.equal((await refusal('md5', 'md5_app', 'wrong')).code, '28P01');
});

test('cleartext passwords only over TLS: refused with 28000 without it', async (t) => {
  if (pgi === null) return t.skip('no PostgreSQL instance');
  assert.equal((await psql('cleartext', 'app', 'app secret', 'sslmode=require')).stdout.split('\n')[0], 'app');
  await assert.rejects(psql('cleartext', 'app', 'app secret', 'sslmode=disable'), (err: { stderr: string }) => /FATAL: {2}password authentication for user "app" requires an SSL connection/.test(err.stderr));
  await assert.rejects(psql('cleartext', 'app', 'wrong', 'sslmode=require'), (err: { stderr: string }) => /password authentication failed for user "app"/.test(err.stderr));
});

test('cancel: the BackendKeyData the client got reaches the backend running its query', async (t) => {
  if (pgi === null) return t.skip('no PostgreSQL instance');
  const client = new pg.Client({ host: '127.0.0.1', port: port('users'), user: 'app', password: 'app secret', database: 'postgres' });
  await client.connect();
  try {
    const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
    const sleeping = client.query('select pg_sleep(30)');
    // Wait until the backend runs it, then cancel through the proxy with the key the client got.
    for (let i = 0; i < 200; i++) {
      const [row] = await (pgi as PostgresInstance).query<{ n: string }>("select count(*)::text as n from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'");
      if (row?.n === '1') break;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const packet = Buffer.alloc(16);
    packet.writeUInt32BE(16, 0);
    packet.writeUInt32BE(80877102, 4);
    packet.writeUInt32BE(processID, 8);
    packet.writeInt32BE(secretKey, 12);
    const socket = net.connect(port('users'), '127.0.0.1');
    socket.on('error', () => {});
    socket.end(packet);
    await assert.rejects(sleeping, (err: { code?: string }) => err.code === '57014');
  } finally {
    await client.end();
  }
});
