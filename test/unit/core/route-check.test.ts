import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PolyproxyError } from '../../../src/core/errors.ts';
import { checkRoute, MAX_ENDPOINT_LENGTH, MAX_ROUTE_ENDPOINTS } from '../../../src/core/route-check.ts';

function refused(answer: unknown, field: RegExp): void {
  assert.throws(
    () => checkRoute(answer, 'mod', 'shop'),
    (err: unknown) => {
      assert.ok(err instanceof PolyproxyError);
      assert.equal(err.kind, 'INTERNAL');
      assert.match(err.message, /^resolver "mod" returned a bad route for "shop": /);
      assert.match(err.message, field);
      return true;
    },
  );
}

const ok = { endpoint: '127.0.0.1:5432' };

describe('checkRoute', () => {
  it('copies a valid route, every field', () => {
    const wake = async (): Promise<void> => {};
    const answer = { endpoint: ['127.0.0.1:1', 'unix:/run/pg.sock'], replicas: ['127.0.0.1:2'], timeoutMs: 1500, ttlMs: 0, metadata: { plan: 'free' }, coldStart: { wake }, extra: 'ignored' };
    const route = checkRoute(answer, 'mod', 'shop');
    assert.deepEqual({ ...route, coldStart: undefined }, { endpoint: ['127.0.0.1:1', 'unix:/run/pg.sock'], replicas: ['127.0.0.1:2'], timeoutMs: 1500, ttlMs: 0, metadata: { plan: 'free' }, coldStart: undefined });
    assert.notEqual(route.endpoint, answer.endpoint);
    assert.notEqual(route.metadata, answer.metadata);
    assert.equal(typeof route.coldStart?.wake, 'function');
    assert.deepEqual(checkRoute(ok, 'mod', 'shop'), ok);
    assert.deepEqual(checkRoute({ ...ok, ttlMs: null, metadata: Object.create(null) as object }, 'mod', 'shop'), { ...ok, metadata: {} });
  });

  it('refuses each bad field, naming it', () => {
    for (const answer of ['127.0.0.1:1', 5, [ok], true]) refused(answer, /route must be an object/);
    for (const endpoint of [undefined, 5, [], [5], [''], '', 'x'.repeat(MAX_ENDPOINT_LENGTH + 1), Array(MAX_ROUTE_ENDPOINTS + 1).fill('127.0.0.1:1'), { 0: '127.0.0.1:1' }]) {
      refused({ endpoint }, /endpoint /);
    }
    for (const replicas of ['127.0.0.1:1', [7], Array(MAX_ROUTE_ENDPOINTS + 1).fill('127.0.0.1:1')]) refused({ ...ok, replicas }, /replicas /);
    for (const timeoutMs of ['abc', '100', 0, -1, Number.NaN, Infinity, 2 ** 31, Symbol('t'), 10n, { valueOf: () => 5 }]) refused({ ...ok, timeoutMs }, /timeoutMs /);
    for (const ttlMs of ['abc', -1, Number.NaN, Infinity, Symbol('t'), { valueOf: () => 5 }]) refused({ ...ok, ttlMs }, /ttlMs /);
    for (const metadata of ['x', 5, [1], new Map(), new Date(), () => {}]) refused({ ...ok, metadata }, /metadata /);
    for (const coldStart of ['x', () => {}]) refused({ ...ok, coldStart }, /coldStart must/);
    for (const coldStart of [{}, { wake: 'soon' }]) refused({ ...ok, coldStart }, /coldStart\.wake must be a function/);
  });

  it('a getter or proxy trap that throws is a bad route naming the field, not a crash', () => {
    refused(
      {
        get endpoint(): string {
          throw new Error('getter');
        },
      },
      /endpoint could not be read: Error: getter/,
    );
    refused(
      new Proxy(ok, {
        get: (target, key) => {
          if (key === 'ttlMs') throw new Error('trap');
          return Reflect.get(target, key);
        },
      }),
      /ttlMs could not be read/,
    );
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    refused({ ...ok, metadata: revoked.proxy }, /metadata could not be read/);
  });

  it('coldStart.wake is called on its object and fails as a readable Error whatever it throws', async () => {
    const owner = {
      woken: 0,
      wake(this: { woken: number }): Promise<void> {
        this.woken++;
        return Promise.resolve();
      },
    };
    await checkRoute({ ...ok, coldStart: owner }, 'mod', 'shop').coldStart?.wake();
    assert.equal(owner.woken, 1);
    const hostile = {
      [Symbol.toPrimitive]: (): never => {
        throw new Error('no');
      },
    };
    for (const wake of [
      () => {
        throw hostile;
      },
      () => Promise.reject(hostile),
      () => ({ then: (_: unknown, fail: (e: unknown) => void) => fail(hostile) }),
    ]) {
      await assert.rejects(checkRoute({ ...ok, coldStart: { wake } }, 'mod', 'shop').coldStart?.wake() as Promise<void>, (err: unknown) => err instanceof Error && typeof err.message === 'string');
    }
  });

  it('protocol: h1 or h2 is kept, anything else refused naming the field (issue 20)', () => {
    assert.equal(checkRoute({ endpoint: 'a:1', protocol: 'h2' }, 'mod', 'shop').protocol, 'h2');
    assert.equal(checkRoute({ endpoint: 'a:1', protocol: 'h1' }, 'mod', 'shop').protocol, 'h1');
    assert.equal(checkRoute({ endpoint: 'a:1', protocol: null }, 'mod', 'shop').protocol, undefined);
    refused({ endpoint: 'a:1', protocol: 'http2' }, /protocol must be "h1" or "h2", got "http2"/);
    refused({ endpoint: 'a:1', protocol: 2 }, /protocol must be "h1" or "h2", got 2/);
  });

  it('tls: true or { servername, ca, rejectUnauthorized }, with protocol h2 only; anything else refused naming the field', () => {
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    assert.equal(checkRoute({ endpoint: 'a:1', protocol: 'h2', tls: true }, 'mod', 'shop').tls, true);
    assert.deepEqual(checkRoute({ endpoint: 'a:1', protocol: 'h2', tls: { servername: 'b.internal', ca: pem, rejectUnauthorized: false } }, 'mod', 'shop').tls, { servername: 'b.internal', ca: pem, rejectUnauthorized: false });
    assert.equal(checkRoute({ endpoint: 'a:1', protocol: 'h2', tls: false }, 'mod', 'shop').tls, undefined);
    refused({ endpoint: 'a:1', tls: true }, /tls needs protocol "h2"/);
    refused({ endpoint: 'a:1', protocol: 'h1', tls: {} }, /tls needs protocol "h2"/);
    refused({ endpoint: 'a:1', protocol: 'h2', tls: 'yes' }, /tls must be true or an object, got "yes"/);
    refused({ endpoint: 'a:1', protocol: 'h2', tls: { ca: 'not a pem' } }, /tls\.ca must be PEM certificate text/);
    refused({ endpoint: 'a:1', protocol: 'h2', tls: { servername: '' } }, /tls\.servername must be a host name/);
    refused({ endpoint: 'a:1', protocol: 'h2', tls: { rejectUnauthorized: 'no' } }, /tls\.rejectUnauthorized must be a boolean/);
    refused({ endpoint: 'a:1', protocol: 'h2', tls: { cert: 'x' } }, /tls\.cert is not a field of tls/);
  });
});

describe('checkRoute: credentials (proxy-side authentication)', () => {
  it('copies users with a password or a SCRAM verifier, and backendPassword', () => {
    const answer = { endpoint: '127.0.0.1:5432', credentials: { app: { password: 'pw', extra: 1 }, ro: { scramSecret: 'SCRAM-SHA-256$4096:c2FsdA==$a:b', backendPassword: 'x' } } };
    const route = checkRoute(answer, 'mod', 'shop');
    assert.deepEqual({ ...route.credentials }, { app: { password: 'pw' }, ro: { scramSecret: 'SCRAM-SHA-256$4096:c2FsdA==$a:b', backendPassword: 'x' } });
    assert.notEqual(route.credentials, answer.credentials);
  });

  it('refuses what is not a table of users with exactly one secret, without echoing secrets', () => {
    refused({ ...ok, credentials: 'pw' }, /^.*credentials must be a plain object/);
    refused({ ...ok, credentials: [] }, /credentials must be a plain object/);
    refused({ ...ok, credentials: { app: 'pw' } }, /credentials\.app must be an object/);
    refused({ ...ok, credentials: { app: {} } }, /credentials\.app must have exactly one of password and scramSecret/);
    refused({ ...ok, credentials: { app: { password: 'a', scramSecret: 'b' } } }, /exactly one/);
    refused({ ...ok, credentials: { app: { password: 5 } } }, /credentials\.app\.password must be a non-empty string, got 5/);
    refused({ ...ok, credentials: { app: { password: '' } } }, /got an empty string/);
  });
});
