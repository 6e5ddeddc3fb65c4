/**
 * The test helper test/helpers/mariadb-replica.ts really replicates: a row
 * written on its primary appears on its replica, the two are different
 * servers (@@server_id), SHOW SLAVE STATUS reports both threads running,
 * and a stopped SQL thread holds writes back until it runs again (the
 * lag the split's tests will need).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import mysql from 'mysql2/promise';
import { startMariadbReplicaPair } from '../helpers/mariadb-replica.ts';
import type { MariadbReplicaPair } from '../helpers/mariadb-replica.ts';

let pair: MariadbReplicaPair | null = null;

before(async () => {
  pair = await startMariadbReplicaPair();
});

after(async () => {
  await pair?.stop();
});

test('a write on the primary reaches the replica; the replica is another server', async (t) => {
  if (pair === null) return t.skip('no MariaDB primary/replica pair (see above)');
  const { primary, replica } = pair;
  await pair.createUser('pp_app', 'pp-app-secret', 'pp_rw');
  await primary.query('CREATE TABLE pp_rw.items (id INT PRIMARY KEY, name VARCHAR(20))');
  await primary.query("INSERT INTO pp_rw.items VALUES (1, 'one'), (2, 'two')");
  await pair.waitReplicated();
  assert.deepEqual(await replica.query('SELECT id, name FROM pp_rw.items ORDER BY id'), [
    { id: 1, name: 'one' },
    { id: 2, name: 'two' },
  ]);
  // The created account replicated too, and reaches each server over TCP as the proxy will.
  for (const server of [primary, replica]) {
    const conn = await mysql.createConnection({ host: server.host, port: server.port, user: 'pp_app', password: 'pp-app-secret', database: 'pp_rw' });
    try {
      const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT @@server_id AS id');
      assert.equal(Number(rows[0]?.id), server.serverId);
    } finally {
      await conn.end();
    }
  }
  assert.notEqual(primary.serverId, replica.serverId);
  const status = await pair.replicaStatus();
  assert.equal(status.ioRunning, 'Yes');
  assert.equal(status.sqlRunning, 'Yes');
  assert.equal(status.secondsBehind, 0);
});

test('with the SQL thread stopped the replica falls behind, and catches up when it runs again', async (t) => {
  if (pair === null) return t.skip('no MariaDB primary/replica pair (see above)');
  const { primary, replica } = pair;
  await primary.query('CREATE TABLE IF NOT EXISTS pp_rw.lag (id INT PRIMARY KEY)');
  await pair.waitReplicated();
  await replica.query('STOP SLAVE SQL_THREAD');
  await primary.query('INSERT INTO pp_rw.lag VALUES (1)');
  assert.equal((await pair.replicaStatus()).sqlRunning, 'No');
  assert.deepEqual(await replica.query('SELECT id FROM pp_rw.lag'), []);
  await replica.query('START SLAVE SQL_THREAD');
  await pair.waitReplicated();
  assert.deepEqual(await replica.query('SELECT id FROM pp_rw.lag'), [{ id: 1 }]);
});
