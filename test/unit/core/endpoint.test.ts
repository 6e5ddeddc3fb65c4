import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatHostPort, parseEndpoint } from '../../../src/core/endpoint.ts';

/** Asserts parseEndpoint throws a TypeError whose message quotes the input and contains `why`. */
function rejects(input: string, why: RegExp): void {
  assert.throws(
    () => parseEndpoint(input),
    (err: unknown) => {
      assert.ok(err instanceof TypeError, `expected TypeError for ${JSON.stringify(input)}, got ${String(err)}`);
      assert.ok(err.message.includes(`"${input}"`), `message should quote the input: ${err.message}`);
      assert.match(err.message, why);
      return true;
    },
    `parseEndpoint(${JSON.stringify(input)}) should throw`,
  );
}

describe('parseEndpoint: host:port', () => {
  it('parses an IPv4 literal', () => {
    assert.deepEqual(parseEndpoint('127.0.0.1:5432'), { type: 'tcp', host: '127.0.0.1', port: 5432, label: '127.0.0.1:5432' });
  });

  it('parses a hostname and lowercases it, keeping the label as written', () => {
    assert.deepEqual(parseEndpoint('DB-1.Example.COM:6432'), { type: 'tcp', host: 'db-1.example.com', port: 6432, label: 'DB-1.Example.COM:6432' });
  });

  it('trims surrounding whitespace', () => {
    assert.deepEqual(parseEndpoint('  localhost:80 \n'), { type: 'tcp', host: 'localhost', port: 80, label: 'localhost:80' });
  });

  it('accepts the port bounds 1 and 65535', () => {
    assert.equal((parseEndpoint('h:1') as { port: number }).port, 1);
    assert.equal((parseEndpoint('h:65535') as { port: number }).port, 65535);
  });

  it('accepts leading zeros in the port as long as it is at most 5 digits', () => {
    assert.equal((parseEndpoint('h:00080') as { port: number }).port, 80);
  });
});

describe('parseEndpoint: [v6]:port', () => {
  it('parses a bracketed IPv6 literal', () => {
    assert.deepEqual(parseEndpoint('[::1]:5432'), { type: 'tcp', host: '::1', port: 5432, label: '[::1]:5432' });
  });

  it('parses a full IPv6 address and lowercases it', () => {
    assert.deepEqual(parseEndpoint('[2001:DB8::A]:443'), { type: 'tcp', host: '2001:db8::a', port: 443, label: '[2001:DB8::A]:443' });
  });

  it('parses an IPv4-mapped IPv6 address', () => {
    const e = parseEndpoint('[::ffff:10.0.0.1]:80');
    assert.equal(e.type, 'tcp');
    assert.equal(e.type === 'tcp' ? e.host : '', '::ffff:10.0.0.1');
  });
});

describe('parseEndpoint: unix:/path', () => {
  it('parses an absolute unix socket path', () => {
    assert.deepEqual(parseEndpoint('unix:/var/run/postgresql/.s.PGSQL.5432'), {
      type: 'unix',
      path: '/var/run/postgresql/.s.PGSQL.5432',
      label: 'unix:/var/run/postgresql/.s.PGSQL.5432',
    });
  });

  it('keeps the path verbatim (no lowercasing)', () => {
    const e = parseEndpoint('unix:/Tmp/Sock');
    assert.equal(e.type === 'unix' ? e.path : '', '/Tmp/Sock');
  });
});

describe('parseEndpoint: rejections', () => {
  it('missing port', () => {
    rejects('localhost', /expected host:port/);
    rejects('localhost:', /bad port ""/);
    rejects('[::1]', /expected \[v6addr\]:port/);
    rejects('[::1]:', /bad port ""/);
  });

  it('missing host', () => {
    rejects(':5432', /expected host:port/);
    rejects('', /expected host:port/);
  });

  it('port 0 and 65536 are out of range', () => {
    rejects('localhost:0', /port 0 out of range/);
    rejects('localhost:65536', /port 65536 out of range/);
    rejects('[::1]:0', /port 0 out of range/);
    rejects('[::1]:65536', /port 65536 out of range/);
  });

  it('non-numeric, signed and too-long ports', () => {
    rejects('localhost:http', /bad port "http"/);
    rejects('localhost:-1', /bad port "-1"/);
    rejects('localhost:+80', /bad port "\+80"/);
    rejects('localhost:123456', /bad port "123456"/);
  });

  it('bare IPv6 without brackets', () => {
    rejects('::1:5432', /write IPv6 addresses as \[addr\]:port/);
    rejects('2001:db8::1:443', /write IPv6 addresses as \[addr\]:port/);
  });

  it('brackets around something that is not IPv6', () => {
    rejects('[127.0.0.1]:80', /is not an IPv6 address/);
    rejects('[localhost]:80', /is not an IPv6 address/);
    rejects('[::1]5432', /expected \[v6addr\]:port/);
    rejects('[::1:5432', /expected \[v6addr\]:port/);
  });

  it('relative or empty unix paths', () => {
    rejects('unix:', /absolute path/);
    rejects('unix:tmp/sock', /absolute path/);
    rejects('unix:./sock', /absolute path/);
  });

  it('bad host characters', () => {
    rejects('db_1:5432', /bad host "db_1"/);
    rejects('a b:5432', /bad host "a b"/);
    rejects('user@host:5432', /bad host "user@host"/);
    rejects('host/x:5432', /bad host "host\/x"/);
    rejects('hôst:5432', /bad host "hôst"/);
  });
});

describe('formatHostPort', () => {
  it('brackets IPv6 only', () => {
    assert.equal(formatHostPort('::1', 5432), '[::1]:5432');
    assert.equal(formatHostPort('127.0.0.1', 5432), '127.0.0.1:5432');
    assert.equal(formatHostPort('db.example.com', 1), 'db.example.com:1');
  });

  it('round-trips through parseEndpoint', () => {
    for (const [host, port] of [['::1', 5432], ['10.1.2.3', 80], ['fe80::1', 65535]] as const) {
      const e = parseEndpoint(formatHostPort(host, port));
      assert.deepEqual(e.type === 'tcp' ? [e.host, e.port] : null, [host, port]);
    }
  });
});

describe('parseEndpoint: IPv6 zone ids', () => {
  it('accepts a scoped link-local address', () => {
    const e = parseEndpoint('[fe80::1%lo]:80');
    assert.deepEqual(e.type === 'tcp' ? [e.host, e.port] : null, ['fe80::1%lo', 80]);
  });

  // Interface names are case-sensitive on Linux ("Eth0" and "eth0" are different
  // interfaces), but parseEndpoint lowercases the whole host, zone included.
  it('keeps the zone id case as written', () => {
    const e = parseEndpoint('[fe80::1%Eth0]:80');
    assert.equal(e.type === 'tcp' ? e.host : '', 'fe80::1%Eth0');
  });
});
