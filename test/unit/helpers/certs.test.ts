/** test/helpers/certs.ts (the test PKI), not a src file: this mirrors test/helpers instead. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { X509Certificate, createPrivateKey } from 'node:crypto';
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

test('extraServers adds server certificates with their own keys and SANs under the same CA', async () => {
  const multi = await makeTestPki({ extraServers: { a: ['a.example.com'], b: ['*.foo.test', 'foo.test'] } });
  try {
    assert.deepEqual(Object.keys(multi.extraServers).sort(), ['a', 'b']);
    const caCert = new X509Certificate(await readFile(multi.caCert));
    const a = new X509Certificate(await readFile(multi.extraServers.a?.cert ?? ''));
    const b = new X509Certificate(await readFile(multi.extraServers.b?.cert ?? ''));
    const main = new X509Certificate(await readFile(multi.serverCert));
    assert.equal(main.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1');
    assert.equal(a.subjectAltName, 'DNS:a.example.com');
    assert.equal(b.subjectAltName, 'DNS:*.foo.test, DNS:foo.test');
    assert.match(a.subject, /CN=polyproxy-test-server-a/);
    assert.ok(a.verify(caCert.publicKey) && b.verify(caCert.publicKey));
    assert.deepEqual(b.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    assert.ok(b.checkPrivateKey(createPrivateKey(await readFile(multi.extraServers.b?.key ?? ''))));
    assert.ok(!a.checkPrivateKey(createPrivateKey(await readFile(multi.serverKey))));
    assert.deepEqual((await makeTestPkiNames()).extraServers, {});
  } finally {
    await multi.cleanup();
  }
});

async function makeTestPkiNames(): Promise<{ extraServers: Record<string, unknown> }> {
  const plain = await makeTestPki();
  await plain.cleanup();
  return plain;
}
