import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import pg from 'pg';
import { startPgDemoServer } from '../../../src/demo/pg-demo-server.ts';
import type { PgDemoServer } from '../../../src/demo/pg-demo-server.ts';

const execFileAsync = promisify(execFile);
const PSQL = '/usr/bin/psql';
const HELLO_SHOP = 'hello from alpha backend, database shop';

let server: PgDemoServer;

before(async () => {
  server = await startPgDemoServer({ name: 'alpha' });
});

after(async () => {
  await server.close();
});

async function withClient<T>(config: pg.ClientConfig, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ host: '127.0.0.1', port: server.port, ssl: false, ...config });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

// --- raw wire helpers ------------------------------------------------------

function startupMessage(params: Record<string, string>, protocol = 196608): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(params)) parts.push(Buffer.from(`${k}\0${v}\0`));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(protocol, 4);
  return Buffer.concat([head, body]);
}

function frontendMessage(type: string, body: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}

function queryMessage(sql: string): Buffer {
  return frontendMessage('Q', Buffer.from(`${sql}\0`));
}

interface BackendMessage {
  type: string;
  body: Buffer;
}

function parseBackend(data: Buffer): BackendMessage[] {
  const messages: BackendMessage[] = [];
  let pos = 0;
  while (pos + 5 <= data.length) {
    const length = data.readInt32BE(pos + 1);
    messages.push({ type: String.fromCharCode(data[pos] as number), body: data.subarray(pos + 5, pos + 1 + length) });
    pos += 1 + length;
  }
  return messages;
}

function errorCode(body: Buffer): string | undefined {
  let pos = 0;
  while (pos < body.length && body[pos] !== 0) {
    const field = String.fromCharCode(body[pos] as number);
    const end = body.indexOf(0, pos + 1);
    const value = body.toString('utf8', pos + 1, end);
    if (field === 'C') return value;
    pos = end + 1;
  }
  return undefined;
}

/**
 * Open a raw connection, write `chunks` (each as its own write, with a pause in
 * between so they arrive as separate TCP segments) and collect everything the
 * server sends until `done(received)` holds or the server closes the connection.
 */
function rawExchange(
  chunks: Buffer[],
  done: (received: Buffer) => boolean = () => false,
): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(server.port, '127.0.0.1');
    let data = Buffer.alloc(0);
    let settled = false;
    const finish = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve({ data, closed });
    };
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (done(data)) finish(false);
    });
    socket.on('close', () => finish(true));
    socket.on('error', (err) => {
      if (!settled) {
        settled = true;
        reject(err);
      }
    });
    socket.on('connect', async () => {
      for (const chunk of chunks) {
        if (socket.destroyed) return;
        socket.write(chunk);
        await new Promise((r) => setTimeout(r, 5));
      }
    });
  });
}

function countType(data: Buffer, type: string): number {
  return parseBackend(data).filter((m) => m.type === type).length;
}

// --- tests -----------------------------------------------------------------

test('startPgDemoServer listens on an ephemeral port', () => {
  assert.ok(server.port > 0);
  assert.equal(server.connections, 0);
});

test('pg client: select current_database() returns the database', async () => {
  await withClient({ user: 'alice', database: 'shop' }, async (client) => {
    const result = await client.query('select current_database()');
    assert.deepEqual(result.rows, [{ current_database: 'shop' }]);
    assert.equal(result.command, 'SELECT');
    assert.equal(result.rowCount, 1);
    assert.equal(server.connections, 1);
  });
});

test('database defaults to the user name', async () => {
  const wire = Buffer.concat([startupMessage({ user: 'bob' }), queryMessage('SELECT current_database();')]);
  const { data } = await rawExchange([wire], (d) => countType(d, 'Z') >= 2);
  const row = parseBackend(data).find((m) => m.type === 'D');
  assert.equal(row?.body.toString('utf8', 6), 'bob');
});

test('pg client: select 1 and the hello answer', async () => {
  await withClient({ user: 'alice', database: 'shop', application_name: 'unit' }, async (client) => {
    const one = await client.query('select 1');
    assert.deepEqual(one.rows, [{ '?column?': 1 }]);
    assert.equal(one.fields[0]?.dataTypeID, 23);

    const hello = await client.query('select now()');
    assert.deepEqual(hello.rows, [{ answer: HELLO_SHOP }]);
  });
});

test('pg client: parameterized and named prepared queries (extended protocol)', async () => {
  await withClient({ user: 'alice', database: 'shop' }, async (client) => {
    const param = await client.query('select $1::text', ['x']);
    assert.deepEqual(param.rows, [{ answer: HELLO_SHOP }]);

    // Named statement: parsed once, then re-used without Parse on the second run.
    for (let i = 0; i < 2; i++) {
      const named = await client.query({ name: 'cdb', text: 'select current_database()', values: [] });
      assert.deepEqual(named.rows, [{ current_database: 'shop' }]);
    }
    const one = await client.query({ text: 'select 1', values: [1], rowMode: 'array' });
    assert.deepEqual(one.rows, [[1]]);
  });
});

test('pg client: empty query and multiple statements', async () => {
  await withClient({ user: 'alice', database: 'shop' }, async (client) => {
    const empty = await client.query('');
    assert.deepEqual(empty.rows, []);

    const multi = (await client.query('select 1; select current_database();')) as unknown as pg.QueryResult[];
    assert.equal(multi.length, 2);
    assert.deepEqual(multi[0]?.rows, [{ '?column?': 1 }]);
    assert.deepEqual(multi[1]?.rows, [{ current_database: 'shop' }]);
  });
});

test('psql gets the right answer (sslmode=prefer)', { skip: !existsSync(PSQL) && 'psql not installed' }, async () => {
  const { stdout } = await execFileAsync(
    PSQL,
    [`host=127.0.0.1 port=${server.port} dbname=warehouse user=carol sslmode=prefer`, '-X', '-Atc', 'select current_database()'],
    { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', PGCONNECT_TIMEOUT: '5' } },
  );
  assert.equal(stdout.trim(), 'warehouse');
});

test('SSLRequest and GSSENCRequest are answered with N', async () => {
  const ssl = Buffer.alloc(8);
  ssl.writeInt32BE(8, 0);
  ssl.writeInt32BE(80877103, 4);
  const gss = Buffer.alloc(8);
  gss.writeInt32BE(8, 0);
  gss.writeInt32BE(80877104, 4);
  const { data } = await rawExchange([ssl], (d) => d.length >= 1);
  assert.equal(data.toString('latin1'), 'N');
  const both = await rawExchange([Buffer.concat([gss, ssl])], (d) => d.length >= 2);
  assert.equal(both.data.toString('latin1'), 'NN');
});

test('CancelRequest closes the connection', async () => {
  const cancel = Buffer.alloc(16);
  cancel.writeInt32BE(16, 0);
  cancel.writeInt32BE(80877102, 4);
  const { data, closed } = await rawExchange([cancel]);
  assert.equal(closed, true);
  assert.equal(data.length, 0);
});

test('messages split across TCP chunks and several messages per chunk', async () => {
  const startup = startupMessage({ user: 'dave', database: 'inventory' });
  const q1 = queryMessage('select current_database()');
  const q2 = queryMessage('select 1');
  const wire = Buffer.concat([startup, q1, q2, frontendMessage('X')]);
  // Byte-by-byte for the startup and the first query, then the rest in one chunk.
  const split = startup.length + q1.length;
  const chunks: Buffer[] = [];
  for (let i = 0; i < split; i++) chunks.push(wire.subarray(i, i + 1));
  chunks.push(wire.subarray(split));

  const { data, closed } = await rawExchange(chunks);
  assert.equal(closed, true);
  const messages = parseBackend(data);
  const types = messages.map((m) => m.type).join('');
  assert.match(types, /^RS+KZTDCZTDCZ$/);
  const rows = messages.filter((m) => m.type === 'D').map((m) => m.body.toString('utf8', 6));
  assert.deepEqual(rows, ['inventory', '1']);
  const params = messages
    .filter((m) => m.type === 'S')
    .map((m) => m.body.toString('utf8').split('\0').slice(0, 2));
  assert.deepEqual(Object.fromEntries(params).server_encoding, 'UTF8');
  assert.match(Object.fromEntries(params).server_version as string, /polyproxy demo/);
});

test('unknown message gets ErrorResponse 0A000 then ReadyForQuery', async () => {
  const startup = startupMessage({ user: 'erin' });
  const functionCall = frontendMessage('F', Buffer.alloc(10));
  const { data } = await rawExchange(
    [Buffer.concat([startup, functionCall, queryMessage('select 1')])],
    (d) => countType(d, 'Z') >= 3,
  );
  const messages = parseBackend(data);
  const error = messages.find((m) => m.type === 'E');
  assert.ok(error);
  assert.equal(errorCode(error.body), '0A000');
  const afterError = messages.slice(messages.indexOf(error) + 1).map((m) => m.type).join('');
  assert.equal(afterError, 'ZTDCZ');
});

test('oversized message gets ErrorResponse 08P01 and the connection is closed', async () => {
  const startup = startupMessage({ user: 'frank' });
  const huge = Buffer.alloc(5);
  huge.write('Q', 0, 'latin1');
  huge.writeInt32BE(2 * 1024 * 1024, 1);
  const { data, closed } = await rawExchange([startup, huge]);
  assert.equal(closed, true);
  const error = parseBackend(data).find((m) => m.type === 'E');
  assert.ok(error);
  assert.equal(errorCode(error.body), '08P01');
});

test('garbage bytes do not crash the server', async () => {
  const garbage = [
    Buffer.from([0xff, 0xff, 0xff, 0xff, 0xde, 0xad, 0xbe, 0xef]), // absurd startup length
    Buffer.from([0, 0, 0, 2]), // too-short startup length
    Buffer.concat([startupMessage({ user: 'g' }), Buffer.from([0x51, 0xff, 0xff, 0xff, 0xff])]), // bad message length
    Buffer.concat([startupMessage({ user: 'g' }), frontendMessage('Q', Buffer.from('no terminator'))]),
    Buffer.concat([startupMessage({ user: 'g' }), frontendMessage('B', Buffer.from([0, 0, 0xff]))]), // truncated Bind
    Buffer.concat([startupMessage({ user: 'g' }), frontendMessage('D', Buffer.from('Zx\0'))]),
    startupMessage({ user: 'g' }, 0x00020000), // protocol 2.0
    startupMessage({ database: 'nouser' }),
  ];
  for (const bytes of garbage) {
    const { closed } = await rawExchange([bytes]);
    assert.equal(closed, true, `server should close after ${bytes.toString('hex')}`);
  }
  // A well-behaved client still works afterwards.
  await withClient({ user: 'alice', database: 'after' }, async (client) => {
    const result = await client.query('select current_database()');
    assert.deepEqual(result.rows, [{ current_database: 'after' }]);
  });
});

test('extended protocol errors discard messages until Sync', async () => {
  const startup = startupMessage({ user: 'h', database: 'db' });
  const bindUnknown = frontendMessage('B', Buffer.from('\0nosuch\0\0\0\0\0\0\0', 'latin1'));
  const execute = frontendMessage('E', Buffer.from('\0\0\0\0\0', 'latin1'));
  const sync = frontendMessage('S');
  const { data } = await rawExchange([Buffer.concat([startup, bindUnknown, execute, sync])], (d) => countType(d, 'Z') >= 2);
  const messages = parseBackend(data);
  const tail = messages.slice(messages.findIndex((m) => m.type === 'K') + 2);
  assert.deepEqual(
    tail.map((m) => m.type),
    ['E', 'Z'],
  );
  assert.equal(errorCode(tail[0]?.body ?? Buffer.alloc(0)), '26000');
});

test('connections are counted and released', async () => {
  const client = new pg.Client({ host: '127.0.0.1', port: server.port, ssl: false, user: 'x', database: 'y' });
  await client.connect();
  assert.ok(server.connections >= 1);
  await client.end();
  for (let i = 0; i < 50 && server.connections !== 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(server.connections, 0);
});

test('close() destroys open connections and resolves', async () => {
  const other = await startPgDemoServer({ name: 'beta' });
  const client = new pg.Client({ host: '127.0.0.1', port: other.port, ssl: false, user: 'u', database: 'd' });
  client.on('error', () => {});
  await client.connect();
  const hello = await client.query('select version()');
  assert.deepEqual(hello.rows, [{ answer: 'hello from beta backend, database d' }]);
  await other.close();
  assert.equal(other.connections, 0);
  await other.close(); // idempotent
});
