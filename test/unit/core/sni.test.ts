/**
 * The SNI certificate matcher (src/core/sni.ts): exact and one-label
 * wildcard names, exact over wildcard, case and trailing-dot insensitive,
 * no match → undefined (the listener's default certificate).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SniMatcher, normalizeServerName, serverNamePatternProblem, sniCallback } from '../../../src/core/sni.ts';

const matcher = new SniMatcher<string>([
  { names: ['a.example.com', '*.example.com'], value: 'A' },
  { names: ['*.foo.test'], value: 'B' },
  { names: ['exact.foo.test', 'Mixed.Case.Test'], value: 'C' },
]);

describe('SniMatcher', () => {
  it('matches exact names', () => {
    assert.equal(matcher.match('a.example.com'), 'A');
    assert.equal(matcher.match('exact.foo.test'), 'C');
  });

  it('a wildcard covers exactly one leftmost label', () => {
    assert.equal(matcher.match('b.foo.test'), 'B');
    assert.equal(matcher.match('zz.example.com'), 'A');
    assert.equal(matcher.match('a.b.foo.test'), undefined);
    assert.equal(matcher.match('foo.test'), undefined);
    assert.equal(matcher.match('example.com'), undefined);
    assert.equal(matcher.match('.foo.test'), undefined);
  });

  it('an exact name wins over a wildcard, whatever the order', () => {
    assert.equal(matcher.match('exact.foo.test'), 'C');
    const reversed = new SniMatcher<string>([
      { names: ['*.foo.test'], value: 'wild' },
      { names: ['x.foo.test'], value: 'exact' },
    ]);
    assert.equal(reversed.match('x.foo.test'), 'exact');
    assert.equal(reversed.match('y.foo.test'), 'wild');
  });

  it('ignores case and a trailing dot, on both sides', () => {
    assert.equal(matcher.match('A.EXAMPLE.COM'), 'A');
    assert.equal(matcher.match('B.Foo.Test'), 'B');
    assert.equal(matcher.match('mixed.case.test'), 'C');
    assert.equal(matcher.match('a.example.com.'), 'A');
    assert.equal(new SniMatcher([{ names: ['Dot.Test.'], value: 1 }]).match('dot.test'), 1);
  });

  it('no name or an unknown one gives undefined (the default certificate)', () => {
    assert.equal(matcher.match(undefined), undefined);
    assert.equal(matcher.match(null), undefined);
    assert.equal(matcher.match(''), undefined);
    assert.equal(matcher.match('unknown.test'), undefined);
    assert.equal(matcher.match('localhost'), undefined);
  });

  it('the first entry listing a name keeps it', () => {
    const m = new SniMatcher<number>([
      { names: ['x.test', '*.y.test'], value: 1 },
      { names: ['X.TEST', '*.Y.test'], value: 2 },
    ]);
    assert.equal(m.match('x.test'), 1);
    assert.equal(m.match('a.y.test'), 1);
    assert.equal(m.size, 2);
  });

  it('refuses patterns that are not host names or *.domain', () => {
    assert.throws(() => new SniMatcher([{ names: ['a.*.test'], value: 1 }]), /leftmost label/);
  });

  it('sniCallback answers with the matched context, or none for the default', () => {
    const ctx = {} as never;
    const cb = sniCallback(new SniMatcher([{ names: ['a.test'], value: ctx }]));
    const got: unknown[] = [];
    cb('A.test', (err, context) => got.push(err, context));
    cb('b.test', (err, context) => got.push(err, context));
    assert.deepEqual(got, [null, ctx, null, undefined]);
  });
});

describe('serverNamePatternProblem', () => {
  it('accepts host names and one-label wildcards', () => {
    for (const ok of ['a.example.com', '*.example.com', 'localhost', 'x-1.test', 'A.B.C', 'a.test.', '_dmarc.example.com']) {
      assert.equal(serverNamePatternProblem(ok), null, ok);
    }
  });

  it('refuses partial, inner and bare wildcards, empty labels and odd characters', () => {
    for (const bad of ['', '*', '*.com', 'a*.example.com', 'a.*.example.com', '*.*.example.com', '**.example.com', 'a..b', '.a.b', '-a.test', 'a-.test', 'a b.test', 'a.test/x', 'é.test', `${'x'.repeat(64)}.test`]) {
      assert.notEqual(serverNamePatternProblem(bad), null, bad);
    }
  });

  it('normalizeServerName lowercases and drops one trailing dot', () => {
    assert.equal(normalizeServerName('WWW.Example.COM.'), 'www.example.com');
  });
});
