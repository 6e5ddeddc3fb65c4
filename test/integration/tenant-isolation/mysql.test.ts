/**
 * Tenant isolation, MySQL (issue 15, defence 3). Tenants `pp_iso_allowed`
 * (routed), `pp_iso_refused` (absent: NOT_FOUND) and `pp_iso_forbidden`
 * (the resolver module throws FORBIDDEN) are databases of the same real
 * MariaDB. From a session routed to `allowed`, every way of switching the
 * default database (USE, COM_INIT_DB, COM_CHANGE_USER, COM_STMT_PREPARE,
 * multi-statements hiding USE in comments, strings and executable comments
 * under each sql_mode, SQL built at run time) must be refused, and MariaDB's
 * database() must still be `allowed` afterwards.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import mysql from 'mysql2/promise';
import { parseConfig } from '../../../src/config/load.ts';
import { startProxy } from '../../../src/supervisor/proxy.ts';
import type { RunningProxy } from '../../../src/supervisor/proxy.ts';
import { ROOT } from '../../helpers/cli.ts';
import { MY_HOST, MY_PORT, MY_USER, mariadbDirect, mariadbMissing } from '../../helpers/mariadb.ts';

const ALLOWED = 'pp_iso_allowed';
const REFUSED = ['pp_iso_refused', 'pp_iso_forbidden'] as const;
const SQL_MODES = ['', 'ANSI_QUOTES', 'NO_BACKSLASH_ESCAPES', 'ANSI_QUOTES,NO_BACKSLASH_ESCAPES'] as const;

let proxy: RunningProxy | undefined;
let port = 0;
let skip: string | null = null;

before(async () => {
  skip = await mariadbMissing();
  if (skip !== null) return;
  await mariadbDirect([ALLOWED, ...REFUSED].map((db) => `create database if not exists ${db}`));
  const config = parseConfig(
    {
      workers: 1,
      logLevel: 'silent',
      security: { allowBackends: ['127.0.0.0/8'] },
      resolver: { module: 'test/fixtures/tenant-isolation-resolver.ts' },
      routes: { [ALLOWED]: `${MY_HOST}:${MY_PORT}` },
      listeners: [{ name: 'my', protocol: 'mysql', host: '127.0.0.1', port: 0 }],
    },
    ROOT,
  );
  proxy = await startProxy(config);
  port = proxy.bound[0]?.port ?? 0;
});

after(async () => {
  await proxy?.drain(1000);
});

function connect(database = ALLOWED): Promise<mysql.Connection> {
  return mysql.createConnection({ host: '127.0.0.1', port, user: MY_USER, database, multipleStatements: true });
}

async function database(conn: mysql.Connection): Promise<string> {
  const [rows] = await conn.query<mysql.RowDataPacket[]>('select database() as db');
  return String(rows[0]?.db);
}

/** Every query that hides a USE of `db` from a naive reading, for each sql_mode. */
function hiddenUses(db: string): string[] {
  return [
    `use ${db}`,
    `USE \`${db}\``,
    `select 1; use ${db}`,
    `select 1; /* c */ use/**/${db}`,
    `select 1; -- c\nuse ${db}`,
    `select 1; # c\nuse ${db}`,
    `/*!use ${db}*/`,
    `/*!50000 use ${db}*/`,
    `/*M!100000 use ${db}*/`,
    `select 1; /*!use*/ ${db}`,
    `select 'a\\'; use ${db}; -- '`, // NO_BACKSLASH_ESCAPES: the string ends at the backslash
    `select "a\\"; use ${db}; -- "`, // ANSI_QUOTES: an identifier, where backslash never escapes
    `select 1; --\x01 '\nuse ${db}`, // MariaDB: '--' then a control character is a comment
    `PREPARE s FROM 'USE ${db}'; EXECUTE s`,
    `EXECUTE IMMEDIATE 'USE ${db}'`,
    `EXECUTE IMMEDIATE CONCAT('US', 'E ${db}')`,
  ];
}

test('USE hidden in multi-statements, comments and strings is refused under every sql_mode', async (t) => {
  if (skip !== null) return t.skip(skip);
  const conn = await connect();
  try {
    for (const mode of SQL_MODES) {
      await conn.query('SET SESSION sql_mode = ?', [mode]);
      for (const refused of REFUSED) {
        for (const sql of hiddenUses(refused)) {
          await assert.rejects(conn.query(sql), (err: { errno?: number }) => typeof err.errno === 'number', `sql_mode '${mode}': ${JSON.stringify(sql)} was not refused`);
          assert.equal(await database(conn), ALLOWED, `sql_mode '${mode}': ${JSON.stringify(sql)}`);
        }
      }
    }
  } finally {
    await conn.end();
  }
});

test('COM_STMT_PREPARE of USE, and COM_CHANGE_USER to a refused tenant, are refused', async (t) => {
  if (skip !== null) return t.skip(skip);
  for (const refused of REFUSED) {
    const conn = await connect();
    try {
      await assert.rejects(conn.prepare(`USE ${refused}`), (err: { errno?: number }) => typeof err.errno === 'number');
      assert.equal(await database(conn), ALLOWED);
      await assert.rejects(conn.changeUser({ user: MY_USER, database: refused }), (err: { errno?: number }) => typeof err.errno === 'number');
    } finally {
      conn.destroy();
    }
  }
});

test('connecting to a refused tenant directly is refused', async (t) => {
  if (skip !== null) return t.skip(skip);
  for (const refused of REFUSED) {
    await assert.rejects(connect(refused), (err: { errno?: number }) => typeof err.errno === 'number', refused);
  }
});

test('mariadb CLI: use (COM_INIT_DB) and \\u to a refused tenant fail and leave database() on allowed', async (t) => {
  if (skip !== null) return t.skip(skip);
  for (const refused of REFUSED) {
    for (const command of [`use ${refused}`, `\\u ${refused}`]) {
      const child = execFile('mariadb', ['--force', '-h', '127.0.0.1', '-P', String(port), '-u', MY_USER, '-D', ALLOWED, '-N', '-B']);
      let out = '';
      let err = '';
      child.stdout?.on('data', (d: string) => (out += d));
      child.stderr?.on('data', (d: string) => (err += d));
      child.stdin?.end(`${command}\nselect database();\n`);
      await new Promise((resolve) => child.once('close', resolve));
      assert.match(err, /ERROR/, `${command}: ${err}`);
      assert.equal(out.trim(), ALLOWED, `${command}: ${out}`);
    }
  }
});
