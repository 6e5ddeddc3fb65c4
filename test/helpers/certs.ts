/**
 * Throwaway PKI for TLS tests, generated at test time with the `openssl` CLI.
 *
 * Layout (all EC P-256, valid for 1 day):
 *  - CA (self-signed, basicConstraints CA:true)
 *    - server cert: subjectAltName = serverNames, extendedKeyUsage serverAuth
 *    - client cert: CN "polyproxy-test-client", extendedKeyUsage clientAuth
 *    - one more server cert per `extraServers` entry (own key, own SANs)
 *  - "other" CA (not trusted by anyone)
 *    - other client cert: CN "polyproxy-test-other-client", clientAuth
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

const OPENSSL = process.env.OPENSSL_BIN ?? 'openssl';

export interface TestPki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  otherCaCert: string;
  otherClientCert: string;
  otherClientKey: string;
  /** The `extraServers` certificates by label, signed by the same CA. */
  extraServers: Record<string, { cert: string; key: string }>;
  cleanup(): Promise<void>;
}

export interface MakeTestPkiOptions {
  /** Names put in the server certificate's subjectAltName (IP entries for IP addresses, DNS otherwise). */
  serverNames?: string[];
  /** More server certificates under the same CA: label → subjectAltName entries (`pki.extraServers[label]`). */
  extraServers?: Record<string, string[]>;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await execFileAsync(OPENSSL, args, { cwd });
  } catch (err) {
    const stderr = (err as { stderr?: unknown }).stderr;
    const detail = typeof stderr === 'string' && stderr !== '' ? `: ${stderr.trim()}` : '';
    throw new Error(`openssl ${args[0] ?? ''} failed${detail}`, { cause: err });
  }
}

function genKey(dir: string, file: string): Promise<void> {
  return openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file], dir);
}

function serial(): string {
  // Positive 128-bit serial number.
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] as number) & 0x7f;
  return `0x${bytes.toString('hex')}`;
}

/** Minimal OpenSSL config so results do not depend on the system openssl.cnf. */
const OPENSSL_CONFIG = `
[req]
distinguished_name = req_dn
prompt = no

[req_dn]

[v3_ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[client]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

function serverExtensions(serverNames: string[], section = 'server'): string {
  const sans = serverNames.map((name) => (isIP(name) !== 0 ? `IP:${name}` : `DNS:${name}`)).join(', ');
  return `
[${section}]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = ${sans}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;
}

async function makeCa(dir: string, config: string, key: string, cert: string, cn: string): Promise<void> {
  await openssl(
    ['req', '-new', '-x509', '-config', config, '-extensions', 'v3_ca', '-key', key, '-out', cert, '-days', '1', '-subj', `/CN=${cn}`, '-sha256'],
    dir,
  );
}

async function makeLeaf(
  dir: string,
  config: string,
  section: string,
  key: string,
  cert: string,
  cn: string,
  caCert: string,
  caKey: string,
): Promise<void> {
  const csr = `${cert}.csr`;
  await openssl(['req', '-new', '-config', config, '-key', key, '-out', csr, '-subj', `/CN=${cn}`, '-sha256'], dir);
  await openssl(
    [
      'x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-set_serial', serial(),
      '-days', '1', '-sha256', '-extfile', config, '-extensions', section, '-out', cert,
    ],
    dir,
  );
}

export async function makeTestPki(options: MakeTestPkiOptions = {}): Promise<TestPki> {
  const serverNames = options.serverNames ?? ['localhost', '127.0.0.1'];
  const extra = Object.entries(options.extraServers ?? {});
  for (const names of [serverNames, ...extra.map(([, n]) => n)]) {
    if (names.length === 0) throw new Error('makeTestPki: serverNames must not be empty');
    for (const name of names) {
      if (!/^[A-Za-z0-9.*:_-]+$/.test(name)) throw new Error(`makeTestPki: unsupported server name ${JSON.stringify(name)}`);
    }
  }
  for (const [label] of extra) {
    if (!/^[A-Za-z0-9_-]+$/.test(label)) throw new Error(`makeTestPki: unsupported extraServers label ${JSON.stringify(label)}`);
  }

  const dir = await mkdtemp(path.join(os.tmpdir(), 'polyproxy-pki-'));
  const cleanup = (): Promise<void> => rm(dir, { recursive: true, force: true });
  const p = (file: string): string => path.join(dir, file);

  const pki: TestPki = {
    dir,
    caCert: p('ca.crt'),
    serverCert: p('server.crt'),
    serverKey: p('server.key'),
    clientCert: p('client.crt'),
    clientKey: p('client.key'),
    otherCaCert: p('other-ca.crt'),
    otherClientCert: p('other-client.crt'),
    otherClientKey: p('other-client.key'),
    extraServers: Object.fromEntries(extra.map(([label]) => [label, { cert: p(`server-${label}.crt`), key: p(`server-${label}.key`) }])),
    cleanup,
  };

  try {
    const config = p('openssl.cnf');
    const caKey = p('ca.key');
    const otherCaKey = p('other-ca.key');
    await writeFile(config, OPENSSL_CONFIG + serverExtensions(serverNames) + extra.map(([label, names]) => serverExtensions(names, `server_${label}`)).join(''));
    const extraLeaves = Object.entries(pki.extraServers);

    await Promise.all(
      [caKey, otherCaKey, pki.serverKey, pki.clientKey, pki.otherClientKey, ...extraLeaves.map(([, leaf]) => leaf.key)].map((key) => genKey(dir, key)),
    );
    await Promise.all([
      makeCa(dir, config, caKey, pki.caCert, 'polyproxy-test-ca'),
      makeCa(dir, config, otherCaKey, pki.otherCaCert, 'polyproxy-test-other-ca'),
    ]);
    await Promise.all([
      makeLeaf(dir, config, 'server', pki.serverKey, pki.serverCert, 'polyproxy-test-server', pki.caCert, caKey),
      makeLeaf(dir, config, 'client', pki.clientKey, pki.clientCert, 'polyproxy-test-client', pki.caCert, caKey),
      makeLeaf(
        dir,
        config,
        'client',
        pki.otherClientKey,
        pki.otherClientCert,
        'polyproxy-test-other-client',
        pki.otherCaCert,
        otherCaKey,
      ),
      ...extraLeaves.map(([label, leaf]) => makeLeaf(dir, config, `server_${label}`, leaf.key, leaf.cert, `polyproxy-test-server-${label}`, pki.caCert, caKey)),
    ]);
  } catch (err) {
    await cleanup();
    throw err;
  }
  return pki;
}
