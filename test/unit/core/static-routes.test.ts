import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StaticRoutes } from '../../../src/core/static-routes.ts';
import type { StaticRouteValue } from '../../../src/core/static-routes.ts';

/** The endpoint(s) the table answers for `id`, or null. */
function endpointOf(routes: StaticRoutes, id: string): unknown {
  return routes.resolve(id)?.endpoint ?? null;
}

function throwsNaming(table: Record<string, StaticRouteValue>, field: string, why: RegExp): void {
  assert.throws(
    () => new StaticRoutes(table),
    (err: unknown) => {
      assert.ok(err instanceof TypeError, `expected TypeError, got ${String(err)}`);
      assert.ok(err.message.startsWith(`${field}: `), `message should start with "${field}: ": ${err.message}`);
      assert.match(err.message, why);
      return true;
    },
  );
}

describe('StaticRoutes: exact ids', () => {
  const routes = new StaticRoutes({ shop: '10.0.0.1:5432', 'blog.example.com': '10.0.0.2:5432' });

  it('answers an exact id', () => {
    assert.deepEqual(routes.resolve('shop'), { endpoint: '10.0.0.1:5432' });
    assert.equal(endpointOf(routes, 'blog.example.com'), '10.0.0.2:5432');
  });

  it('returns null for an unknown id', () => {
    assert.equal(routes.resolve('nope'), null);
    assert.equal(routes.resolve(''), null);
    assert.equal(routes.resolve('shop2'), null);
    assert.equal(routes.resolve('x.shop'), null);
  });

  it('is case-insensitive on both the id and the table key', () => {
    const mixed = new StaticRoutes({ 'Shop.Example.COM': '10.0.0.3:1' });
    assert.equal(endpointOf(mixed, 'shop.example.com'), '10.0.0.3:1');
    assert.equal(endpointOf(mixed, 'SHOP.EXAMPLE.COM'), '10.0.0.3:1');
    assert.equal(endpointOf(routes, 'SHOP'), '10.0.0.1:5432');
  });

  it('returns the same Route object every time (the router keys round-robin on it)', () => {
    assert.equal(routes.resolve('shop'), routes.resolve('SHOP'));
  });

  it('counts exact and wildcard entries in size', () => {
    assert.equal(routes.size, 2);
    assert.equal(new StaticRoutes({}).size, 0);
    assert.equal(new StaticRoutes({ a: 'h:1', '*.b': 'h:2', '*.c.b': 'h:3' }).size, 3);
  });
});

describe('StaticRoutes: *.domain wildcards', () => {
  const routes = new StaticRoutes({
    '*.example.com': '10.0.0.1:1',
    '*.eu.example.com': '10.0.0.2:2',
    '*.com': '10.0.0.3:3',
    'exact.eu.example.com': '10.0.0.4:4',
  });

  it('matches a one-level subdomain', () => {
    assert.equal(endpointOf(routes, 'a.example.com'), '10.0.0.1:1');
  });

  it('matches several levels deep', () => {
    assert.equal(endpointOf(routes, 'a.b.c.example.com'), '10.0.0.1:1');
  });

  it('does not match the bare domain', () => {
    const only = new StaticRoutes({ '*.example.com': '10.0.0.1:1' });
    assert.equal(only.resolve('example.com'), null);
    assert.equal(only.resolve('.example.com'), null);
    // Falls through to a shorter wildcard when one exists.
    assert.equal(endpointOf(routes, 'example.com'), '10.0.0.3:3');
  });

  it('does not match a name that merely ends with the same letters', () => {
    const only = new StaticRoutes({ '*.example.com': '10.0.0.1:1' });
    assert.equal(only.resolve('badexample.com'), null);
    assert.equal(only.resolve('a.example.com.evil'), null);
  });

  it('is case-insensitive', () => {
    const upper = new StaticRoutes({ '*.Example.COM': '10.0.0.1:1' });
    assert.equal(endpointOf(upper, 'A.EXAMPLE.com'), '10.0.0.1:1');
  });

  it('longest suffix wins, whatever the table order', () => {
    assert.equal(endpointOf(routes, 'x.eu.example.com'), '10.0.0.2:2');
    assert.equal(endpointOf(routes, 'x.y.eu.example.com'), '10.0.0.2:2');
    assert.equal(endpointOf(routes, 'x.us.example.com'), '10.0.0.1:1');
    assert.equal(endpointOf(routes, 'other.com'), '10.0.0.3:3');
    // Same table, reversed insertion order.
    const reversed = new StaticRoutes({ '*.com': '10.0.0.3:3', '*.eu.example.com': '10.0.0.2:2', '*.example.com': '10.0.0.1:1' });
    assert.equal(endpointOf(reversed, 'x.eu.example.com'), '10.0.0.2:2');
    assert.equal(endpointOf(reversed, 'x.us.example.com'), '10.0.0.1:1');
  });

  it('an exact id beats any wildcard', () => {
    assert.equal(endpointOf(routes, 'exact.eu.example.com'), '10.0.0.4:4');
    const both = new StaticRoutes({ '*.example.com': '10.0.0.1:1', 'a.example.com': '10.0.0.9:9' });
    assert.equal(endpointOf(both, 'a.example.com'), '10.0.0.9:9');
    assert.equal(endpointOf(both, 'b.example.com'), '10.0.0.1:1');
  });

  it('every id under one wildcard gets the same Route object', () => {
    assert.equal(routes.resolve('a.example.com'), routes.resolve('b.c.example.com'));
  });
});

describe('StaticRoutes: route values', () => {
  it('a list becomes a list endpoint', () => {
    const routes = new StaticRoutes({ pool: ['10.0.0.1:1', '10.0.0.2:2', 'unix:/tmp/s'] });
    assert.deepEqual(routes.resolve('pool'), { endpoint: ['10.0.0.1:1', '10.0.0.2:2', 'unix:/tmp/s'] });
  });

  it('{ primary, replicas } keeps both', () => {
    const routes = new StaticRoutes({ db: { primary: '10.0.0.1:5432', replicas: ['10.0.0.2:5432', '[::1]:5432'] } });
    assert.deepEqual(routes.resolve('db'), { endpoint: '10.0.0.1:5432', replicas: ['10.0.0.2:5432', '[::1]:5432'] });
  });

  it('{ primary } alone has no replicas field', () => {
    const route = new StaticRoutes({ db: { primary: '10.0.0.1:5432' } }).resolve('db');
    assert.deepEqual(route, { endpoint: '10.0.0.1:5432' });
    assert.equal(route !== null && 'replicas' in route, false);
  });
});

describe('StaticRoutes: bad endpoints name routes.<key>', () => {
  it('a bad string endpoint', () => {
    throwsNaming({ ok: 'h:1', shop: 'localhost' }, 'routes.shop', /invalid endpoint "localhost"/);
  });

  it('a bad entry in a list', () => {
    throwsNaming({ pool: ['10.0.0.1:1', '10.0.0.2:0'] }, 'routes.pool', /port 0 out of range/);
  });

  it('an empty list', () => {
    throwsNaming({ pool: [] }, 'routes.pool', /at least one endpoint/);
  });

  it('a bad primary', () => {
    throwsNaming({ db: { primary: '::1:5432' } }, 'routes.db', /\[addr\]:port/);
  });

  it('a bad replica', () => {
    throwsNaming({ db: { primary: '10.0.0.1:5432', replicas: ['10.0.0.2:5432', 'unix:relative'] } }, 'routes.db', /absolute path/);
  });

  it('a wildcard key keeps its spelling in the message', () => {
    throwsNaming({ '*.Example.com': 'bad host:1' }, 'routes.*.Example.com', /bad host "bad host"/);
  });

  it('keeps the endpoint parser error as the cause', () => {
    try {
      new StaticRoutes({ x: 'h:99999' });
      assert.fail('should throw');
    } catch (err) {
      assert.ok(err instanceof TypeError);
      assert.ok(err.cause instanceof TypeError);
      assert.match((err.cause as Error).message, /^invalid endpoint "h:99999"/);
    }
  });

  it('{ endpoint, protocol } routes carry the backend HTTP version (issue 20)', () => {
    const routes = new StaticRoutes({ 'api.test': { endpoint: '127.0.0.1:50051', protocol: 'h2' }, 'pool.test': { endpoint: ['127.0.0.1:1', '127.0.0.1:2'] } });
    assert.deepEqual(routes.resolve('api.test'), { endpoint: '127.0.0.1:50051', protocol: 'h2' });
    assert.deepEqual(routes.resolve('pool.test'), { endpoint: ['127.0.0.1:1', '127.0.0.1:2'] });
    throwsNaming({ bad: { endpoint: 'nope' } }, 'routes.bad', /invalid endpoint/);
    throwsNaming({ empty: { endpoint: [] } }, 'routes.empty', /at least one endpoint/);
  });

  it('tls on an h2 route: the ca file is read when the table is built; a missing one names the route', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pp-static-tls-'));
    try {
      const ca = path.join(dir, 'ca.pem');
      writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
      const routes = new StaticRoutes({
        'a.test': { endpoint: '127.0.0.1:443', protocol: 'h2', tls: { ca, servername: 'a.internal' } },
        'b.test': { endpoint: '127.0.0.1:443', protocol: 'h2', tls: true },
      });
      assert.deepEqual(routes.resolve('a.test'), { endpoint: '127.0.0.1:443', protocol: 'h2', tls: { servername: 'a.internal', ca: readFileSync(ca, 'utf8') } });
      assert.deepEqual(routes.resolve('b.test'), { endpoint: '127.0.0.1:443', protocol: 'h2', tls: true });
      assert.throws(() => new StaticRoutes({ 'c.test': { endpoint: '127.0.0.1:443', protocol: 'h2', tls: { ca: path.join(dir, 'missing.pem') } } }), /^TypeError: routes\.c\.test\.tls\.ca: cannot read /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
