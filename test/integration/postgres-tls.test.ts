/**
 * TLS termination for PostgreSQL: the proxy answers SSLRequest with 'S',
 * terminates TLS with certificates made at test time, reads the startup
 * inside TLS, and with requireClientCert refuses clients without a valid
 * certificate using an ErrorResponse, not a reset.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import pg from 'pg';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { makeTestPki } from '../helpers/certs.ts';
import type { TestPki } from '../helpers/certs.ts';
import { PG_HOST, PG_PORT, PG_USER, ensureDatabases, postgresMissing } from '../helpers/services.ts';

const run = promisify(execFile);
let pki: TestPki;
let proxy: RunningCli | undefined;
let skip: string | null = null;
let tlsPort = 0;
let mtlsPort = 0;

before(async () => {
  skip = await postgresMissing();
  if (skip !== null) return;
  await ensureDatabases(['pp_alpha']);
  pki = await makeTestPki();
  // libpq refuses private keys readable by others.
  await chmod(pki.clientKey, 0o600);
  await chmod(pki.otherClientKey, 0o600);
  const file = await writeConfig({
    workers: 1,
    security: { allowBackends: ['127.0.0.0/8'] },
    routes: { pp_alpha: `${PG_HOST}:${PG_PORT}` },
    listeners: [
      { name: 'tls', protocol: 'postgres', host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey } },
      { name: 'mtls', protocol: 'postgres', host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, requireClientCert: true } },
    ],
  });
  proxy = await startCli(['--config', file]);
  tlsPort = proxy.port('tls');
  mtlsPort = proxy.port('mtls');
});

after(async () => {
  await proxy?.stop();
  await pki?.cleanup();
});

function psql(conninfo: string): Promise<{ stdout: string; stderr: string }> {
  return run('psql', ['-X', '-At', conninfo, '-c', 'select current_database()', '-c', '\\conninfo'], { env: { ...process.env, PGCONNECT_TIMEOUT: '5' } });
}

test('psql verifies the proxy certificate and queries through TLS (verify-full)', async (t) => {
  if (skip !== null) return t.skip(skip);
  const { stdout } = await psql(`host=localhost port=${tlsPort} user=${PG_USER} dbname=pp_alpha sslmode=verify-full sslrootcert=${pki.caCert}`);
  assert.match(stdout, /^pp_alpha$/m);
  assert.match(stdout, /SSL connection \(protocol: TLSv1\.[23]/);
});

test('pg connects with ssl and a CA; the stream is encrypted', async (t) => {
  if (skip !== null) return t.skip(skip);
  const c = new pg.Client({ host: '127.0.0.1', port: tlsPort, user: PG_USER, database: 'pp_alpha', ssl: { ca: await readFile(pki.caCert) } });
  await c.connect();
  try {
    const stream = (c as unknown as { connection: { stream: TLSSocket } }).connection.stream;
    assert.equal(stream.encrypted, true);
    assert.equal(stream.authorized, true);
    const { rows } = await c.query<{ db: string }>('select current_database() as db');
    assert.equal(rows[0]?.db, 'pp_alpha');
  } finally {
    await c.end();
  }
});

test('without tls a client asking for SSL falls back to plaintext (sslmode=prefer)', async (t) => {
  if (skip !== null) return t.skip(skip);
  // The routing test suite has a plain listener; here the TLS listener also accepts plaintext when no client cert is required.
  const { stdout } = await psql(`host=127.0.0.1 port=${tlsPort} user=${PG_USER} dbname=pp_alpha sslmode=disable`);
  assert.match(stdout, /^pp_alpha$/m);
  assert.doesNotMatch(stdout, /SSL connection/);
});

test('mTLS: a client with a certificate from the CA is let through', async (t) => {
  if (skip !== null) return t.skip(skip);
  const { stdout } = await psql(
    `host=localhost port=${mtlsPort} user=${PG_USER} dbname=pp_alpha sslmode=verify-full sslrootcert=${pki.caCert} sslcert=${pki.clientCert} sslkey=${pki.clientKey}`,
  );
  assert.match(stdout, /^pp_alpha$/m);
  assert.match(stdout, /SSL connection/);
});

test('mTLS: a client without a certificate is refused with 28000', async (t) => {
  if (skip !== null) return t.skip(skip);
  await assert.rejects(
    psql(`host=localhost port=${mtlsPort} user=${PG_USER} dbname=pp_alpha sslmode=verify-full sslrootcert=${pki.caCert}`),
    (err: { stderr: string }) => /FATAL: +connection to database "pp_alpha" refused: a valid client certificate is required/.test(err.stderr),
  );
  const c = new pg.Client({ host: '127.0.0.1', port: mtlsPort, user: PG_USER, database: 'pp_alpha', ssl: { ca: await readFile(pki.caCert) } });
  c.on('error', () => {});
  await assert.rejects(c.connect(), (err: { code?: string }) => err.code === '28000');
});

test('mTLS: a certificate from another CA is refused with 28000', async (t) => {
  if (skip !== null) return t.skip(skip);
  const c = new pg.Client({
    host: '127.0.0.1',
    port: mtlsPort,
    user: PG_USER,
    database: 'pp_alpha',
    ssl: { ca: await readFile(pki.caCert), cert: await readFile(pki.otherClientCert), key: await readFile(pki.otherClientKey) },
  });
  c.on('error', () => {});
  await assert.rejects(c.connect(), (err: { code?: string; message: string }) => err.code === '28000' && /client certificate/.test(err.message));
});

test('mTLS: a plaintext client is refused with 28000', async (t) => {
  if (skip !== null) return t.skip(skip);
  await assert.rejects(
    psql(`host=127.0.0.1 port=${mtlsPort} user=${PG_USER} dbname=pp_alpha sslmode=disable`),
    (err: { stderr: string }) => /FATAL: +connection to database "pp_alpha" refused: SSL with a client certificate is required/.test(err.stderr),
  );
});
