/**
 * backendLogin against scripted servers: what a real PostgreSQL would not
 * do (a wrong SCRAM signature, silence, garbage) must fail the login.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';
import { backendLogin } from '../../../../../src/protocols/postgres/auth/backend-login.ts';
import { AUTH_SASL_CONTINUE, AUTH_SASL_FINAL, AUTHENTICATION_OK, authMessage, authSasl, backendKeyData, messageParser, parameterStatus, readyForQuery } from '../../../../../src/protocols/postgres/auth/messages.ts';
import { hmac, keysOf, parseClientFinal, parseClientFirst, saltedPassword } from '../../../../../src/protocols/postgres/auth/scram.ts';
import { PostgresServerError } from '../../../../../src/protocols/postgres/auth/server-error.ts';
import { errorResponse } from '../../../../../src/protocols/postgres/errors.ts';

const servers: net.Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

/** A server that runs `script` on each connection with a reader of the client's messages (the startup first). */
async function scripted(script: (socket: net.Socket, next: () => Promise<Buffer>) => Promise<void>): Promise<net.Socket> {
  const server = net.createServer((socket) => {
    let buffered = Buffer.alloc(0);
    let wake: (() => void) | null = null;
    let startup = true;
    socket.on('data', (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      wake?.();
    });
    socket.on('error', () => {});
    const next = async (): Promise<Buffer> => {
      while (true) {
        if (startup && buffered.length >= 4 && buffered.length >= buffered.readUInt32BE(0)) {
          const len = buffered.readUInt32BE(0);
          startup = false;
          const out = buffered.subarray(0, len);
          buffered = buffered.subarray(len);
          return out;
        }
        if (!startup) {
          const m = messageParser(1 << 20, 'client')(buffered);
          if (m !== undefined) {
            buffered = buffered.subarray(m.consumed);
            return m.value.body;
          }
        }
        await new Promise<void>((resolve) => (wake = resolve));
      }
    };
    void script(socket, next).catch(() => socket.destroy());
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  return socket;
}

/** A SCRAM server for password `pencil` that signs its final message with `serverKeyOf` (the right key by default). */
function scramServer(wrongSignature: boolean) {
  return async (socket: net.Socket, next: () => Promise<Buffer>): Promise<void> => {
    await next();
    socket.write(authSasl(['SCRAM-SHA-256']));
    const initial = await next();
    const text = initial.subarray(initial.indexOf(0) + 5).toString();
    const first = parseClientFirst(text);
    const salt = Buffer.from('saltsaltsalt');
    const serverFirst = `r=${first.nonce}SERVER,s=${salt.toString('base64')},i=4096`;
    socket.write(authMessage(AUTH_SASL_CONTINUE, Buffer.from(serverFirst)));
    const final = parseClientFinal((await next()).toString());
    const { serverKey } = keysOf(saltedPassword(wrongSignature ? 'other' : 'pencil', salt, 4096));
    const signature = hmac(serverKey, `${first.bare},${serverFirst},${final.withoutProof}`);
    socket.write(authMessage(AUTH_SASL_FINAL, Buffer.from(`v=${signature.toString('base64')}`)));
    socket.write(Buffer.concat([AUTHENTICATION_OK, parameterStatus('server_version', '15.0'), backendKeyData(42, Buffer.from([1, 2, 3, 4])), readyForQuery()]));
  };
}

test('SCRAM: a server that proves it knows the password is accepted', async () => {
  const socket = await scripted(scramServer(false));
  const result = await backendLogin(socket, { user: 'u', database: 'd', credentials: { kind: 'password', password: 'pencil' }, timeoutMs: 5000 });
  assert.equal(result.parameters.get('server_version'), '15.0');
  assert.equal(result.processId, 42);
  assert.deepEqual(result.secretKey, Buffer.from([1, 2, 3, 4]));
  assert.ok(socket.isPaused());
  socket.destroy();
});

test('SCRAM: a server whose signature is wrong (it does not know the password) is refused', async () => {
  const socket = await scripted(scramServer(true));
  await assert.rejects(backendLogin(socket, { user: 'u', database: 'd', credentials: { kind: 'password', password: 'pencil' }, timeoutMs: 5000 }), /SCRAM signature is wrong/);
  socket.destroy();
});

test('AuthenticationOk without the SCRAM final message is refused (a server skipping verification)', async () => {
  const socket = await scripted(async (s, next) => {
    await next();
    s.write(authSasl(['SCRAM-SHA-256']));
    await next();
    s.write(Buffer.concat([AUTHENTICATION_OK, readyForQuery()]));
  });
  await assert.rejects(backendLogin(socket, { user: 'u', database: 'd', credentials: { kind: 'password', password: 'pencil' }, timeoutMs: 5000 }), /before the SCRAM exchange finished/);
  socket.destroy();
});

test('the deadline: a silent server fails the login with TIMEOUT', async () => {
  const socket = await scripted(async (_s, next) => {
    await next();
  });
  await assert.rejects(backendLogin(socket, { user: 'u', database: 'd', credentials: { kind: 'none' }, timeoutMs: 50 }), (err: unknown) => (err as { kind?: string }).kind === 'TIMEOUT');
  socket.destroy();
});

test('an ErrorResponse keeps every field and the raw bytes; startup carries user, database and params', async () => {
  let startup = '';
  const refusal = errorResponse('53300', 'sorry, too many clients already');
  const socket = await scripted(async (s, next) => {
    startup = (await next()).subarray(8).toString();
    s.write(refusal);
  });
  await assert.rejects(backendLogin(socket, { user: 'u', database: 'd', params: new Map([['application_name', 'x'], ['user', 'ignored']]), credentials: { kind: 'none' }, timeoutMs: 5000 }), (err: unknown) => {
    assert.ok(err instanceof PostgresServerError);
    assert.equal(err.sqlstate, '53300');
    assert.equal(err.kind, 'TOO_MANY');
    assert.deepEqual(err.raw, refusal);
    return true;
  });
  assert.equal(startup, 'user\0u\0database\0d\0application_name\0x\0\0');
  socket.destroy();
});

test('unexpected messages and unsupported methods fail clearly', async () => {
  const socket = await scripted(async (s, next) => {
    await next();
    s.write(authMessage(7)); // GSS
  });
  await assert.rejects(backendLogin(socket, { user: 'u', database: 'd', credentials: { kind: 'password', password: 'p' }, timeoutMs: 5000 }), /does not support \(code 7\)/);
  socket.destroy();
  const second = await scripted(async (s, next) => {
    await next();
    s.write(readyForQuery());
  });
  await assert.rejects(backendLogin(second, { user: 'u', database: 'd', credentials: { kind: 'none' }, timeoutMs: 5000 }), /ReadyForQuery before AuthenticationOk/);
  second.destroy();
  const third = await scripted(async (s, next) => {
    await next();
    s.write(Buffer.concat([AUTHENTICATION_OK, readyForQuery(), Buffer.from('N\0\0\0\x05x')]));
  });
  const result = await backendLogin(third, { user: 'u', database: 'd', credentials: { kind: 'none' }, timeoutMs: 5000 });
  assert.equal(result.processId, 0);
  assert.deepEqual(result.leftover, Buffer.from('N\0\0\0\x05x'));
  third.destroy();
});
