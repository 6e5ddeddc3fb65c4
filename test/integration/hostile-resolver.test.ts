/**
 * Issue 16: one tenant's resolver module cannot take the proxy down. The
 * real CLI runs a resolver whose hooks reject and whose answers are
 * malformed or never come; after each of its connections the process is
 * still up and another tenant (served by the config's routes) still gets
 * through. Bad answers fail that connection with the protocol's error.
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { PG_HOST, PG_PORT, PG_USER, ensureDatabases, postgresMissing } from '../helpers/services.ts';

let cli: RunningCli | undefined;
let skip: string | null = null;
let admin = '';

before(async () => {
  skip = await postgresMissing();
  if (skip !== null) return;
  await ensureDatabases(['pp_alpha', 'pp_beta']);
  process.env.PP_TEST_BACKEND = `${PG_HOST}:${PG_PORT}`;
  const file = await writeConfig({
    workers: 1,
    logLevel: 'warn',
    security: { allowBackends: ['127.0.0.0/8'] },
    resolver: { module: `${process.cwd()}/test/fixtures/hostile-resolver.ts`, timeoutMs: 300 },
    routes: { pp_beta: `${PG_HOST}:${PG_PORT}` },
    admin: { host: '127.0.0.1', port: 0 },
    listeners: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0 }],
  });
  cli = await startCli(['--config', file]);
  admin = `http://127.0.0.1:${(cli.ready as unknown as { admin: AddressInfo }).admin.port}`;
});

after(async () => {
  await cli?.stop();
});

function options(database: string): pg.ClientConfig {
  return { host: '127.0.0.1', port: cli?.port('pg'), user: PG_USER, database, connectionTimeoutMillis: 5000 };
}

async function query(database: string): Promise<string> {
  const client = new pg.Client(options(database));
  await client.connect();
  try {
    const { rows } = await client.query<{ db: string }>('select current_database() as db');
    return rows[0]?.db ?? '';
  } finally {
    await client.end();
  }
}

/** The SQLSTATE the proxy refused the connection with (undefined: it was served). */
async function refusal(database: string): Promise<{ code: string | undefined; message: string } | undefined> {
  const client = new pg.Client(options(database));
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    return { code: (err as { code?: string }).code, message: (err as Error).message };
  }
  await client.end();
  return undefined;
}

/** The process is up and the well-behaved tenant is served. */
async function stillServing(): Promise<void> {
  // Give a crash (an unhandled rejection is reported after the microtasks drain) time to happen.
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(cli?.child.exitCode, null, `polyproxy exited; stderr: ${cli?.stderr()}`);
  assert.equal(await query('pp_beta'), 'pp_beta');
}

async function hookErrors(): Promise<Record<string, number>> {
  const text = await (await fetch(`${admin}/metrics`)).text();
  const counts: Record<string, number> = {};
  for (const m of text.matchAll(/^polyproxy_resolver_hook_errors_total\{hook="(\w+)"\} (\d+)/gm)) counts[m[1] as string] = Number(m[2]);
  return counts;
}

test('onConnect and onDisconnect that reject are counted and logged once, and the tenant is still served', async (t) => {
  if (skip !== null) return t.skip(skip);
  for (let i = 0; i < 3; i++) assert.equal(await query('pp_alpha'), 'pp_alpha');
  await stillServing();
  const counts = await hookErrors();
  assert.equal(counts.onConnect, 3);
  assert.equal(counts.onDisconnect, 3);
  const logged = (cli?.logs ?? []).filter((l) => l.msg.startsWith('resolver onConnect failed'));
  assert.equal(logged.length, 1, 'rate-limited: one line for three failures');
  assert.match(String(logged[0]?.err), /onConnect rejects/);
});

test('a route whose ttlMs is a Symbol, or whose valueOf throws, is refused with INTERNAL', async (t) => {
  if (skip !== null) return t.skip(skip);
  for (const db of ['pp_ttl_symbol', 'pp_ttl_valueof']) {
    const refused = await refusal(db);
    assert.equal(refused?.code, 'XX000', db);
    await stillServing();
  }
});

test("a route timeoutMs of 'abc' is refused with INTERNAL naming the field (defect 6)", async (t) => {
  if (skip !== null) return t.skip(skip);
  assert.equal((await refusal('pp_timeout_abc'))?.code, 'XX000');
  await stillServing();
  const warned = (cli?.logs ?? []).find((l) => l.resource === 'pp_timeout_abc');
  assert.match(String(warned?.msg), /bad route for "pp_timeout_abc": timeoutMs/);
});

test('a thenable or promise that never settles gets resolver.timeoutMs and the protocol TIMEOUT (defect 2)', async (t) => {
  if (skip !== null) return t.skip(skip);
  for (const db of ['pp_hung', 'pp_hung_async']) {
    const started = Date.now();
    assert.equal((await refusal(db))?.code, '57P03', db);
    assert.ok(Date.now() - started < 3000, `${db}: answered after ${Date.now() - started} ms`);
    await stillServing();
  }
});

test('a resolve that throws a hostile proxy, or returns a route whose getter throws, is refused with INTERNAL', async (t) => {
  if (skip !== null) return t.skip(skip);
  for (const db of ['pp_throws_proxy', 'pp_getter']) {
    assert.equal((await refusal(db))?.code, 'XX000', db);
    await stillServing();
  }
});

test('a purge hook that rejects does not break the purge', async (t) => {
  if (skip !== null) return t.skip(skip);
  const before = (await hookErrors()).purge ?? 0;
  const res = await fetch(`${admin}/api/purge/pp_alpha`, { method: 'POST', headers: { 'content-type': 'application/json' } });
  assert.equal(res.status, 200);
  await res.body?.cancel();
  await stillServing();
  assert.equal((await hookErrors()).purge, before + 1);
});
