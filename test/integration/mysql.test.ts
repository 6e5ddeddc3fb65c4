/**
 * The MySQL listener end to end: the real `polyproxy` command in front of
 * the real MariaDB, driven by `mysql2` and the `mariadb` CLI. A second
 * "backend" is MariaDB again behind a plain TCP forwarder on another port,
 * so routes can differ by endpoint while both answer for real.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { after, before, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { makeTestPki } from '../helpers/certs.ts';
import type { TestPki } from '../helpers/certs.ts';
import { MY_HOST, MY_PORT, MY_USER, mariadbDirect, mariadbMissing } from '../helpers/mariadb.ts';

const run = promisify(execFile);
const USER = 'pp_my_user';
const PASSWORD = 'pp-secret';

let proxy: RunningCli | undefined;
let forwarder: net.Server | undefined;
let pki: TestPki | undefined;
let port = 0;
let tlsPort = 0;
let skip: string | null = null;

before(async () => {
  skip = await mariadbMissing();
  if (skip !== null) return;
  await mariadbDirect([
    'create database if not exists pp_my_alpha',
    'create database if not exists pp_my_gamma',
    'create database if not exists pp_my_beta',
    `create user if not exists '${USER}'@'%' identified by '${PASSWORD}'`,
    `alter user '${USER}'@'%' identified by '${PASSWORD}'`,
    `grant all on \`pp\\_my\\_%\`.* to '${USER}'@'%'`,
  ]);
  // The second backend: the same MariaDB behind a TCP forwarder (another endpoint).
  forwarder = net.createServer((socket) => {
    const upstream = net.connect({ host: MY_HOST, port: MY_PORT });
    socket.pipe(upstream).pipe(socket);
    socket.on('error', () => upstream.destroy());
    upstream.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => forwarder?.listen(0, '127.0.0.1', resolve));
  const forwarderPort = (forwarder.address() as net.AddressInfo).port;
  pki = await makeTestPki();
  const file = await writeConfig({
    workers: 1,
    security: { allowBackends: ['127.0.0.0/8'] },
    routes: {
      pp_my_alpha: `${MY_HOST}:${MY_PORT}`,
      pp_my_gamma: `${MY_HOST}:${MY_PORT}`,
      pp_my_beta: `127.0.0.1:${forwarderPort}`,
      pp_my_down: '127.0.0.1:1',
      [MY_USER]: `${MY_HOST}:${MY_PORT}`,
    },
    listeners: [
      { name: 'my', protocol: 'mysql', host: '127.0.0.1', port: 0, connectTimeoutMs: 2000 },
      { name: 'mytls', protocol: 'mysql', host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey } },
    ],
  });
  proxy = await startCli(['--config', file]);
  port = proxy.port('my');
  tlsPort = proxy.port('mytls');
});

after(async () => {
  await proxy?.stop();
  await new Promise<void>((resolve) => (forwarder === undefined ? resolve() : forwarder.close(() => resolve())));
  await pki?.cleanup();
});

function connect(options: mysql.ConnectionOptions): Promise<mysql.Connection> {
  return mysql.createConnection({ host: '127.0.0.1', port, user: MY_USER, connectTimeout: 5000, ...options });
}

async function databaseOf(conn: mysql.Connection): Promise<string | null> {
  const [rows] = await conn.query<mysql.RowDataPacket[]>('select database() as db');
  return (rows[0]?.db as string | null) ?? null;
}

async function connectError(options: mysql.ConnectionOptions): Promise<{ errno?: number; sqlState?: string; message: string }> {
  try {
    const conn = await connect(options);
    await conn.end();
  } catch (err) {
    return err as { errno?: number; sqlState?: string; message: string };
  }
  assert.fail('expected the connection to be refused');
}

function cli(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run('mariadb', ['--no-defaults', '-h', '127.0.0.1', '--connect-timeout=5', '-N', '-B', ...args]);
}

test('mysql2 reaches each database through its own route', async (t) => {
  if (skip !== null) return t.skip(skip);
  for (const database of ['pp_my_alpha', 'pp_my_beta']) {
    const conn = await connect({ database });
    try {
      assert.equal(await databaseOf(conn), database);
    } finally {
      await conn.end();
    }
  }
});

test('the mariadb CLI reaches each database through its own route', async (t) => {
  if (skip !== null) return t.skip(skip);
  for (const database of ['pp_my_alpha', 'pp_my_beta']) {
    const { stdout } = await cli(['-P', String(port), '-u', MY_USER, '-D', database, '-e', 'select database()']);
    assert.equal(stdout.trim(), database);
  }
});

test('a user with a password authenticates to the real server (mysql_native_password via AuthSwitch)', async (t) => {
  if (skip !== null) return t.skip(skip);
  const conn = await connect({ user: USER, password: PASSWORD, database: 'pp_my_alpha' });
  try {
    const [rows] = await conn.query<mysql.RowDataPacket[]>('select current_user() as u, database() as db');
    assert.equal(rows[0]?.u, `${USER}@%`);
    assert.equal(rows[0]?.db, 'pp_my_alpha');
  } finally {
    await conn.end();
  }
  const { stdout } = await cli(['-P', String(port), '-u', USER, `-p${PASSWORD}`, '-D', 'pp_my_beta', '-e', 'select current_user(), database()']);
  assert.equal(stdout.trim(), `${USER}@%\tpp_my_beta`);
});

test('a wrong password gets the server\'s own ERR 1045', async (t) => {
  if (skip !== null) return t.skip(skip);
  const err = await connectError({ user: USER, password: 'wrong', database: 'pp_my_alpha' });
  assert.equal(err.errno, 1045);
  assert.equal(err.sqlState, '28000');
  assert.match(err.message, new RegExp(`Access denied for user '${USER}'@'[^']+' \\(using password: YES\\)`));
  const result = await cli(['-P', String(port), '-u', USER, '-pwrong', '-D', 'pp_my_alpha', '-e', 'select 1']).catch((e: { stderr: string }) => e);
  assert.match(result.stderr, /ERROR 1045 \(28000\): Access denied for user/);
});

test('an unrouted database gets ERR 1049 naming it', async (t) => {
  if (skip !== null) return t.skip(skip);
  const err = await connectError({ database: 'pp_my_nowhere' });
  assert.equal(err.errno, 1049);
  assert.equal(err.sqlState, '42000');
  assert.match(err.message, /Unknown database 'pp_my_nowhere'/);
  const result = await cli(['-P', String(port), '-u', MY_USER, '-D', 'pp_my_nowhere', '-e', 'select 1']).catch((e: { stderr: string }) => e);
  assert.match(result.stderr, /ERROR 1049 \(42000\): Unknown database 'pp_my_nowhere'/);
});

test('an unreachable backend gets ERR 2003', async (t) => {
  if (skip !== null) return t.skip(skip);
  const err = await connectError({ database: 'pp_my_down' });
  assert.equal(err.errno, 2003);
  assert.match(err.message, /pp_my_down/);
});

test('without a database the user name routes the session', async (t) => {
  if (skip !== null) return t.skip(skip);
  const conn = await connect({});
  try {
    assert.equal(await databaseOf(conn), null);
    await conn.query('use pp_my_alpha');
    assert.equal(await databaseOf(conn), 'pp_my_alpha');
  } finally {
    await conn.end();
  }
});

test('USE of a database on the same backend works, USE of one routed elsewhere is refused (mysql2)', async (t) => {
  if (skip !== null) return t.skip(skip);
  const conn = await connect({ database: 'pp_my_alpha', multipleStatements: true });
  try {
    await conn.query('USE `pp_my_gamma`');
    assert.equal(await databaseOf(conn), 'pp_my_gamma');
    await assert.rejects(conn.query('/* hi */ use pp_my_beta'), (err: { errno?: number; sqlState?: string; message: string }) => {
      assert.equal(err.errno, 1044);
      assert.equal(err.sqlState, '42000');
      assert.match(err.message, /pp_my_beta.*routes to another backend/);
      return true;
    });
    // Hidden in a multi-statement query, or unrouted: refused too.
    await assert.rejects(conn.query("select 'x;'; USE pp_my_beta"), { errno: 1044 });
    await assert.rejects(conn.query('use pp_my_nowhere'), { errno: 1049 });
    // COM_INIT_DB via changeUser's database, COM_CHANGE_USER itself.
    await assert.rejects(conn.changeUser({ database: 'pp_my_beta' }), { errno: 1044 });
    // The session is intact and still where it was.
    assert.equal(await databaseOf(conn), 'pp_my_gamma');
    await conn.changeUser({ database: 'pp_my_alpha' });
    assert.equal(await databaseOf(conn), 'pp_my_alpha');
    // COM_CHANGE_USER to another user with a password, same backend.
    await conn.changeUser({ user: USER, password: PASSWORD, database: 'pp_my_gamma' });
    const [rows] = await conn.query<mysql.RowDataPacket[]>('select current_user() as u, database() as db');
    assert.deepEqual({ u: rows[0]?.u, db: rows[0]?.db }, { u: `${USER}@%`, db: 'pp_my_gamma' });
  } finally {
    await conn.end();
  }
});

test('USE hidden behind a backslash is refused under NO_BACKSLASH_ESCAPES and ANSI_QUOTES (issue 15)', async (t) => {
  if (skip !== null) return t.skip(skip);
  const conn = await connect({ database: 'pp_my_alpha', multipleStatements: true });
  try {
    // Under this sql_mode the string ends at the quote after the backslash: the server would run the USE.
    await conn.query("SET SESSION sql_mode='NO_BACKSLASH_ESCAPES'");
    await assert.rejects(conn.query("select 'x\\'; use pp_my_beta; select database(); -- '"), { errno: 1044 });
    assert.equal(await databaseOf(conn), 'pp_my_alpha');
    // ANSI_QUOTES: "..." is an identifier, where a backslash escapes nothing.
    await conn.query("SET SESSION sql_mode='ANSI_QUOTES'");
    await assert.rejects(conn.query('select 1 as "x\\"; use pp_my_beta; select 2 as "y"'), { errno: 1044 });
    assert.equal(await databaseOf(conn), 'pp_my_alpha');
    // The same mode set inside the query itself.
    await conn.query("SET SESSION sql_mode=DEFAULT");
    await assert.rejects(conn.query("SET SESSION sql_mode='NO_BACKSLASH_ESCAPES'; select 'x\\'; use pp_my_beta; -- '"), { errno: 1044 });
    assert.equal(await databaseOf(conn), 'pp_my_alpha');
    // A string with a backslash escape and no hidden USE still runs.
    const [rows] = await conn.query<mysql.RowDataPacket[]>("select 'a\\\\b; use pp_my_gamma' as v");
    assert.equal(rows[0]?.v, 'a\\b; use pp_my_gamma');
  } finally {
    await conn.end();
  }
});

test('the mariadb CLI `use` (COM_INIT_DB) is refused for another backend and works on the same one', async (t) => {
  if (skip !== null) return t.skip(skip);
  const ok = await cli(['-P', String(port), '-u', MY_USER, '-D', 'pp_my_alpha', '-e', 'use pp_my_gamma; select database()']);
  assert.equal(ok.stdout.trim(), 'pp_my_gamma');
  const refused = await cli(['-P', String(port), '-u', MY_USER, '-D', 'pp_my_alpha', '-e', 'use pp_my_beta; select database()']).catch((e: { stderr: string; stdout: string }) => e);
  assert.match(refused.stderr, /ERROR 1044 \(42000\).*pp_my_beta.*routes to another backend/);
  assert.doesNotMatch(refused.stdout, /pp_my_beta/);
});

test('TLS termination: mysql2 with the CA, and the mariadb CLI with --ssl', async (t) => {
  if (skip !== null) return t.skip(skip);
  const conn = await mysql.createConnection({ host: '127.0.0.1', port: tlsPort, user: USER, password: PASSWORD, database: 'pp_my_beta', ssl: { ca: await readCa() } });
  try {
    assert.equal(await databaseOf(conn), 'pp_my_beta');
    const stream = (conn as unknown as { connection: { stream: TLSSocket } }).connection.stream;
    assert.equal(stream.encrypted, true);
    assert.equal(stream.authorized, true);
  } finally {
    await conn.end();
  }
  const { stdout } = await cli(['-P', String(tlsPort), '-u', USER, `-p${PASSWORD}`, '-D', 'pp_my_alpha', '--ssl', `--ssl-ca=${pki?.caCert ?? ''}`, '--ssl-verify-server-cert', '-e', 'select database(); \\s']);
  assert.match(stdout, /^pp_my_alpha$/m);
  assert.match(stdout, /SSL:\s+Cipher in use is/);
  // A wrong password over TLS still gets the server's own error.
  const err = await mysql.createConnection({ host: '127.0.0.1', port: tlsPort, user: USER, password: 'wrong', database: 'pp_my_alpha', ssl: { ca: await readCa() } }).catch((e: { errno?: number }) => e);
  assert.equal((err as { errno?: number }).errno, 1045, String(err));
});

async function readCa(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  return readFile(pki?.caCert ?? '', 'utf8');
}

/** Reads packets from a raw socket until it closes. */
function rawExchange(bytes: Buffer[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let greeted = false;
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (!greeted) {
        greeted = true;
        for (const b of bytes) socket.write(b);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

/** Splits a byte stream into packet payloads with their sequence ids. */
function packets(bytes: Buffer): Array<{ seq: number; payload: Buffer }> {
  const out: Array<{ seq: number; payload: Buffer }> = [];
  let at = 0;
  while (at + 4 <= bytes.length) {
    const length = bytes.readUIntLE(at, 3);
    out.push({ seq: bytes[at + 3] as number, payload: bytes.subarray(at + 4, at + 4 + length) });
    at += 4 + length;
  }
  return out;
}

test('a malformed handshake gets an ERR packet (1043) and the proxy keeps serving', async (t) => {
  if (skip !== null) return t.skip(skip);
  // A HandshakeResponse whose capability flags lack PROTOCOL_41.
  const garbage = Buffer.from('06000001000000000000', 'hex');
  const reply = packets(await rawExchange([garbage]));
  assert.equal(reply[0]?.seq, 0); // the proxy's greeting
  assert.equal(reply[0]?.payload[0], 10);
  const err = reply[1];
  assert.ok(err !== undefined, 'an ERR packet follows the greeting');
  assert.equal(err.seq, 2);
  assert.equal(err.payload[0], 0xff);
  assert.equal(err.payload.readUInt16LE(1), 1043);
  assert.equal(err.payload.toString('latin1', 3, 9), '#08S01');
  const conn = await connect({ database: 'pp_my_alpha' });
  try {
    assert.equal(await databaseOf(conn), 'pp_my_alpha');
  } finally {
    await conn.end();
  }
});

test('a ClientHello sent in the same segment as the SSLRequest is handed to TLS', async (t) => {
  if (skip !== null) return t.skip(skip);
  const { connect: tlsConnect } = await import('node:tls');
  const ca = await readCa();
  const raw = net.connect({ host: '127.0.0.1', port: tlsPort });
  await new Promise<void>((resolve) => raw.once('data', () => resolve())); // the greeting
  const sslRequest = Buffer.alloc(36);
  sslRequest.writeUIntLE(32, 0, 3);
  sslRequest[3] = 1;
  sslRequest.writeUInt32LE(0x200 | 0x800 | 0x8000 | 0x80000, 4); // PROTOCOL_41 | SSL | SECURE_CONNECTION | PLUGIN_AUTH
  sslRequest[12] = 45;
  raw.cork();
  raw.write(sslRequest);
  const secure = tlsConnect({ socket: raw, ca, servername: 'localhost' });
  process.nextTick(() => raw.uncork());
  await new Promise<void>((resolve, reject) => {
    secure.once('secureConnect', () => resolve());
    secure.once('error', reject);
  });
  assert.equal(secure.authorized, true);
  secure.destroy();
});
