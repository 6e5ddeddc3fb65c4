/**
 * SIGHUP reload through the real CLI (workers: 2, so the supervisor sends
 * the new config to each worker): a route changed in the file applies to
 * new sessions while a session opened before keeps working on its backend;
 * a file that does not validate is refused and the running config stays.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import pg from 'pg';
import { stringify } from 'yaml';
import { startPgDemoServer } from '../../src/demo/pg-demo-server.ts';
import type { PgDemoServer } from '../../src/demo/pg-demo-server.ts';
import { makeTestPki } from '../helpers/certs.ts';
import type { TestPki } from '../helpers/certs.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { PG_HOST, PG_PORT, PG_USER, ensureDatabases, postgresMissing } from '../helpers/services.ts';

const query = async (client: pg.Client): Promise<string> => (await client.query<{ answer: string }>(`select 'real postgres' as answer`)).rows[0]?.answer ?? '';

describe('SIGHUP reload', () => {
  let skip: string | null = null;
  let cli: RunningCli;
  let demo: PgDemoServer;
  let file: string;
  const configWith = (target: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    workers: 2,
    logLevel: 'info',
    security: { allowPrivateBackends: true },
    routes: { pp_alpha: target },
    listeners: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0 }],
    ...extra,
  });

  before(async () => {
    skip = await postgresMissing();
    if (skip !== null) return;
    await ensureDatabases(['pp_alpha']);
    demo = await startPgDemoServer({ name: 'demo' });
    file = await writeConfig(configWith(`${PG_HOST}:${PG_PORT}`));
    cli = await startCli(['--config', file]);
  });

  after(async () => {
    await cli?.stop();
    await demo?.close();
  });

  const connect = async (): Promise<pg.Client> => {
    const client = new pg.Client({ host: '127.0.0.1', port: cli.port('pg'), user: PG_USER, database: 'pp_alpha' });
    await client.connect();
    return client;
  };

  it('a changed route applies to new sessions; an open session keeps its backend', async (t) => {
    if (skip !== null) return t.skip(skip);
    const old = await connect();
    try {
      assert.equal(await query(old), 'real postgres');
      await writeFile(file, stringify(configWith(`127.0.0.1:${demo.port}`)));
      const reloaded = cli.logs.length;
      cli.child.kill('SIGHUP');
      await cli.waitForLog((l) => l.msg === 'configuration reloaded' && cli.logs.indexOf(l) >= reloaded);
      // Both workers took it: every new session (whichever worker accepts it) reaches the demo backend.
      for (let i = 0; i < 6; i++) {
        const fresh = await connect();
        try {
          assert.equal(await query(fresh), 'hello from demo backend, database pp_alpha');
        } finally {
          await fresh.end();
        }
      }
      assert.equal(await query(old), 'real postgres', 'the session opened before the reload is untouched');
    } finally {
      await old.end();
    }
  });

  it('an invalid file is refused and the running config stays', async (t) => {
    if (skip !== null) return t.skip(skip);
    await writeFile(file, stringify(configWith('not an endpoint')));
    const mark = cli.logs.length;
    cli.child.kill('SIGHUP');
    const refusal = await cli.waitForLog((l) => l.msg.startsWith('reload refused') && cli.logs.indexOf(l) >= mark);
    assert.match(String(refusal.err), /routes\.pp_alpha/);
    const client = await connect();
    try {
      assert.equal(await query(client), 'hello from demo backend, database pp_alpha');
    } finally {
      await client.end();
    }
    assert.equal(cli.child.exitCode, null);
  });
});

describe('SIGHUP reload of certificates (workers: 1)', () => {
  let pki: TestPki;
  let cli: RunningCli;
  let site: http.Server;
  let file: string;
  const configWith = (cert: { cert: string; key: string }): Record<string, unknown> => ({
    workers: 1,
    logLevel: 'info',
    security: { allowPrivateBackends: true },
    routes: { 'a.example.com': `127.0.0.1:${(site.address() as AddressInfo).port}` },
    listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: 0, tls: cert }],
  });

  before(async () => {
    pki = await makeTestPki({ serverNames: ['localhost'], extraServers: { first: ['a.example.com', 'first.test'], second: ['a.example.com', 'second.test'] } });
    site = http.createServer((req, res) => res.end('site'));
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    file = await writeConfig(configWith(pki.extraServers.first as { cert: string; key: string }));
    cli = await startCli(['--config', file]);
  });

  after(async () => {
    await cli?.stop();
    site?.close();
    await pki?.cleanup();
  });

  /** The subjectAltName of the certificate a new TLS connection gets. */
  const served = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: cli.port('web'), servername: 'a.example.com', ca: readFileSync(pki.caCert) }, () => {
        resolve(socket.getPeerCertificate().subjectaltname ?? '');
        socket.end();
      });
      socket.on('error', reject);
    });

  it('new connections get the new certificate; an open one keeps working', async () => {
    assert.match(await served(), /first\.test/);
    const open = tls.connect({ host: '127.0.0.1', port: cli.port('web'), servername: 'a.example.com', ca: readFileSync(pki.caCert) });
    await new Promise((resolve) => open.once('secureConnect', resolve));
    await writeFile(file, stringify(configWith(pki.extraServers.second as { cert: string; key: string })));
    const mark = cli.logs.length;
    cli.child.kill('SIGHUP');
    await cli.waitForLog((l) => l.msg === 'configuration reloaded' && cli.logs.indexOf(l) >= mark);
    assert.match(await served(), /second\.test/);
    // The connection opened before the reload still carries requests.
    open.write('GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n');
    let reply = '';
    open.setEncoding('utf8');
    open.on('data', (d: string) => (reply += d));
    await new Promise((resolve) => open.once('end', resolve));
    assert.match(reply, /^HTTP\/1\.1 200[\s\S]*site$/);
  });

  it('a certificate file that cannot be read refuses the reload', async () => {
    await writeFile(file, stringify(configWith({ cert: '/nonexistent/cert.pem', key: '/nonexistent/key.pem' })));
    const mark = cli.logs.length;
    cli.child.kill('SIGHUP');
    const failed = await cli.waitForLog((l) => l.msg.startsWith('reload failed') && cli.logs.indexOf(l) >= mark);
    assert.match(String(failed.err), /cannot read \/nonexistent\/cert\.pem/);
    assert.match(await served(), /second\.test/, 'the running certificate stays');
  });
});
