import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SsrfGuard, classifyAddress } from '../../../src/core/ssrf-guard.ts';
import type { HostLookup, LookupAddress } from '../../../src/core/ssrf-guard.ts';
import { parseEndpoint } from '../../../src/core/endpoint.ts';
import type { Endpoint } from '../../../src/core/endpoint.ts';
import { ResolveError } from '../../../src/core/errors.ts';

const strict = (allowBackends: readonly string[] = [], lookup?: HostLookup): SsrfGuard =>
  new SsrfGuard({ allowPrivateBackends: false, allowBackends }, lookup);

function v4(address: string): LookupAddress {
  return { address, family: 4 };
}
function v6(address: string): LookupAddress {
  return { address, family: 6 };
}

/** A lookup that must never be called. */
const noLookup: HostLookup = () => {
  throw new Error('lookup must not be called');
};

function isForbidden(err: unknown): true {
  assert.ok(err instanceof ResolveError, `expected ResolveError, got ${String(err)}`);
  assert.equal(err.kind, 'FORBIDDEN');
  assert.equal(err.code, 'PP_ERR_FORBIDDEN');
  return true;
}

function isUnavailable(err: unknown): true {
  assert.ok(err instanceof ResolveError, `expected ResolveError, got ${String(err)}`);
  assert.equal(err.kind, 'UNAVAILABLE');
  assert.equal(err.code, 'PP_ERR_UNAVAILABLE');
  return true;
}

/** [address, expected classification] */
type Case = readonly [string, string | null];

function assertCases(cases: readonly Case[]): void {
  const guard = strict();
  for (const [ip, expected] of cases) {
    assert.equal(classifyAddress(ip), expected, `classifyAddress(${ip})`);
    const reason = guard.checkAddress(ip);
    if (expected === null) assert.equal(reason, null, `checkAddress(${ip})`);
    else {
      assert.equal(typeof reason, 'string', `checkAddress(${ip}) should refuse`);
      assert.ok(reason?.includes(expected), `checkAddress(${ip}) reason "${reason}" should name ${expected}`);
    }
  }
}

describe('classifyAddress: IPv4 ranges', () => {
  it('0.0.0.0/8', () => assertCases([['0.0.0.0', 'unspecified'], ['0.255.255.255', 'unspecified'], ['1.0.0.0', null]]));
  it('10.0.0.0/8', () => assertCases([['10.0.0.1', 'private'], ['10.255.255.255', 'private'], ['9.255.255.255', null], ['11.0.0.0', null]]));
  it('100.64.0.0/10', () =>
    assertCases([['100.64.0.1', 'carrier-grade-nat'], ['100.127.255.255', 'carrier-grade-nat'], ['100.63.255.255', null], ['100.128.0.0', null]]));
  it('127.0.0.0/8', () => assertCases([['127.0.0.1', 'loopback'], ['127.255.255.254', 'loopback'], ['126.255.255.255', null], ['128.0.0.0', null]]));
  it('169.254.0.0/16', () =>
    assertCases([['169.254.169.254', 'link-local'], ['169.254.0.0', 'link-local'], ['169.253.255.255', null], ['169.255.0.0', null]]));
  it('172.16.0.0/12', () =>
    assertCases([['172.16.0.1', 'private'], ['172.31.255.255', 'private'], ['172.15.255.255', null], ['172.32.0.0', null]]));
  it('192.0.0.0/24', () => assertCases([['192.0.0.8', 'ietf-protocol'], ['192.0.0.255', 'ietf-protocol'], ['192.0.1.0', null]]));
  it('192.0.2.0/24', () => assertCases([['192.0.2.1', 'documentation'], ['192.0.3.0', null]]));
  it('192.88.99.0/24', () => assertCases([['192.88.99.1', '6to4-relay'], ['192.88.98.255', null], ['192.88.100.0', null]]));
  it('192.168.0.0/16', () =>
    assertCases([['192.168.1.1', 'private'], ['192.168.255.255', 'private'], ['192.167.255.255', null], ['192.169.0.0', null]]));
  it('198.18.0.0/15', () =>
    assertCases([['198.18.0.1', 'benchmarking'], ['198.19.255.255', 'benchmarking'], ['198.17.255.255', null], ['198.20.0.0', null]]));
  it('198.51.100.0/24', () => assertCases([['198.51.100.7', 'documentation'], ['198.51.99.255', null], ['198.51.101.0', null]]));
  it('203.0.113.0/24', () => assertCases([['203.0.113.9', 'documentation'], ['203.0.112.255', null], ['203.0.114.0', null]]));
  it('224.0.0.0/4', () => assertCases([['224.0.0.1', 'multicast'], ['239.255.255.255', 'multicast'], ['223.255.255.255', null]]));
  it('240.0.0.0/4', () => assertCases([['240.0.0.1', 'reserved'], ['255.255.255.254', 'reserved']]));
  it('255.255.255.255', () => assertCases([['255.255.255.255', 'broadcast']]));
  it('public IPv4 addresses are allowed', () => assertCases([['8.8.8.8', null], ['1.1.1.1', null], ['93.184.216.34', null], ['223.255.255.255', null]]));
});

describe('classifyAddress: IPv6 ranges', () => {
  it('::/128 and ::1/128', () =>
    assertCases([['::', 'unspecified'], ['0:0:0:0:0:0:0:0', 'unspecified'], ['::1', 'loopback'], ['0000:0000:0000:0000:0000:0000:0000:0001', 'loopback']]));
  it('::/96 IPv4-compatible is reserved', () => assertCases([['::2', 'reserved'], ['::1.2.3.4', 'reserved'], ['::8.8.8.8', 'reserved'], ['::ffff:ffff', 'reserved']]));
  it('100::/64 discard', () => {
    assertCases([['100::', 'discard'], ['100::ffff:ffff:ffff:ffff', 'discard']]);
    assert.notEqual(classifyAddress('100:0:0:1::'), 'discard');
  });
  it('2001::/23 IETF protocol assignments, incl. teredo 2001::/32', () =>
    assertCases([
      ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'teredo'],
      ['2001::1', 'teredo'],
      ['2001:1::1', 'ietf-protocol'],
      ['2001:2::1', 'benchmarking'],
      ['2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff', 'ietf-protocol'],
      ['2001:200::', null],
    ]));
  it('2001:db8::/32 documentation', () =>
    assertCases([['2001:db8::1', 'documentation'], ['2001:DB8:FFFF::', 'documentation'], ['2001:db7:ffff::', null], ['2001:db9::', null]]));
  it('3fff::/20 documentation (RFC 9637)', () => assertCases([['3fff::1', 'documentation'], ['3fff:fff::', 'documentation'], ['3fff:1000::', null]]));
  it('fc00::/7 unique-local', () =>
    assertCases([['fc00::1', 'unique-local'], ['fd12:3456:789a::1', 'unique-local'], ['fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'unique-local']]));
  it('fe80::/10 link-local', () => assertCases([['fe80::1', 'link-local'], ['febf:ffff::1', 'link-local'], ['fe80::1%eth0', 'link-local']]));
  it('fec0::/10 site-local', () => assertCases([['fec0::1', 'site-local'], ['feff:ffff::', 'site-local']]));
  it('ff00::/8 multicast', () => assertCases([['ff02::1', 'multicast'], ['ff00::', 'multicast'], ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'multicast']]));
  it('anything outside 2000::/3 not named above is reserved', () =>
    assertCases([['1::', 'reserved'], ['1fff:ffff::', 'reserved'], ['4000::1', 'reserved'], ['5f00::1', 'reserved'], ['fbff::1', 'reserved'], ['fe00::1', 'reserved']]));
  it('edges of 2000::/3 are public', () => assertCases([['2000::', null], ['3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', null]]));
  it('public IPv6 addresses are allowed', () => assertCases([['2606:4700::1111', null], ['2001:4860:4860::8888', null], ['2a00:1450:4001::1', null]]));
});

describe('classifyAddress: IPv6 forms embedding IPv4', () => {
  it('IPv4-mapped ::ffff:0:0/96 is classified by the embedded IPv4', () =>
    assertCases([
      ['::ffff:8.8.8.8', null],
      ['::ffff:808:808', null],
      ['::ffff:127.0.0.1', 'loopback'],
      ['::ffff:7f00:1', 'loopback'],
      ['::FFFF:7F00:0001', 'loopback'],
      ['0:0:0:0:0:ffff:127.0.0.1', 'loopback'],
      ['::ffff:10.1.2.3', 'private'],
      ['::ffff:a9fe:a9fe', 'link-local'],
      ['::ffff:0.0.0.0', 'unspecified'],
      ['::ffff:255.255.255.255', 'broadcast'],
    ]));
  it('NAT64 64:ff9b::/96 is classified by the embedded IPv4', () =>
    assertCases([
      ['64:ff9b::8.8.8.8', null],
      ['64:ff9b::808:808', null],
      ['64:ff9b::7f00:1', 'loopback'],
      ['64:ff9b::127.0.0.1', 'loopback'],
      ['64:ff9b::a00:1', 'private'],
      ['64:ff9b::a9fe:a9fe', 'link-local'],
    ]));
  it('local-use NAT64 64:ff9b:1::/48 names an internal embedded IPv4, and is refused anyway', () =>
    assertCases([
      ['64:ff9b:1::7f00:1', 'loopback'],
      ['64:ff9b:1::192.168.0.1', 'private'],
      ['64:ff9b:1::808:808', 'nat64'],
      ['64:ff9b:1:ffff:ffff:ffff:808:808', 'nat64'],
    ]));
  it('6to4 2002::/16 is classified by the IPv4 in bits 16..48', () =>
    assertCases([
      ['2002:808:808::1', null],
      ['2002:7f00:1::', 'loopback'],
      ['2002:7f00:1:ffff:ffff:ffff:ffff:ffff', 'loopback'],
      ['2002:c0a8:101::1', 'private'],
      ['2002:a9fe:a9fe::', 'link-local'],
      ['2002::', 'unspecified'],
    ]));
});

describe('classifyAddress: parsing', () => {
  it('handles zone ids, uppercase and every compression form', () =>
    assertCases([
      ['::1%lo', 'loopback'],
      ['FE80::1%25eth0', 'link-local'],
      ['FE80:0:0:0:0:0:0:1', 'link-local'],
      ['fe80::0:1', 'link-local'],
      ['::ffff:127.0.0.1%eth0', 'loopback'],
      ['2606:4700:0:0:0:0:0:1111', null],
      ['2606:4700::0:1111', null],
      ['1:2:3:4:5:6:7::', 'reserved'],
      ['::2:3:4:5:6:7:8', 'reserved'],
    ]));
  it('returns a reason for anything that is not a strict IP literal', () => {
    const guard = strict();
    for (const s of [
      '',
      'localhost',
      '127.1',
      '2130706433',
      '0x7f000001',
      '0177.0.0.1',
      '01.2.3.4',
      '1.2.3',
      '1.2.3.4.5',
      '256.0.0.1',
      ' 127.0.0.1',
      '127.0.0.1 ',
      '1.2.3.4%eth0',
      '[::1]',
      '::1::',
      ':::1',
      '1:2:3:4:5:6:7:8:9',
      '1:2:3:4:5:6:7:8::',
      '::1:2:3:4:5:6:7:8',
      '12345::1',
      'fe80::1%',
      'fe80::1%a b',
      '::ffff:1.2.3',
      '1.2.3.4::',
      'g::1',
    ]) {
      assert.equal(classifyAddress(s), 'invalid', `classifyAddress(${JSON.stringify(s)})`);
      assert.equal(typeof guard.checkAddress(s), 'string', `checkAddress(${JSON.stringify(s)})`);
    }
  });
});

describe('SsrfGuard options', () => {
  it('allowPrivateBackends allows every IP', () => {
    const guard = new SsrfGuard({ allowPrivateBackends: true, allowBackends: [] });
    for (const ip of ['127.0.0.1', '10.0.0.1', '169.254.169.254', '::1', 'fe80::1%eth0', '::ffff:7f00:1', '8.8.8.8']) {
      assert.equal(guard.checkAddress(ip), null, ip);
    }
  });

  it('allowBackends with a CIDR allows exactly that range', () => {
    const guard = strict(['10.0.0.0/8', 'fd00::/8']);
    assert.equal(guard.checkAddress('10.1.2.3'), null);
    assert.equal(guard.checkAddress('10.255.255.255'), null);
    assert.equal(guard.checkAddress('fd12::1'), null);
    assert.equal(guard.checkAddress('8.8.8.8'), null);
    assert.equal(typeof guard.checkAddress('172.16.0.1'), 'string');
    assert.equal(typeof guard.checkAddress('fc00::1'), 'string');
    assert.equal(typeof guard.checkAddress('127.0.0.1'), 'string');
  });

  it('allowBackends with a single IP allows only that IP', () => {
    const guard = strict(['10.0.0.5', '::1']);
    assert.equal(guard.checkAddress('10.0.0.5'), null);
    assert.equal(typeof guard.checkAddress('10.0.0.6'), 'string');
    assert.equal(guard.checkAddress('::1'), null);
    assert.equal(guard.checkAddress('0:0:0:0:0:0:0:1'), null);
    assert.equal(typeof guard.checkAddress('::2'), 'string');
  });

  it('IPv4 allowlist entries match IPv4-mapped IPv6 addresses', () => {
    const guard = strict(['127.0.0.0/8']);
    assert.equal(guard.checkAddress('::ffff:127.0.0.1'), null);
    assert.equal(guard.checkAddress('::ffff:7f00:1'), null);
    assert.equal(typeof guard.checkAddress('::ffff:10.0.0.1'), 'string');
    // ...and a mapped-IPv6 entry matches the plain IPv4 spelling
    assert.equal(strict(['::ffff:10.0.0.0/104']).checkAddress('10.9.9.9'), null);
  });

  it('a /0 entry allows the whole family', () => {
    assert.equal(strict(['0.0.0.0/0']).checkAddress('127.0.0.1'), null);
    assert.equal(typeof strict(['0.0.0.0/0']).checkAddress('::1'), 'string');
    assert.equal(strict(['::/0']).checkAddress('::1'), null);
  });

  it('validateAllowEntry accepts CIDRs, IPs and unix prefixes', () => {
    for (const e of ['127.0.0.0/8', '10.0.0.5', '10.0.0.5/32', '0.0.0.0/0', '::1', '::/0', 'fd00::/8', 'FD00::/8', '::ffff:0:0/96', ' 10.0.0.0/8 ', 'unix:/var/run/', 'unix:/run/pg']) {
      assert.doesNotThrow(() => SsrfGuard.validateAllowEntry(e), e);
    }
  });

  it('validateAllowEntry throws TypeError naming invalid entries', () => {
    for (const e of [
      '',
      '   ',
      'localhost',
      'example.com/8',
      '10.0.0.0/33',
      '10.0.0.0/-1',
      '10.0.0.0/',
      '10.0.0.0/08',
      '10.0.0.0/8/8',
      '10.0.0.5/8', // host bits set
      'fd00::1/8',
      '::/129',
      '10.0.0',
      'fe80::1%eth0',
      'unix:',
      'unix:relative/path',
      'unix:/bad\0path',
      '*',
    ]) {
      assert.throws(
        () => SsrfGuard.validateAllowEntry(e),
        (err: unknown) => err instanceof TypeError && err.message.includes(JSON.stringify(e.slice(0, 80))),
        JSON.stringify(e),
      );
    }
  });

  it('the constructor validates allowBackends', () => {
    assert.throws(() => strict(['10.0.0.0/8', 'nope']), TypeError);
    assert.throws(() => new SsrfGuard({ allowPrivateBackends: true, allowBackends: ['10.0.0.0/99'] }), TypeError);
  });
});

describe('SsrfGuard.check', () => {
  const tcp = (text: string): Endpoint => parseEndpoint(text);

  it('IP literals are checked without a lookup', async () => {
    const guard = strict([], noLookup);
    const ep = tcp('8.8.8.8:53');
    assert.deepEqual(await guard.check(ep), ep);
    assert.deepEqual(await guard.check(tcp('[2606:4700::1111]:443')), tcp('[2606:4700::1111]:443'));
    await assert.rejects(guard.check(tcp('127.0.0.1:5432')), isForbidden);
    await assert.rejects(guard.check(tcp('[::1]:5432')), isForbidden);
    await assert.rejects(guard.check(tcp('[::ffff:7f00:1]:5432')), isForbidden);
    await assert.rejects(guard.check(tcp('169.254.169.254:80')), isForbidden);
  });

  it('resolves once per check and returns the IP it checked (no DNS rebinding)', async () => {
    let calls = 0;
    const seen: string[] = [];
    const rebinding: HostLookup = async (hostname) => {
      seen.push(hostname);
      calls++;
      return calls === 1 ? [v4('93.184.216.34')] : [v4('127.0.0.1')];
    };
    const guard = strict([], rebinding);
    const ep = tcp('db.example.com:5432');
    const checked = await guard.check(ep);
    assert.equal(calls, 1);
    assert.deepEqual(checked, { type: 'tcp', host: '93.184.216.34', port: 5432, label: ep.label });
    await assert.rejects(guard.check(ep), isForbidden);
    assert.equal(calls, 2);
    assert.deepEqual(seen, ['db.example.com', 'db.example.com']);
  });

  it('uses the first address when all are allowed', async () => {
    const guard = strict([], async () => [v6('2606:4700::1111'), v4('1.1.1.1')]);
    assert.deepEqual(await guard.check(tcp('one.example:443')), { type: 'tcp', host: '2606:4700::1111', port: 443, label: 'one.example:443' });
  });

  it('any forbidden address forbids the endpoint', async () => {
    await assert.rejects(strict([], async () => [v4('8.8.8.8'), v4('10.0.0.1')]).check(tcp('mixed.example:80')), isForbidden);
    await assert.rejects(strict([], async () => [v4('10.0.0.1'), v4('8.8.8.8')]).check(tcp('mixed.example:80')), isForbidden);
    await assert.rejects(strict([], async () => [v4('8.8.8.8'), v6('::ffff:127.0.0.1')]).check(tcp('mixed.example:80')), isForbidden);
    await assert.rejects(strict([], async () => [v6('fe80::1%eth0')]).check(tcp('ll.example:80')), isForbidden);
  });

  it('a lookup answer that is not an IP is forbidden', async () => {
    await assert.rejects(strict([], async () => [v4('not-an-ip')]).check(tcp('weird.example:80')), isForbidden);
    await assert.rejects(strict([], async () => [v4('127.1')]).check(tcp('weird.example:80')), isForbidden);
  });

  it('lookup failure is UNAVAILABLE', async () => {
    const enotfound: HostLookup = async (hostname) => {
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND', hostname });
    };
    await assert.rejects(strict([], enotfound).check(tcp('nope.invalid:80')), isUnavailable);
    await assert.rejects(strict([], async () => []).check(tcp('empty.example:80')), isUnavailable);
  });

  it('allowlisted resolved addresses pass and are pinned', async () => {
    const guard = strict(['10.0.0.0/8'], async () => [v4('10.0.0.5')]);
    assert.deepEqual(await guard.check(tcp('internal.example:5432')), { type: 'tcp', host: '10.0.0.5', port: 5432, label: 'internal.example:5432' });
  });

  it('allowPrivateBackends returns the endpoint untouched, without a lookup', async () => {
    const guard = new SsrfGuard({ allowPrivateBackends: true, allowBackends: [] }, noLookup);
    const ep = tcp('localhost:5432');
    assert.equal(await guard.check(ep), ep);
    const sock = parseEndpoint('unix:/var/run/postgresql/.s.PGSQL.5432');
    assert.equal(await guard.check(sock), sock);
  });

  it('unix endpoints are forbidden unless a unix: prefix matches', async () => {
    const sock = parseEndpoint('unix:/var/run/postgresql/.s.PGSQL.5432');
    await assert.rejects(strict([], noLookup).check(sock), isForbidden);
    await assert.rejects(strict(['127.0.0.0/8'], noLookup).check(sock), isForbidden);
    await assert.rejects(strict(['unix:/var/run/mysqld/'], noLookup).check(sock), isForbidden);
    assert.deepEqual(await strict(['unix:/var/run/postgresql/'], noLookup).check(sock), sock);
    assert.deepEqual(await strict(['unix:/var/run/'], noLookup).check(sock), sock);
    assert.deepEqual(await strict(['unix:/var/run/postgresql'], noLookup).check(sock), sock);
    assert.deepEqual(await strict(['unix:/var/run/postgresql/.s.PGSQL.5432'], noLookup).check(sock), sock);
    assert.deepEqual(await strict(['unix:/'], noLookup).check(sock), sock);
  });

  it('unix prefixes match whole path components, not string prefixes (issue 16, defect 7)', async () => {
    const sock = parseEndpoint('unix:/var/run/postgresql/.s.PGSQL.5432');
    await assert.rejects(strict(['unix:/var/run/postgres'], noLookup).check(sock), isForbidden);
    await assert.rejects(strict(['unix:/var/run/post'], noLookup).check(sock), isForbidden);
    await assert.rejects(strict(['unix:/var/run/postgresql/.s.PGSQL'], noLookup).check(sock), isForbidden);
    await assert.rejects(strict(['unix:/run/pg.sock'], noLookup).check(parseEndpoint('unix:/run/pg.sock.evil')), isForbidden);
    assert.deepEqual(await strict(['unix:/run/pg.sock'], noLookup).check(parseEndpoint('unix:/run/pg.sock')), parseEndpoint('unix:/run/pg.sock'));
  });

  it('unix paths are normalized before the prefix match, and the normalized path is returned', async () => {
    const guard = strict(['unix:/var/run/postgresql/'], noLookup);
    await assert.rejects(guard.check(parseEndpoint('unix:/var/run/postgresql/../../../etc/evil.sock')), isForbidden);
    const checked = await guard.check(parseEndpoint('unix:/var/run//postgresql/./.s.PGSQL.5432'));
    assert.equal(checked.type, 'unix');
    assert.equal(checked.type === 'unix' ? checked.path : '', '/var/run/postgresql/.s.PGSQL.5432');
  });
});
