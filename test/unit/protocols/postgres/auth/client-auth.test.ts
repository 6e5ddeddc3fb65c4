/**
 * The proxy as the server a client authenticates to, driven by a scripted
 * client: SCRAM (the keys recovered for pass-through are the client's
 * real ones), md5, cleartext over TLS, and every refusal as PostgreSQL
 * words it — one 28P01 for a wrong password and an unknown user, whose
 * fake salt is the same on every attempt.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { PostgresAuthError } from '../../../../../src/protocols/postgres/auth/auth-error.ts';
import { authenticateClient } from '../../../../../src/protocols/postgres/auth/client-auth.ts';
import type { ClientAuthSettings } from '../../../../../src/protocols/postgres/auth/client-auth.ts';
import { saslInitialResponse } from '../../../../../src/protocols/postgres/auth/messages.ts';
import { hmac, keysOf, makeVerifier, md5Response, md5Secret, parseServerFirst, saltedPassword, sha256, xor } from '../../../../../src/protocols/postgres/auth/scram.ts';
import { tableLookup } from '../../../../../src/protocols/postgres/auth/secrets.ts';
import type { AuthMethod, UserEntry } from '../../../../../src/protocols/postgres/auth/types.ts';
import { ScriptedClient, p } from './client-io.ts';
import type { SentMessage } from './client-io.ts';

const VERIFIER = makeVerifier('pencil', Buffer.from('a fixed salt 16b'), 4096);
const USERS = new Map<string, UserEntry>([
  ['plain', { secret: { kind: 'password', password: 'pencil' } }],
  ['verified', { secret: { kind: 'scram', verifier: VERIFIER } }],
  ['hashed', { secret: { kind: 'md5', hash: md5Secret('pencil', 'hashed') } }],
  ['override', { secret: { kind: 'scram', verifier: VERIFIER }, backendPassword: 'backend pw' }],
]);

function settings(method: AuthMethod = 'scram-sha-256'): ClientAuthSettings {
  return { method, mockKey: 'test key' };
}

function startup(user: string): { params: Map<string, string> } {
  return { params: new Map([['user', user], ['database', 'db'], ['application_name', 'app'], ['_pq_.x', '1']]) };
}

/** A SCRAM client (as libpq) for `password`; records the server-first it saw. */
function scramClient(password: string, seen: { serverFirst?: string; clientKey?: Buffer; signatureOk?: boolean }, options: { flag?: string; mechanism?: string } = {}) {
  const nonce = randomBytes(18).toString('base64');
  const bare = `n=,r=${nonce}`;
  const gs2 = options.flag ?? 'n,,';
  let authMessage = '';
  let serverKey: Buffer = Buffer.alloc(0);
  return (msg: SentMessage, client: ScriptedClient): void => {
    if (msg.type !== 'R') return;
    if (msg.code === 10) client.send(p(saslInitialResponse(options.mechanism ?? 'SCRAM-SHA-256', Buffer.from(gs2 + bare)).subarray(5)));
    else if (msg.code === 11) {
      const text = msg.body.toString();
      seen.serverFirst = text;
      const first = parseServerFirst(text);
      const keys = keysOf(saltedPassword(password, first.salt, first.iterations));
      serverKey = keys.serverKey;
      seen.clientKey = keys.clientKey;
      const withoutProof = `c=${Buffer.from(gs2).toString('base64')},r=${first.nonce}`;
      authMessage = `${bare},${text},${withoutProof}`;
      const proof = xor(keys.clientKey, hmac(sha256(keys.clientKey), authMessage));
      client.send(p(`${withoutProof},p=${proof.toString('base64')}`));
    } else if (msg.code === 12) {
      seen.signatureOk = msg.body.toString() === `v=${hmac(serverKey, authMessage).toString('base64')}`;
    }
  };
}

async function refused(promise: Promise<unknown>): Promise<{ sqlstate: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof PostgresAuthError, String(err));
    return { sqlstate: err.sqlstate, message: err.message };
  }
  throw new Error('authenticated');
}

test('SCRAM with a stored verifier: the client\'s own ClientKey comes back for the backend (pass-through)', async () => {
  const seen: { clientKey?: Buffer; signatureOk?: boolean } = {};
  const io = new ScriptedClient(scramClient('pencil', seen));
  const client = await authenticateClient(io, startup('verified'), settings(), tableLookup(USERS));
  assert.equal(client.user, 'verified');
  assert.equal(client.database, 'db');
  assert.deepEqual([...client.params], [['application_name', 'app']]);
  assert.equal(client.credentials.kind, 'scram-keys');
  assert.ok(client.credentials.kind === 'scram-keys' && client.credentials.clientKey.equals(seen.clientKey as Buffer));
  assert.ok(client.credentials.kind === 'scram-keys' && client.credentials.serverKey.equals(VERIFIER.serverKey));
  assert.equal(seen.signatureOk, true);
  assert.deepEqual(io.sent[0]?.body.toString(), 'SCRAM-SHA-256\0\0');
  assert.equal(io.sent.some((m) => m.type === 'R' && m.code === 0), false, 'AuthenticationOk is the caller\'s');
});

test('SCRAM with a configured password: the backend gets the password; backendPassword overrides', async () => {
  const plain = await authenticateClient(new ScriptedClient(scramClient('pencil', {})), startup('plain'), settings(), tableLookup(USERS));
  assert.deepEqual(plain.credentials, { kind: 'password', password: 'pencil' });
  const override = await authenticateClient(new ScriptedClient(scramClient('pencil', {})), startup('override'), settings(), tableLookup(USERS));
  assert.deepEqual(override.credentials, { kind: 'password', password: 'backend pw' });
});

test('wrong password, unknown user and an md5-only secret under SCRAM: the same 28P01 after a full exchange', async () => {
  const expected = (user: string) => ({ sqlstate: '28P01', message: `password authentication failed for user "${user}"` });
  assert.deepEqual(await refused(authenticateClient(new ScriptedClient(scramClient('wrong', {})), startup('verified'), settings(), tableLookup(USERS))), expected('verified'));
  const unknown = new ScriptedClient(scramClient('wrong', {}));
  assert.deepEqual(await refused(authenticateClient(unknown, startup('nobody'), settings(), tableLookup(USERS))), expected('nobody'));
  assert.deepEqual(unknown.sent.map((m) => m.code), [10, 11], 'a full SASL exchange, as for a real user');
  assert.deepEqual(await refused(authenticateClient(new ScriptedClient(scramClient('pencil', {})), startup('hashed'), settings(), tableLookup(USERS))), expected('hashed'));
});

test('an unknown user\'s fake salt is the same on every attempt and differs between names', async () => {
  const saltOf = async (user: string, key = 'test key'): Promise<string> => {
    const seen: { serverFirst?: string } = {};
    await refused(authenticateClient(new ScriptedClient(scramClient('x', seen)), startup(user), { method: 'scram-sha-256', mockKey: key }, tableLookup(USERS)));
    const first = parseServerFirst(seen.serverFirst as string);
    assert.equal(first.iterations, 4096);
    return first.salt.toString('base64');
  };
  assert.equal(await saltOf('ghost'), await saltOf('ghost'));
  assert.notEqual(await saltOf('ghost'), await saltOf('phantom'));
  assert.notEqual(await saltOf('ghost'), await saltOf('ghost', 'another listener'));
  // A real user's salt is its verifier's, every time, too.
  const seen: { serverFirst?: string } = {};
  await authenticateClient(new ScriptedClient(scramClient('pencil', seen)), startup('verified'), settings(), tableLookup(USERS));
  assert.equal(parseServerFirst(seen.serverFirst as string).salt.toString('base64'), VERIFIER.salt.toString('base64'));
});

test('SASL negotiation: another mechanism, channel binding required, a wrong nonce', async () => {
  assert.deepEqual(await refused(authenticateClient(new ScriptedClient(scramClient('pencil', {}, { mechanism: 'SCRAM-SHA-256-PLUS' })), startup('verified'), settings(), tableLookup(USERS))), {
    sqlstate: '08P01',
    message: 'client selected an invalid SASL authentication mechanism',
  });
  const bound = await refused(authenticateClient(new ScriptedClient(scramClient('pencil', {}, { flag: 'p=tls-server-end-point,,' })), startup('verified'), settings(), tableLookup(USERS)));
  assert.equal(bound.sqlstate, '08P01');
  assert.match(bound.message, /^malformed SCRAM message/);
  // 'y': the client could bind but thinks we cannot — we cannot, so that is fine.
  const yes = await authenticateClient(new ScriptedClient(scramClient('pencil', {}, { flag: 'y,,' })), startup('verified'), settings(), tableLookup(USERS));
  assert.equal(yes.credentials.kind, 'scram-keys');
  const io = new ScriptedClient((msg, client) => {
    if (msg.code === 10) client.send(p(saslInitialResponse('SCRAM-SHA-256', Buffer.from('n,,n=,r=abc')).subarray(5)));
    if (msg.code === 11) client.send(p(`c=biws,r=abcWRONG,p=${Buffer.alloc(32).toString('base64')}`));
  });
  assert.equal((await refused(authenticateClient(io, startup('verified'), settings(), tableLookup(USERS)))).sqlstate, '08P01');
  const notSasl = new ScriptedClient((msg, client) => {
    if (msg.code === 10) client.send(Buffer.from([0x51, 0, 0, 0, 5, 0]));
  });
  assert.deepEqual(await refused(authenticateClient(notSasl, startup('verified'), settings(), tableLookup(USERS))), { sqlstate: '08P01', message: 'expected SASL response, got message type 81' });
});

function md5Client(password: string, user: string) {
  return (msg: SentMessage, client: ScriptedClient): void => {
    if (msg.code === 5) client.send(p(`${md5Response(md5Secret(password, user), msg.body)}\0`));
  };
}

test('md5: a password or an md5 secret answers the challenge; a SCRAM verifier gets SCRAM instead', async () => {
  const hashed = await authenticateClient(new ScriptedClient(md5Client('pencil', 'hashed')), startup('hashed'), settings('md5'), tableLookup(USERS));
  assert.deepEqual(hashed.credentials, { kind: 'md5-hash', hash: md5Secret('pencil', 'hashed') });
  const plain = await authenticateClient(new ScriptedClient(md5Client('pencil', 'plain')), startup('plain'), settings('md5'), tableLookup(USERS));
  assert.deepEqual(plain.credentials, { kind: 'password', password: 'pencil' });
  const io = new ScriptedClient(scramClient('pencil', {}));
  assert.equal((await authenticateClient(io, startup('verified'), settings('md5'), tableLookup(USERS))).credentials.kind, 'scram-keys');
  assert.equal(io.sent[0]?.code, 10);
  assert.equal((await refused(authenticateClient(new ScriptedClient(md5Client('wrong', 'plain')), startup('plain'), settings('md5'), tableLookup(USERS)))).sqlstate, '28P01');
  assert.equal((await refused(authenticateClient(new ScriptedClient(md5Client('x', 'nobody')), startup('nobody'), settings('md5'), tableLookup(USERS)))).sqlstate, '28P01');
});

test('cleartext: refused without TLS (28000) before any lookup; over TLS checked against any kind of secret', async () => {
  let looked = false;
  const noTls = new ScriptedClient();
  assert.deepEqual(
    await refused(
      authenticateClient(noTls, startup('plain'), settings('password'), () => {
        looked = true;
        return Promise.resolve(null);
      }),
    ),
    { sqlstate: '28000', message: 'password authentication for user "plain" requires an SSL connection' },
  );
  assert.equal(looked, false);
  assert.equal(noTls.sent.length, 0);
  for (const user of ['plain', 'verified', 'hashed']) {
    const io = new ScriptedClient((msg, client) => {
      if (msg.code === 3) client.send(p('pencil\0'));
    });
    io.tls = { servername: undefined, authorized: false, clientCertCN: undefined };
    const done = await authenticateClient(io, startup(user), settings('password'), tableLookup(USERS));
    assert.deepEqual(done.credentials, { kind: 'password', password: 'pencil' }, user);
    const wrong = new ScriptedClient((msg, client) => {
      if (msg.code === 3) client.send(p('pencil2\0'));
    });
    wrong.tls = io.tls;
    assert.equal((await refused(authenticateClient(wrong, startup(user), settings('password'), tableLookup(USERS)))).sqlstate, '28P01');
  }
});
