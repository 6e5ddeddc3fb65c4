/**
 * The proxy's own login to a real PostgreSQL (auth/backend-login.ts): a
 * throwaway cluster demanding SCRAM-SHA-256 for one role and md5 for
 * another, trust for a third; wrong passwords get the server's own
 * ErrorResponse with its SQLSTATE; SCRAM keys (pass-through) log in without
 * the password and cannot answer md5.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { backendLogin } from '../../src/protocols/postgres/auth/backend-login.ts';
import { keysOf, saltedPassword } from '../../src/protocols/postgres/auth/scram.ts';
import { PostgresServerError } from '../../src/protocols/postgres/auth/server-error.ts';
import type { BackendCredentials } from '../../src/protocols/postgres/auth/types.ts';
import { startPostgresInstance } from '../helpers/postgres-instance.ts';
import type { PostgresInstance } from '../helpers/postgres-instance.ts';

let pgi: PostgresInstance | null = null;

before(async () => {
  pgi = await startPostgresInstance({
    hba: ['host all scram_user 127.0.0.1/32 scram-sha-256', 'host all md5_user 127.0.0.1/32 md5', 'host all pw_user 127.0.0.1/32 password', 'host all all 127.0.0.1/32 trust'],
    roles: [
      { name: 'scram_user', password: 'scr@m secret', encryption: 'scram-sha-256' },
      { name: 'md5_user', password: 'md5 secret', encryption: 'md5' },
      { name: 'pw_user', password: 'plain secret' },
      { name: 'trust_user' },
    ],
  });
});

after(async () => {
  await pgi?.stop();
});

function connect(instance: PostgresInstance): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: instance.host, port: instance.port });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

async function login(user: string, credentials: BackendCredentials, params?: Map<string, string>): Promise<{ socket: net.Socket; result: Awaited<ReturnType<typeof backendLogin>> }> {
  const socket = await connect(pgi as PostgresInstance);
  try {
    const result = await backendLogin(socket, { user, database: 'postgres', credentials, timeoutMs: 10_000, ...(params === undefined ? {} : { params }) });
    return { socket, result };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/** Runs one simple query on the logged-in socket and returns the first column of the first row. */
async function simpleQuery(socket: net.Socket, sql: string): Promise<string> {
  const body = Buffer.from(`${sql}\0`);
  const msg = Buffer.alloc(5 + body.length);
  msg[0] = 0x51;
  msg.writeUInt32BE(4 + body.length, 1);
  body.copy(msg, 5);
  let buffered = Buffer.alloc(0);
  socket.resume();
  socket.write(msg);
  return new Promise((resolve, reject) => {
    let value = '';
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 5 && buffered.length >= 1 + buffered.readUInt32BE(1)) {
        const type = buffered[0];
        const len = buffered.readUInt32BE(1);
        const payload = buffered.subarray(5, 1 + len);
        buffered = buffered.subarray(1 + len);
        if (type === 0x44 /* D */) {
          const n = payload.readInt32BE(2);
          value = payload.toString('utf8', 6, 6 + n);
        } else if (type === 0x45) {
          reject(new Error(payload.toString()));
        } else if (type === 0x5a) {
          socket.removeListener('data', onData);
          resolve(value);
        }
      }
    };
    socket.on('data', onData);
  });
}

test('SCRAM-SHA-256 with the password: logged in, parameters and key collected, the session works', async (t) => {
  if (pgi === null) return t.skip('no PostgreSQL instance');
  const { socket, result } = await login('scram_user', { kind: 'password', password: 'scr@m secret' }, new Map([['application_name', 'pp-login-test']]));
  try {
    assert.equal(result.parameters.get('server_encoding'), 'UTF8');
    assert.equal(result.parameters.get('application_name'), 'pp-login-test');
    assert.ok(result.processId > 0);
    assert.equal(result.secretKey.length, 4);
    assert.equal(result.leftover, null);
    assert.equal(await simpleQuery(socket, 'select current_user'), 'scram_user');
    assert.equal(await simpleQuery(socket, 'select pg_backend_pid()::text'), String(result.processId));
  } finally {
    socket.destroy();
  }
});

test('SCRAM-SHA-256 with keys recovered from the verifier\'s salt (pass-through): logged in without the password', async (t) => {
  if (pgi === null) return t.skip('no PostgreSQL instance');
  const [row] = await pgi.query<{ rolpassword: string }>("select rolpassword from pg_authid where rolname = 'scram_user'");
  const match = /^SCRAM-SHA-256\$(\d+):([^$]+)\$/.exec(row?.rolpassword ?? '');
  assert.ok(match, 'a SCRAM verifier is stored');
  // What a client's proof would yield: the keys of the password under the stored salt and iterations.
  const keys = keysOf(saltedPassword('scr@m secret', Buffer.from(match[2] as string, 'base64'), Number(match[1])));
  const { socket } = await login('scram_user', { kind: 'scram-keys', clientKey: keys.clientKey, serverKey: keys.serverKey });
  try {
    assert.equal(await simpleQuery(socket, 'select current_user'), 'scram_user');
  } finally {
    socket.destroy();
  }
});

test('SCRAM keys of another salt: the server refuses with 28P01, fields kept', async (t) => {
  if (pgi === null) return t.skip('no PostgreSQL instance');
  const keys = keysOf(saltedPassword('scr@m secret', Buffer.from('another salt'), 4096));
  await assert.rejects(login('scram_user', { kind: 'scram-keys', clientKey: keys.clientKey, serverKey: keys.serverKey }), (err: unknown) => {
    assert.ok(err instanceof PostgresServerError);
    assert.equal(err.sqlstate, '28P01');
    assert.equal(err.fields.get('M'), 'password authentication failed for user "scram_user"');
    assert.equal(err.raw[0], 0x45);
    return true;
  });
});

test('wrong password over SCRAM: 28P01 with the server\'s message', async (t) => {
  if (pgi === null) return t.skip('no PostgreSQL instance');
  await assert.rejects(login('scram_user', { kind: 'password', password: 'nope' }), (err: unknown) => err instanceof PostgresServerError && err.sqlstate === '28P01' && err.fields.get('S') === 'FATAL');
});

test('md5 with the password, and with the md5 secret alone', async (t) => {
  if (pgi === null) return t.skip('no PostgreSQL instance');
  const first = await login('md5_user', { kind: 'password', password: 'md5 secret' });
  assert.equal(await simpleQuery(first.socket, 'select current_user'), 'md5_user');
  first.socket.destroy();
  const [row] = await pgi.query<{ rolpassword: string }>("select rolpassword from pg_authid where rolname = 'md5_user'");
  const second = await login('md5_user', { kind: 'md5-hash', hash: row?.rolpassword as string });
  assert.equal(await simpleQuery(second.socket, 'select current_user'), 'md5_user');
  second.socket.destroy();
});

test('md5 with SCRAM keys is impossible: a clear error, not a wrong answer', async (t) => {
  if (pgi === null) return t.skip('no PostgreSQL instance');
  const keys = keysOf(saltedPassword('md5 secret', Buffer.from('salt'), 4096));
  await assert.rejects(login('md5_user', { kind: 'scram-keys', clientKey: keys.clientKey, serverKey: keys.serverKey }), /asks for md5 and the proxy has only SCRAM keys for user "md5_user"/);
});

test('cleartext password method, and trust with no credentials', async (t) => {
  if (pgi === null) return t.skip('no PostgreSQL instance');
  const pw = await login('pw_user', { kind: 'password', password: 'plain secret' });
  assert.equal(await simpleQuery(pw.socket, 'select current_user'), 'pw_user');
  pw.socket.destroy();
  const trust = await login('trust_user', { kind: 'none' });
  assert.equal(await simpleQuery(trust.socket, 'select current_user'), 'trust_user');
  trust.socket.destroy();
  await assert.rejects(login('scram_user', { kind: 'none' }), /asks for SCRAM-SHA-256 and the proxy has no password for user "scram_user"/);
});

test('a database that does not exist: the server\'s 3D000 is kept', async (t) => {
  if (pgi === null) return t.skip('no PostgreSQL instance');
  const socket = await connect(pgi);
  await assert.rejects(backendLogin(socket, { user: 'trust_user', database: 'no_such_db', credentials: { kind: 'none' }, timeoutMs: 10_000 }), (err: unknown) => err instanceof PostgresServerError && err.sqlstate === '3D000' && err.kind === 'NOT_FOUND');
  socket.destroy();
});
