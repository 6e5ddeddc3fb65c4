/**
 * issue 19: configuration by environment. A one-line start entirely from
 * POLYPROXY_* variables routes psql; a flag wins over the environment and
 * the environment over the config file; TLS from the environment serves TLS.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BIN, ROOT, writeConfig } from '../helpers/cli.ts';
import { makeTestPki } from '../helpers/certs.ts';
import type { TestPki } from '../helpers/certs.ts';
import { killGroup, startInGroup, waitGone } from '../helpers/process-group.ts';
import type { Started } from '../helpers/process-group.ts';
import { PG_HOST, PG_PORT, PG_USER, postgresMissing } from '../helpers/services.ts';

const run = promisify(execFile);

/** The parent's environment without any POLYPROXY_* it may carry, plus `vars`. */
function envWith(vars: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('POLYPROXY_')) env[key] = value;
  return { ...env, ...vars };
}

async function stop(started: Started): Promise<void> {
  const group = started.child.pid as number;
  process.kill(group, 'SIGTERM');
  await started.exited;
  await waitGone(group, [started.proxyPid]);
  killGroup(group, [started.proxyPid]);
}

function readyLine(started: Started): { workers: number; admin?: { port: number }; listeners: Array<{ name: string; port: number }> } {
  const line = started.output().split('\n').find((l) => l.includes('"polyproxy ready"'));
  return JSON.parse(line as string);
}

let skip: string | null = null;
let pki: TestPki;
before(async () => {
  skip = await postgresMissing();
  pki = await makeTestPki({ serverNames: ['127.0.0.1', 'localhost'] });
});
after(() => pki.cleanup());

describe('configuration by environment', () => {
  it('an environment-only one-line start routes psql', async (t) => {
    if (skip !== null) return t.skip(skip);
    const started = await startInGroup(process.execPath, [BIN], {
      cwd: ROOT,
      env: envWith({ POLYPROXY_PROTOCOL: 'postgres', POLYPROXY_PORT: '0', POLYPROXY_HOST: '127.0.0.1', POLYPROXY_BACKEND: `${PG_HOST}:${PG_PORT}`, POLYPROXY_ADMIN_PORT: '0', POLYPROXY_LOG_LEVEL: 'info' }),
    });
    try {
      const ready = readyLine(started);
      assert.equal(ready.workers, 1);
      assert.ok((ready.admin?.port ?? 0) > 0, 'POLYPROXY_ADMIN_PORT started the admin server');
      const { stdout } = await run('psql', ['-X', '-At', `host=127.0.0.1 port=${started.port} user=${PG_USER} dbname=postgres sslmode=disable`, '-c', 'select 40 + 2']);
      assert.equal(stdout.trim(), '42');
    } finally {
      await stop(started);
    }
  });

  it('TLS from the environment: psql connects with sslmode=verify-full', async (t) => {
    if (skip !== null) return t.skip(skip);
    const started = await startInGroup(process.execPath, [BIN], {
      cwd: ROOT,
      env: envWith({ POLYPROXY_PROTOCOL: 'postgres', POLYPROXY_PORT: '0', POLYPROXY_HOST: '127.0.0.1', POLYPROXY_BACKEND: `${PG_HOST}:${PG_PORT}`, POLYPROXY_TLS_CERT: pki.serverCert, POLYPROXY_TLS_KEY: pki.serverKey }),
    });
    try {
      const { stdout } = await run('psql', ['-X', '-At', `host=127.0.0.1 port=${started.port} user=${PG_USER} dbname=postgres sslmode=verify-full sslrootcert=${pki.caCert}`, '-c', 'select ssl from pg_stat_ssl where pid = pg_backend_pid()', '-c', 'select 7']);
      assert.match(stdout, /^7$/m);
    } finally {
      await stop(started);
    }
  });

  it('POLYPROXY_CONFIG runs the file; the variable beats the file, the flag beats the variable', async () => {
    const file = await writeConfig({ workers: 3, logLevel: 'error', listeners: [{ protocol: 'tcp', host: '127.0.0.1', port: 0, backend: '127.0.0.1:9' }] });
    const started = await startInGroup(process.execPath, [BIN, '--workers', '1'], { cwd: ROOT, env: envWith({ POLYPROXY_CONFIG: file, POLYPROXY_WORKERS: '2', POLYPROXY_LOG_LEVEL: 'info' }) });
    try {
      assert.equal(readyLine(started).workers, 1, '--workers 1 beats POLYPROXY_WORKERS=2 beats the file\'s 3');
      // The file says logLevel: error; POLYPROXY_LOG_LEVEL=info lets this info line through.
      assert.match(started.output(), /"level":"info".*"msg":"listeners without maxConnections/);
    } finally {
      await stop(started);
    }
  });
});
