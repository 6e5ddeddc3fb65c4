/**
 * pgbench through a transaction pool smaller than its client count, in the
 * three query modes: no failed transaction, no error. pgbench's
 * `-M prepared` reuses its named statements on whatever server connection
 * runs each transaction.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { startPoolFront } from '../helpers/pg-pool-front.ts';
import type { PoolFront } from '../helpers/pg-pool-front.ts';
import { PG_USER, ensureDatabases, postgresMissing } from '../helpers/services.ts';

const DB = 'pp_pool_pgbench';
let skip: string | null = null;
let front: PoolFront | undefined;

function run(command: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.once('exit', (code) => resolve({ code, out }));
  });
}

before(async () => {
  skip = await postgresMissing();
  if (skip !== null) return;
  await ensureDatabases([DB]);
  const init = await run('pgbench', ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-U', PG_USER, DB]);
  assert.equal(init.code, 0, init.out);
  front = await startPoolFront({ size: 5 });
});

after(async () => {
  await front?.close();
});

async function pgbench(args: string[]): Promise<string> {
  const r = await run('pgbench', ['-n', '-T', '3', '-h', '127.0.0.1', '-p', String((front as PoolFront).port), '-U', PG_USER, ...args, DB]);
  assert.equal(r.code, 0, r.out);
  assert.doesNotMatch(r.out, /error|abort/i);
  assert.match(r.out, /number of failed transactions: 0 /);
  const processed = /number of transactions actually processed: (\d+)/.exec(r.out);
  assert.ok(Number(processed?.[1]) > 0, r.out);
  return r.out;
}

for (const mode of ['simple', 'extended', 'prepared']) {
  test(`pgbench -S -M ${mode}, 20 clients through a pool of 5`, async (t) => {
    if (skip !== null) return t.skip(skip);
    await pgbench(['-S', '-M', mode, '-c', '20', '-j', '2']);
  });
}

test('pgbench TPC-B (BEGIN ... END) -M extended, 20 clients through a pool of 5', async (t) => {
  if (skip !== null) return t.skip(skip);
  await pgbench(['-M', 'extended', '-c', '20', '-j', '2']);
});

test('pgbench TPC-B -M prepared, 10 clients (one thread each) through a pool of 5', async (t) => {
  if (skip !== null) return t.skip(skip);
  // One thread per client: pgbench prepares with a blocking PQprepare, so a thread whose other
  // clients hold every server connection mid-transaction would wait on itself (true of any transaction pooler).
  await pgbench(['-M', 'prepared', '-c', '10', '-j', '10']);
});
