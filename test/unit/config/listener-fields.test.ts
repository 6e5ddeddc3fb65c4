/**
 * src/config/listener-fields.ts, `tls.certificates` (SNI certificates): accepted on every
 * TLS listener, paths resolved against the config file, bad or duplicate
 * names refused with a line naming the field.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError, loadConfigFile, parseConfig } from '../../../src/config/load.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'polyproxy-config-sni-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function errorLine(fn: () => unknown, field: string): string {
  let error: unknown;
  try {
    fn();
  } catch (err) {
    error = err;
  }
  assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
  const line = error.message.split('\n').find((l) => l.startsWith(`${field}: `));
  assert.ok(line !== undefined, `no line naming "${field}" in:\n${error.message}`);
  return line;
}

const listener = (tls: unknown, protocol = 'http'): unknown => ({ listeners: [{ protocol, port: 1, backend: '127.0.0.1:2', tls }] });

describe('tls.certificates', () => {
  it('relative cert/key paths are resolved against the config file folder', async () => {
    const file = path.join(dir, 'c.yaml');
    await writeFile(
      file,
      'listeners:\n  - protocol: http\n    port: 1\n    tls:\n      cert: d.pem\n      key: d.key\n      certificates:\n        - { names: [a.example.com, "*.example.com"], cert: certs/a.pem, key: /abs/a.key }\n',
    );
    const config = await loadConfigFile(file);
    assert.deepEqual(config.listeners[0]?.tls, {
      cert: path.join(dir, 'd.pem'),
      key: path.join(dir, 'd.key'),
      certificates: [{ names: ['a.example.com', '*.example.com'], cert: path.join(dir, 'certs/a.pem'), key: '/abs/a.key' }],
      requireClientCert: false,
    });
  });

  it('is accepted on every protocol with tls', () => {
    for (const protocol of ['postgres', 'mysql', 'mongodb', 'tcp', 'smtp', 'http']) {
      const config = parseConfig(listener({ cert: 'c', key: 'k', certificates: [{ names: ['x.test'], cert: 'x.pem', key: 'x.key' }] }, protocol), '/etc/pp');
      assert.equal(config.listeners[0]?.tls?.certificates?.[0]?.cert, '/etc/pp/x.pem', protocol);
    }
  });

  it('the default cert/key stay required', () => {
    errorLine(() => parseConfig(listener({ certificates: [{ names: ['x.test'], cert: 'x.pem', key: 'x.key' }] }), '/'), 'listeners.0.tls.cert');
  });

  it('a bad name is refused, naming it', () => {
    const line = errorLine(() => parseConfig(listener({ cert: 'c', key: 'k', certificates: [{ names: ['ok.test', 'a.*.test'], cert: 'x', key: 'y' }] }), '/'), 'listeners.0.tls.certificates.0.names.1');
    assert.match(line, /a\.\*\.test/);
  });

  it('an empty names list, a missing key or an unknown field is refused', () => {
    errorLine(() => parseConfig(listener({ cert: 'c', key: 'k', certificates: [{ names: [], cert: 'x', key: 'y' }] }), '/'), 'listeners.0.tls.certificates.0.names');
    errorLine(() => parseConfig(listener({ cert: 'c', key: 'k', certificates: [{ names: ['a.test'], cert: 'x' }] }), '/'), 'listeners.0.tls.certificates.0.key');
    errorLine(() => parseConfig(listener({ cert: 'c', key: 'k', certificates: [{ names: ['a.test'], cert: 'x', key: 'y', ca: 'z' }] }), '/'), 'listeners.0.tls.certificates.0');
  });

  it('a name listed twice (any case) is refused at its second place', () => {
    const raw = listener({ cert: 'c', key: 'k', certificates: [{ names: ['*.a.test'], cert: 'x', key: 'y' }, { names: ['b.test', '*.A.TEST'], cert: 'x2', key: 'y2' }] });
    assert.match(errorLine(() => parseConfig(raw, '/'), 'listeners.0.tls.certificates.1.names.1'), /already listed by certificates\.0/);
  });
});
