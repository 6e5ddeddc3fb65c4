import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { tlsVerifyError } from '../../../../src/core/io/tls-verify.ts';
import { makeTestPki } from '../../../helpers/certs.ts';
import type { TestPki } from '../../../helpers/certs.ts';

let pki: TestPki;
let server: net.Server;
let context: tls.SecureContext;
let ca: Buffer;

before(async () => {
  pki = await makeTestPki({ serverNames: ['localhost'] });
  ca = await readFile(pki.caCert);
  context = tls.createSecureContext({ cert: await readFile(pki.serverCert), key: await readFile(pki.serverKey), ca });
  server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
});

after(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await pki.cleanup();
});

/**
 * Upgrades an accepted plain socket the way ClientConnection.upgradeToTls
 * does (a TLSSocket around it, requestCert, no rejection) and returns the
 * verdict once the handshake is done.
 */
async function verdict(clientOptions: tls.ConnectionOptions): Promise<string | null> {
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const client = tls.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, servername: 'localhost', ca, ...clientOptions });
  client.on('error', () => {});
  const [plain] = await accepted;
  const secure = new tls.TLSSocket(plain, { isServer: true, secureContext: context, requestCert: true, rejectUnauthorized: false });
  try {
    await once(secure, 'secure');
    return tlsVerifyError(secure);
  } finally {
    secure.destroy();
    client.destroy();
  }
}

describe('io/tls-verify', { timeout: 30_000 }, () => {
  it('a client certificate from the trusted CA verifies', async () => {
    assert.equal(await verdict({ cert: await readFile(pki.clientCert), key: await readFile(pki.clientKey) }), null);
  });

  it('no client certificate is an error: none presented', async () => {
    assert.equal(await verdict({}), 'none presented');
  });

  it('a certificate from another CA is refused with its OpenSSL code', async () => {
    const error = await verdict({ cert: await readFile(pki.otherClientCert), key: await readFile(pki.otherClientKey) });
    assert.equal(error, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });
});
