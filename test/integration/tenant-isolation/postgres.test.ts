/**
 * Tenant isolation, PostgreSQL (issue 15, defence 3). Tenants `pp_iso_allowed`
 * (routed), `pp_iso_refused` (absent: NOT_FOUND) and `pp_iso_forbidden`
 * (the resolver module throws FORBIDDEN) are databases of the same real
 * PostgreSQL. Every case tries to open a refused tenant through what the
 * proxy routes as `allowed`; it must fail, and the refused databases must
 * never count a session (pg_stat_database.sessions) nor be what an admitted
 * session is connected to.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { parseConfig } from '../../../src/config/load.ts';
import { startProxy } from '../../../src/supervisor/proxy.ts';
import type { RunningProxy } from '../../../src/supervisor/proxy.ts';
import { ROOT } from '../../helpers/cli.ts';
import { PG_HOST, PG_PORT, PG_USER, ensureDatabases, pgDirect, postgresMissing } from '../../helpers/services.ts';

const run = promisify(execFile);
const ALLOWED = 'pp_iso_allowed';
const REFUSED = ['pp_iso_refused', 'pp_iso_forbidden'] as const;

let proxy: RunningProxy | undefined;
let port = 0;
let skip: string | null = null;
let sessionsBefore = new Map<string, number>();

async function sessions(): Promise<Map<string, number>> {
  const rows = await pgDirect<{ datname: string; sessions: string }>(
    `select datname, sessions from pg_stat_database where datname in ('${ALLOWED}', '${REFUSED.join("', '")}')`,
  );
  return new Map(rows.map((r) => [r.datname, Number(r.sessions)]));
}

before(async () => {
  skip = await postgresMissing();
  if (skip !== null) return;
  await ensureDatabases([ALLOWED, ...REFUSED]);
  // A table only the refused tenants have: an admitted session must never see it.
  for (const db of REFUSED) await pgDirect('create table if not exists iso_secret (x int)', db);
  const config = parseConfig(
    {
      workers: 1,
      logLevel: 'silent',
      security: { allowBackends: ['127.0.0.0/8'] },
      resolver: { module: 'test/fixtures/tenant-isolation-resolver.ts' },
      routes: { [ALLOWED]: `${PG_HOST}:${PG_PORT}` },
      listeners: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0 }],
    },
    ROOT,
  );
  proxy = await startProxy(config);
  port = proxy.bound[0]?.port ?? 0;
  sessionsBefore = await sessions();
});

after(async () => {
  await proxy?.drain(1000);
});

/** Connects through the proxy; returns the SQLSTATE of a refusal, or what the admitted session is on. */
async function attempt(config: pg.ClientConfig): Promise<{ code: string } | { database: string; secret: boolean }> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: PG_USER, ...config });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    return { code: String((err as { code?: string }).code) };
  }
  try {
    if ((config as { replication?: string }).replication === 'database') {
      const { rows } = await client.query<{ dbname: string }>('IDENTIFY_SYSTEM');
      return { database: rows[0]?.dbname ?? '', secret: false };
    }
    const { rows } = await client.query<{ db: string; secret: boolean }>("select current_database() as db, to_regclass('iso_secret') is not null as secret");
    return { database: rows[0]?.db ?? '', secret: rows[0]?.secret ?? true };
  } finally {
    await client.end();
  }
}

/** The outcome every case accepts: refused with one of `codes`, or admitted to `allowed` only. */
function assertIsolated(outcome: Awaited<ReturnType<typeof attempt>>, codes: readonly string[], label: string): void {
  if ('code' in outcome) {
    assert.ok(codes.includes(outcome.code), `${label}: refused with ${outcome.code}, expected one of ${codes.join(', ')}`);
    return;
  }
  assert.equal(outcome.database, ALLOWED, `${label}: admitted to ${outcome.database}`);
  assert.equal(outcome.secret, false, `${label}: sees the refused tenant's table`);
}

/** Sends one raw StartupMessage and returns the SQLSTATE of the ErrorResponse it gets ('' for none). */
function rawStartup(params: ReadonlyArray<readonly [string, string]>): Promise<string> {
  const body = Buffer.concat([...params.flatMap(([k, v]) => [Buffer.from(`${k}\0`), Buffer.from(`${v}\0`)]), Buffer.from([0])]);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(8 + body.length, 0);
  head.writeUInt32BE(196608, 4);
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
    });
    socket.on('error', reject);
    socket.on('close', () => {
      if (got[0] !== 0x45) return resolve('');
      const fields = got.subarray(5).toString('latin1');
      resolve(/(?:^|\0)C([0-9A-Z]{5})\0/.exec(fields)?.[1] ?? '?');
    });
    socket.write(Buffer.concat([head, body]));
    socket.setTimeout(5000, () => socket.destroy());
  });
}

const CLIENT_CASES: ReadonlyArray<{ name: string; config: (refused: string) => pg.ClientConfig; codes: readonly string[] }> = [
  { name: 'database = the refused tenant', config: (r) => ({ database: r }), codes: ['3D000', '28000'] },
  { name: 'no database, user = the refused tenant', config: (r) => ({ user: r, database: '' }), codes: ['3D000', '28000'] },
  { name: 'replication=database on the refused tenant', config: (r) => ({ database: r, replication: 'database' }) as pg.ClientConfig, codes: ['3D000', '28000'] },
  { name: 'replication=database on allowed', config: () => ({ database: ALLOWED, replication: 'database' }) as pg.ClientConfig, codes: [] },
  { name: 'options -c naming the refused tenant', config: (r) => ({ database: ALLOWED, options: `-c search_path=${r}` }), codes: [] },
  { name: 'options with the refused tenant as a bare argument', config: (r) => ({ database: ALLOWED, options: r }), codes: ['08P01', '42601', '22023'] },
  { name: 'options -d (a database in postgres --single)', config: (r) => ({ database: ALLOWED, options: `-d ${r}` }), codes: ['08P01', '42601', '22023', '22P02'] },
  { name: 'options --dbname', config: (r) => ({ database: ALLOWED, options: `--dbname=${r}` }), codes: ['42704', '08P01'] },
];

test('pg client: every way of naming a refused tenant fails or stays on allowed', async (t) => {
  if (skip !== null) return t.skip(skip);
  for (const refused of REFUSED) {
    for (const c of CLIENT_CASES) assertIsolated(await attempt(c.config(refused)), c.codes, `${refused}: ${c.name}`);
  }
});

test('raw startup packets: a repeated database or user is refused with 08P01 by the proxy', async (t) => {
  if (skip !== null) return t.skip(skip);
  for (const refused of REFUSED) {
    assert.equal(await rawStartup([['user', PG_USER], ['database', ALLOWED], ['database', refused]]), '08P01');
    assert.equal(await rawStartup([['user', PG_USER], ['database', refused], ['database', ALLOWED]]), '08P01');
    assert.equal(await rawStartup([['user', refused], ['user', PG_USER], ['database', ALLOWED]]), '08P01');
    assert.equal(await rawStartup([['user', PG_USER], ['database', ALLOWED], ['options', `-c x=1`], ['database', refused]]), '08P01');
  }
});

test('psql: \\c to a refused tenant from an allowed session fails', async (t) => {
  if (skip !== null) return t.skip(skip);
  for (const refused of REFUSED) {
    const result = await run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', PG_USER, '-d', ALLOWED, '-Atc', `\\c ${refused}`]).then(
      () => ({ failed: false, stderr: '' }),
      (err: { stderr: string }) => ({ failed: true, stderr: err.stderr }),
    );
    assert.ok(result.failed, `psql \\c ${refused} succeeded`);
    assert.match(result.stderr, refused === 'pp_iso_forbidden' ? /FATAL/ : /does not exist|FATAL/);
  }
});

test('the backend never counted a session on a refused tenant', async (t) => {
  if (skip !== null) return t.skip(skip);
  // Positive control first: allowed sessions show up (statistics flush at session end).
  let now = await sessions();
  for (let i = 0; i < 100 && (now.get(ALLOWED) ?? 0) <= (sessionsBefore.get(ALLOWED) ?? 0); i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    now = await sessions();
  }
  assert.ok((now.get(ALLOWED) ?? 0) > (sessionsBefore.get(ALLOWED) ?? 0), 'allowed sessions are counted');
  for (const refused of REFUSED) assert.equal(now.get(refused), sessionsBefore.get(refused), `sessions on ${refused}`);
});
