/**
 * src/protocols/postgres/opening.ts over a real socket pair: SSLRequest and
 * GSSENCRequest answered N (or S then TLS), the StartupMessage's database
 * (default: user) as the resource id and the message replayed, CancelRequest
 * straight to the backend that issued the key, and the backend tap learning
 * that key (protocol-flow.html#PROTOCOL-FLOW-START-UP).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { parseEndpoint } from '../../../../src/core/endpoint.ts';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import type { ProtocolModule } from '../../../../src/core/protocol.ts';
import { lookupCancelKey, registerCancelKey, unregisterCancelKey } from '../../../../src/protocols/postgres/cancel-registry.ts';
import { createPostgresProtocol } from '../../../../src/protocols/postgres/opening.ts';
import { clientPairs } from '../../../helpers/client-pair.ts';
import type { ClientPairs } from '../../../helpers/client-pair.ts';
import { hex } from './wire.ts';

const SSL_REQUEST = hex('00000008 04d2162f');
const GSSENC_REQUEST = hex('00000008 04d21630');
const cancel = (pidSecret: string): Buffer => hex(`00000010 04d2162e ${pidSecret}`);

function startup(params: Record<string, string>): Buffer {
  const body = Buffer.from(`${Object.entries(params).map(([k, v]) => `${k}\0${v}\0`).join('')}\0`);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(196608, 4); // protocol 3.0
  return Buffer.concat([head, body]);
}

let pairs: ClientPairs;
let postgres: ProtocolModule;
before(async () => {
  pairs = await clientPairs();
  postgres = createPostgresProtocol();
});
after(() => pairs.close());

describe('postgres opening', () => {
  it('names the database as the resource and replays the StartupMessage as sent', async () => {
    const { client, conn } = await pairs.pair();
    const message = startup({ user: 'alice', database: 'shop', application_name: 'psql' });
    client.write(message);
    const opening = await postgres.identify(conn);
    assert.equal(opening?.resourceId, 'shop');
    assert.deepEqual(opening?.replay, message);
    assert.ok(opening?.backendTap !== undefined && opening.onConnected !== undefined && opening.onClose !== undefined);
  });

  it('without a database the user name is the resource', async () => {
    const { client, conn } = await pairs.pair();
    client.write(startup({ user: 'bob' }));
    assert.equal((await postgres.identify(conn))?.resourceId, 'bob');
  });

  it('answers N to SSLRequest when the listener has no TLS, and to GSSENCRequest, then reads the StartupMessage', async () => {
    const { client, conn } = await pairs.pair();
    const answers: Buffer[] = [];
    client.on('data', (chunk: Buffer) => answers.push(chunk));
    const identified = postgres.identify(conn);
    client.write(SSL_REQUEST);
    client.write(GSSENC_REQUEST);
    client.write(startup({ user: 'u', database: 'd' }));
    assert.equal((await identified)?.resourceId, 'd');
    while (Buffer.concat(answers).length < 2) await once(client, 'data');
    assert.equal(Buffer.concat(answers).toString(), 'NN');
  });

  it('refuses a second SSLRequest or GSSENCRequest with PROTOCOL', async () => {
    for (const request of [SSL_REQUEST, GSSENC_REQUEST]) {
      const { client, conn } = await pairs.pair();
      client.write(Buffer.concat([request, request]));
      await assert.rejects(postgres.identify(conn), (err: PolyproxyError) => err.kind === 'PROTOCOL' && /duplicate/.test(err.message));
    }
  });

  it('a CancelRequest for a key held here dials that backend directly and replays the request', async () => {
    const endpoint = parseEndpoint('127.0.0.1:5999');
    const key = '0000303900000001';
    registerCancelKey(key, endpoint);
    const { client, conn } = await pairs.pair();
    const packet = cancel(key);
    client.write(packet);
    const opening = await postgres.identify(conn);
    unregisterCancelKey(key, endpoint);
    assert.equal(opening?.endpoint, endpoint);
    assert.deepEqual(opening?.replay, packet);
  });

  it('a CancelRequest for an unknown key is handled here: nothing to proxy', async () => {
    const { client, conn } = await pairs.pair();
    client.write(cancel('00000001deadbeef'));
    assert.equal(await postgres.identify(conn), null);
  });

  it('the backend tap learns the cancel key once connected, and forgets it at close', async () => {
    const { client, conn } = await pairs.pair();
    client.write(startup({ user: 'u', database: 'd' }));
    const opening = await postgres.identify(conn);
    const endpoint = parseEndpoint('127.0.0.1:6001');
    opening?.onConnected?.(endpoint, () => Promise.resolve([]));
    const tap = opening?.backendTap;
    assert.ok(tap !== undefined);
    // AuthenticationOk, BackendKeyData (pid 12345, secret 7), ReadyForQuery — the K message split in two chunks.
    assert.equal(tap.inspect(hex('52 00000008 00000000 4b 0000000c 0000')), false);
    assert.equal(lookupCancelKey('0000303900000007'), undefined);
    assert.equal(tap.inspect(hex('3039 00000007 5a 00000005 49')), true, 'done once ReadyForQuery arrived');
    assert.equal(lookupCancelKey('0000303900000007'), endpoint);
    opening?.onClose?.();
    assert.equal(lookupCancelKey('0000303900000007'), undefined);
  });

  it('encodes a failure as an ErrorResponse', () => {
    const bytes = postgres.encodeError(new PolyproxyError('NOT_FOUND', 'no such database'), 'shop');
    assert.equal(bytes?.[0], 0x45, "'E'");
    assert.match(bytes?.toString('latin1') ?? '', /C3D000/);
  });
});
