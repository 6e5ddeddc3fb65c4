import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { makeTestPki } from '../../helpers/certs.ts';
import type { TestPki } from '../../helpers/certs.ts';

let pki: TestPki;

before(async () => {
  pki = await makeTestPki();
});

after(async () => {
  await pki.cleanup();
  assert.equal(existsSync(pki.dir), false);
});

interface Handshake {
  /** What the server saw: `authorized` for the client certificate. */
  serverSawAuthorized: boolean;
  serverAuthorizationError: string | null;
  /** Whether the client trusted the server certificate. */
  clientAuthorized: boolean;
}

/** TLS server requesting (but not requiring) client certs signed by the test CA. */
async function handshake(client: { cert: string; key: string }, connect: Partial<tls.ConnectionOptions> = {}): Promise<Handshake> {
  const [caCert, serverCert, serverKey, clientCert, clientKey] = await Promise.all(
    [pki.caCert, pki.serverCert, pki.serverKey, client.cert, client.key].map((f) => readFile(f)),
  );
  const server = tls.createServer(
    { cert: serverCert, key: serverKey, ca: caCert, requestCert: true, rejectUnauthorized: false },
    (socket) => {
      const error = socket.authorizationError;
      socket.end(JSON.stringify({ authorized: socket.authorized, error: error === null ? null : String(error) }));
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    return await new Promise<Handshake>((resolve, reject) => {
      const socket = tls.connect({
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        ca: caCert,
        cert: clientCert,
        key: clientKey,
        ...connect,
      });
      let body = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => (body += chunk));
      socket.on('error', reject);
      socket.on('end', () => {
        try {
          const seen = JSON.parse(body) as { authorized: boolean; error: string | null };
          resolve({ serverSawAuthorized: seen.authorized, serverAuthorizationError: seen.error, clientAuthorized: socket.authorized });
        } catch (err) {
          reject(err);
        }
      });
    });
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

test('client cert signed by the CA is authorized', async () => {
  const result = await handshake({ cert: pki.clientCert, key: pki.clientKey });
  assert.equal(result.clientAuthorized, true);
  assert.equal(result.serverSawAuthorized, true);
  assert.equal(result.serverAuthorizationError, null);
});

test('client cert from the other CA is not authorized', async () => {
  const result = await handshake({ cert: pki.otherClientCert, key: pki.otherClientKey });
  assert.equal(result.clientAuthorized, true);
  assert.equal(result.serverSawAuthorized, false);
  assert.notEqual(result.serverAuthorizationError, null);
});

test('server cert is valid for the 127.0.0.1 IP SAN too', async () => {
  // No servername: the identity check uses the host IP against the IP SAN.
  const result = await handshake({ cert: pki.clientCert, key: pki.clientKey }, { servername: undefined });
  assert.equal(result.clientAuthorized, true);
});

test('certificate contents', async () => {
  const load = async (file: string): Promise<X509Certificate> => new X509Certificate(await readFile(file));
  const [ca, server, client, otherCa, otherClient] = await Promise.all(
    [pki.caCert, pki.serverCert, pki.clientCert, pki.otherCaCert, pki.otherClientCert].map(load),
  );
  assert.ok(ca && server && client && otherCa && otherClient);
  assert.equal(ca.ca, true);
  assert.equal(otherCa.ca, true);
  assert.equal(server.ca, false);
  assert.equal(ca.publicKey.asymmetricKeyType, 'ec');
  assert.equal(ca.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.ok(ca.verify(ca.publicKey));
  assert.ok(server.verify(ca.publicKey));
  assert.ok(client.verify(ca.publicKey));
  assert.ok(!otherClient.verify(ca.publicKey));
  assert.ok(otherClient.verify(otherCa.publicKey));
  assert.match(client.subject, /CN=polyproxy-test-client/);
  assert.deepEqual(server.keyUsage, ['1.3.6.1.5.5.7.3.1']); // serverAuth
  assert.deepEqual(client.keyUsage, ['1.3.6.1.5.5.7.3.2']); // clientAuth
  assert.equal(server.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1');
  const lifetime = Date.parse(ca.validTo) - Date.parse(ca.validFrom);
  assert.ok(lifetime <= 24 * 3600 * 1000 + 1000, `CA lifetime ${lifetime}ms`);
});

test('custom serverNames become SAN entries', async () => {
  const custom = await makeTestPki({ serverNames: ['db.test', '::1', '10.0.0.7'] });
  try {
    const server = new X509Certificate(await readFile(custom.serverCert));
    assert.equal(server.subjectAltName, 'DNS:db.test, IP Address:0:0:0:0:0:0:0:1, IP Address:10.0.0.7');
    assert.ok(server.checkHost('db.test'));
    assert.ok(server.checkIP('10.0.0.7'));
  } finally {
    await custom.cleanup();
  }
});
