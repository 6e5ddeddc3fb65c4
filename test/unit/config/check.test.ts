/**
 * src/config/check.ts: what a start would die on, found before it binds
 * (certificates, resolver module, overlapping ports), and static routes the
 * SSRF guard will refuse (warnings). Plus load.ts's friendly messages:
 * "required" and "did you mean".
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { checkConfig } from '../../../src/config/check.ts';
import { closest, parseConfig } from '../../../src/config/load.ts';
import { makeTestPki } from '../../helpers/certs.ts';
import type { TestPki } from '../../helpers/certs.ts';
import { assertNamesField } from './helpers.ts';

let dir: string;
let pki: TestPki;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'polyproxy-check-'));
  pki = await makeTestPki();
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
  await pki.cleanup();
});

const tlsListener = (tls: Record<string, unknown>): Record<string, unknown> => ({ listeners: [{ protocol: 'postgres', port: 6432, tls }] });

describe('checkConfig: certificates', () => {
  it('a good pair (and CA) passes', async () => {
    const result = await checkConfig(parseConfig(tlsListener({ cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert }), dir));
    assert.deepEqual(result.problems, []);
  });

  it('missing files name their fields', async () => {
    const result = await checkConfig(parseConfig(tlsListener({ cert: 'no.crt', key: 'no.key', ca: 'no-ca.pem' }), dir));
    assert.deepEqual(
      result.problems.map((p) => p.split(':')[0]),
      ['listeners.0.tls.ca', 'listeners.0.tls.cert', 'listeners.0.tls.key'],
    );
  });

  it('a key that does not belong to the certificate', async () => {
    const result = await checkConfig(parseConfig(tlsListener({ cert: pki.serverCert, key: pki.clientKey }), dir));
    assert.equal(result.problems.length, 1);
    assert.match(result.problems[0] as string, /^listeners\.0\.tls\.cert: .*the key does not belong to this certificate/);
  });

  it('a file that is not PEM', async () => {
    const junk = path.join(dir, 'junk.pem');
    await writeFile(junk, 'not a certificate\n');
    const result = await checkConfig(parseConfig(tlsListener({ cert: junk, key: pki.serverKey }), dir));
    assert.equal(result.problems.length, 1);
    assert.match(result.problems[0] as string, /^listeners\.0\.tls\.cert: /);
  });

  it('SNI certificates are checked too', async () => {
    const result = await checkConfig(parseConfig(tlsListener({ cert: pki.serverCert, key: pki.serverKey, certificates: [{ names: ['a.example'], cert: pki.serverCert, key: 'gone.key' }] }), dir));
    assert.deepEqual(result.problems.map((p) => p.split(':')[0]), ['listeners.0.tls.certificates.0.key']);
  });
});

describe('checkConfig: resolver module', () => {
  it('a module that does not exist', async () => {
    const result = await checkConfig(parseConfig({ resolver: { module: 'nope.js' }, listeners: [{ protocol: 'postgres', port: 6432 }] }, dir));
    assert.match(result.problems[0] as string, /^resolver\.module: cannot load .*nope\.js/);
  });

  it('a module that throws when loaded', async () => {
    const file = path.join(dir, 'throws.mjs');
    await writeFile(file, 'throw new Error("boom at import");\n');
    const result = await checkConfig(parseConfig({ resolver: { module: file }, listeners: [{ protocol: 'postgres', port: 6432 }] }, dir));
    assert.match(result.problems[0] as string, /^resolver\.module: .*boom at import/);
  });

  it('a module that loads', async () => {
    const file = path.join(dir, 'ok.mjs');
    await writeFile(file, 'export default { resolve: () => null };\n');
    const result = await checkConfig(parseConfig({ resolver: { module: file }, listeners: [{ protocol: 'postgres', port: 6432 }] }, dir));
    assert.deepEqual(result.problems, []);
  });
});

describe('checkConfig: ports', () => {
  it('a wildcard and a specific address on one port overlap', async () => {
    const config = parseConfig({ listeners: [{ protocol: 'postgres', port: 6432 }, { protocol: 'tcp', host: '127.0.0.1', port: 6432, backend: '127.0.0.1:1' }] }, dir);
    assert.deepEqual((await checkConfig(config)).problems, ['listeners.1.port: port 6432 on 127.0.0.1 overlaps listeners.0.port (0.0.0.0:6432); both cannot bind it']);
  });

  it('the admin server on a listener port', async () => {
    const config = parseConfig({ admin: { port: 6432 }, listeners: [{ protocol: 'postgres', host: '127.0.0.1', port: 6432 }] }, dir);
    assert.match((await checkConfig(config)).problems[0] as string, /^admin\.port: port 6432 on 127\.0\.0\.1 is also listeners\.0\.port/);
  });

  it('different ports, or port 0, are fine', async () => {
    const config = parseConfig({ admin: { port: 0 }, listeners: [{ protocol: 'postgres', port: 0 }, { protocol: 'tcp', host: '127.0.0.1', port: 0, backend: '127.0.0.1:1' }, { protocol: 'mysql', port: 3307 }] }, dir);
    assert.deepEqual((await checkConfig(config)).problems, []);
  });
});

describe('checkConfig: routes the SSRF guard refuses', () => {
  const lookup = async (host: string): Promise<Array<{ address: string; family: 4 | 6 }>> => (host === 'db.internal' ? [{ address: '10.1.2.3', family: 4 }] : [{ address: '93.184.216.34', family: 4 }]);
  const config = parseConfig(
    {
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: { ok: '127.0.0.1:5432', private: '10.0.0.5:5432', named: 'db.internal:5432', pub: 'db.example:5432', pair: { primary: '127.0.0.1:5432', replicas: ['192.168.1.9:5432'] } },
      listeners: [{ protocol: 'postgres', port: 6432 }, { protocol: 'tcp', port: 7000, backend: '10.9.9.9:1' }],
    },
    dir,
  );

  it('warns for each refused endpoint, naming the route; a listener backend is not guarded', async () => {
    const { problems, warnings } = await checkConfig(config, { lookup });
    // The postgres listener has no auth: the replicas of routes.pair are refused (see the read/write split tests below).
    assert.deepEqual(problems.map((p) => p.split(':')[0]), ['routes.pair']);
    assert.deepEqual(warnings.map((w) => w.split(':')[0]), ['routes.private', 'routes.named', 'routes.pair']);
    assert.match(warnings[0] as string, /10\.0\.0\.5.*forbidden.*allowBackends.*\(refused at run time\)$/);
  });

  it('a start (lookup: null) skips host names but still checks IP literals', async () => {
    const { warnings } = await checkConfig(config, { lookup: null });
    assert.deepEqual(warnings.map((w) => w.split(':')[0]), ['routes.private', 'routes.pair']);
  });

  it('allowPrivateBackends: no warnings', async () => {
    const open = parseConfig({ security: { allowPrivateBackends: true }, routes: { a: '10.0.0.5:5432' }, listeners: [{ protocol: 'postgres', port: 6432 }] }, dir);
    assert.deepEqual((await checkConfig(open, { lookup })).warnings, []);
  });
});

describe('checkConfig: routes with replicas need the read/write split (issue 17)', () => {
  const routes = { shop: { primary: '127.0.0.1:5432', replicas: ['127.0.0.1:5433'] }, plain: '127.0.0.1:5432' };
  const auth = { users: { app: { password: 'secret' } } };
  const mysqlAuth = { users: { app: { password: 'secret' } }, backendUser: { user: 'app', password: 'secret' } };

  it('a postgres or mysql listener without auth is refused, saying why', async () => {
    const config = parseConfig({ routes, listeners: [{ name: 'pg', protocol: 'postgres', port: 6432 }, { protocol: 'mysql', port: 3307 }, { protocol: 'tcp', port: 7000, backend: '127.0.0.1:1' }] }, dir);
    const { problems } = await checkConfig(config);
    assert.equal(problems.length, 2);
    assert.match(problems[0] as string, /^routes\.shop: has replicas, but listeners\.0 \(pg\) has no proxy-side auth: only the read\/write split uses replicas.*add auth, pool and readWriteSplit/);
    assert.match(problems[1] as string, /^routes\.shop: has replicas, but listeners\.1 \(mysql-3307\) has no proxy-side auth.*add auth, readWriteSplit/);
  });

  it('auth without readWriteSplit is refused too: the replicas would be ignored', async () => {
    const config = parseConfig({ routes, listeners: [{ protocol: 'postgres', port: 6432, auth, pool: { mode: 'transaction' } }, { protocol: 'mysql', port: 3307, auth: mysqlAuth }] }, dir);
    const { problems } = await checkConfig(config);
    assert.deepEqual(
      problems.map((p) => p.replace(/:.*/s, '') + ' / ' + /has no (\w+)/.exec(p)?.[1]),
      ['routes.shop / readWriteSplit', 'routes.shop / readWriteSplit'],
    );
  });

  it('a postgres listener with auth, a transaction pool and readWriteSplit is fine; so is a listener with a fixed backend', async () => {
    const config = parseConfig(
      { routes, listeners: [{ protocol: 'postgres', port: 6432, auth, pool: { mode: 'transaction' }, readWriteSplit: { maxReplicaLagMs: 500 } }, { protocol: 'postgres', port: 6433, backend: '127.0.0.1:5432' }] },
      dir,
    );
    assert.deepEqual((await checkConfig(config)).problems, []);
  });

  it('readWriteSplit without auth, without pool, or with a session pool is a schema problem naming the field', () => {
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'postgres', port: 6432, readWriteSplit: {} }] }, dir), 'listeners.0.readWriteSplit', /needs proxy-side authentication/);
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'postgres', port: 6432, auth, readWriteSplit: {} }] }, dir), 'listeners.0.readWriteSplit', /needs pool \(mode: transaction\)/);
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'postgres', port: 6432, auth, pool: { mode: 'session' }, readWriteSplit: {} }] }, dir), 'listeners.0.readWriteSplit', /needs pool\.mode "transaction"/);
  });

  it('mysql: readWriteSplit without auth names the field; readOnlyFunctions is not a mysql field; with auth the split is fine', async () => {
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'mysql', port: 3307, readWriteSplit: {} }] }, dir), 'listeners.0.readWriteSplit', /needs `auth` \(with backendUser\)/);
    assert.throws(() => parseConfig({ listeners: [{ protocol: 'mysql', port: 3307, auth: mysqlAuth, readWriteSplit: { readOnlyFunctions: ['f'] } }] }, dir), /readOnlyFunctions/);
    const config = parseConfig({ routes, listeners: [{ protocol: 'mysql', port: 3307, auth: mysqlAuth, readWriteSplit: { maxReplicaLagMs: 500 } }] }, dir);
    assert.deepEqual((await checkConfig(config)).problems, []);
  });
});

describe('friendly schema messages', () => {
  it('a missing field says "required"', () => {
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'postgres' }] }, dir), 'listeners.0.port', /: required \(number\)$/);
  });

  it('an unknown field names the closest known one', () => {
    assertNamesField(() => parseConfig({ cache: { ttlSecond: 5 }, listeners: [{ protocol: 'postgres', port: 1 }] }, dir), 'cache', /unknown field "ttlSecond" \(did you mean "ttlSeconds"\?\)/);
    assertNamesField(() => parseConfig({ listeners: [{ protocol: 'postgres', port: 1, bakend: 'x:1' }] }, dir), 'listeners.0', /did you mean "backend"/);
  });

  it('an unknown field with nothing close lists the fields there', () => {
    assertNamesField(() => parseConfig({ cache: { zzzzzzzz: 5 }, listeners: [{ protocol: 'postgres', port: 1 }] }, dir), 'cache', /unknown field "zzzzzzzz" \(fields here: ttlSeconds, maxEntries\)/);
  });

  it('closest(): small edits only, case-insensitive', () => {
    assert.equal(closest('listner', ['listeners', 'routes']), 'listeners');
    assert.equal(closest('LOGLEVEL', ['logLevel', 'workers']), 'logLevel');
    assert.equal(closest('xyz', ['listeners', 'routes']), null);
  });
});
