/**
 * src/protocols/tcp/opening.ts: the three ways a tcp listener picks its
 * backend — fixed (one shared opening, no byte read, the listener's fast
 * path), routed by first bytes (replayed), routed by TLS SNI (lowercased) —
 * over a real socket pair; raw TCP cannot carry an error.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type { TlsServerSettings } from '../../../../src/core/client-connection.ts';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import { createTcpProtocol } from '../../../../src/protocols/tcp/opening.ts';
import { makeTestPki } from '../../../helpers/certs.ts';
import type { TestPki } from '../../../helpers/certs.ts';
import { clientPairs } from '../../../helpers/client-pair.ts';
import type { ClientPairs } from '../../../helpers/client-pair.ts';

let pairs: ClientPairs;
let pki: TestPki;
let tlsSettings: TlsServerSettings;
before(async () => {
  pairs = await clientPairs();
  pki = await makeTestPki({ serverNames: ['kv.example.com'] });
  tlsSettings = { secureContext: tls.createSecureContext({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) }), requestCert: false, requireClientCert: false };
});
after(async () => {
  pairs.close();
  await pki.cleanup();
});

/** Starts a TLS client over the pair's client socket. */
function tlsClient(client: Socket, servername?: string): tls.TLSSocket {
  const secure = tls.connect({ socket: client, ca: readFileSync(pki.caCert), ...(servername === undefined ? {} : { servername }), checkServerIdentity: () => undefined });
  secure.on('error', () => {});
  return secure;
}

describe('tcp opening', () => {
  it('a fixed backend: the immediate opening, without reading a byte', async () => {
    const tcp = createTcpProtocol('kv', { backend: '127.0.0.1:6379' });
    assert.deepEqual(tcp.immediateOpening, { resourceId: 'kv', replay: null });
    const { client, conn } = await pairs.pair();
    client.write('PING\r\n');
    const opening = await tcp.identify(conn);
    assert.equal(opening, tcp.immediateOpening);
    assert.equal(tcp.encodeError(new PolyproxyError('NOT_FOUND', 'x'), 'kv'), null, 'raw TCP closes without a message');
  });

  it('routed by first bytes: the listener is the resource, the bytes go to the resolver and are replayed', async () => {
    const tcp = createTcpProtocol('kv', { firstBytesTimeoutMs: 2000 });
    assert.equal(tcp.immediateOpening, undefined);
    const { client, conn } = await pairs.pair();
    client.write('*1\r\n$4\r\nPING\r\n');
    const opening = await tcp.identify(conn);
    assert.equal(opening?.resourceId, 'kv');
    assert.equal(opening?.replay?.toString(), '*1\r\n$4\r\nPING\r\n');
    assert.equal(opening?.firstBytes?.toString(), '*1\r\n$4\r\nPING\r\n');
  });

  it('a client silent past firstBytesTimeoutMs is routed with empty bytes and nothing to replay', async () => {
    const tcp = createTcpProtocol('kv', { firstBytesTimeoutMs: 50 });
    const { conn } = await pairs.pair();
    const started = Date.now();
    const opening = await tcp.identify(conn);
    assert.ok(Date.now() - started >= 45);
    assert.equal(opening?.replay, null);
    assert.equal(opening?.firstBytes?.length, 0);
  });

  it('routed by SNI: the server name, lowercased, is the resource', async () => {
    const tcp = createTcpProtocol('kv', { tls: {}, routeBy: 'sni' });
    const { client, conn } = await pairs.pair({ tls: tlsSettings });
    const identified = tcp.identify(conn);
    tlsClient(client, 'KV.Example.COM');
    const opening = await identified;
    assert.equal(opening?.resourceId, 'kv.example.com');
    assert.equal(opening?.replay, null);
  });

  it('routed by SNI, a client that names no server is NOT_FOUND', async () => {
    const tcp = createTcpProtocol('kv', { tls: {}, routeBy: 'sni' });
    const { client, conn } = await pairs.pair({ tls: tlsSettings });
    const identified = tcp.identify(conn);
    // An empty servername sends no SNI extension.
    tlsClient(client, '');
    await assert.rejects(identified, (err: PolyproxyError) => err.kind === 'NOT_FOUND' && /no server name/.test(err.message));
  });

  it('with tls and first bytes: terminates TLS first, then reads the plaintext', async () => {
    const tcp = createTcpProtocol('kv', { tls: {}, firstBytesTimeoutMs: 2000 });
    const { client, conn } = await pairs.pair({ tls: tlsSettings });
    const identified = tcp.identify(conn);
    tlsClient(client, 'kv.example.com').write('hello');
    assert.equal((await identified)?.replay?.toString(), 'hello');
  });
});
