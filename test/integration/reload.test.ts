/**
 * SIGHUP reload through the real CLI (workers: 2, so the supervisor sends
 * the new config to each worker): a route changed in the file applies to
 * new sessions while a session opened before keeps working on its backend;
 * a file that does not validate is refused and the running config stays.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { stringify } from 'yaml';
import { startPgDemoServer } from '../../src/demo/pg-demo-server.ts';
import type { PgDemoServer } from '../../src/demo/pg-demo-server.ts';
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
