/**
 * MySQL packets: framing fed whole, byte by byte and split at every offset;
 * the greeting, HandshakeResponse41 (with and without CONNECT_WITH_DB and
 * attributes), SSLRequest and ERR bytes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import {
  CLIENT_CONNECT_ATTRS,
  CLIENT_CONNECT_WITH_DB,
  CLIENT_PLUGIN_AUTH,
  CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
  CLIENT_PROTOCOL_41,
  CLIENT_SECURE_CONNECTION,
  CLIENT_SSL,
  PROXY_CAPABILITIES,
  Reader,
  buildAuthSwitchRequest,
  buildGreeting,
  buildHandshakeResponse,
  errPacket,
  lenencInt,
  packetParser,
  parseErr,
  parseGreeting,
  parseHandshakeResponse,
} from '../../../../src/protocols/mysql/packets.ts';
import type { Packet } from '../../../../src/protocols/mysql/packets.ts';

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/[\s|]/g, ''), 'hex');
}

function isProtocolError(err: unknown): boolean {
  return err instanceof PolyproxyError && err.kind === 'PROTOCOL';
}

/** Feeds `chunks` to a packet parser the way ClientConnection does (buffer, parse, keep the rest). */
function parseAll(chunks: Buffer[]): Packet[] {
  const parse = packetParser(1024);
  const out: Packet[] = [];
  let pending = Buffer.alloc(0);
  for (const chunk of chunks) {
    pending = Buffer.concat([pending, chunk]);
    let done;
    while ((done = parse(pending)) !== undefined) {
      out.push(done.value);
      pending = pending.subarray(done.consumed);
    }
  }
  assert.equal(pending.length, 0, 'nothing left over');
  return out;
}

// COM_QUERY "select 1" (seq 0) then COM_QUIT (seq 0) then an empty packet (seq 3).
const STREAM = hex('09000000 03 73656c6563742031 | 01000000 01 | 00000003');
const EXPECTED = [
  { seq: 0, payload: hex('0373656c6563742031') },
  { seq: 0, payload: hex('01') },
  { seq: 3, payload: Buffer.alloc(0) },
];

describe('packet framing', () => {
  it('parses a stream fed whole', () => {
    assert.deepEqual(parseAll([STREAM]), EXPECTED);
  });

  it('parses a stream fed byte by byte', () => {
    assert.deepEqual(parseAll([...STREAM].map((b) => Buffer.from([b]))), EXPECTED);
  });

  it('parses a stream split at every offset', () => {
    for (let cut = 0; cut <= STREAM.length; cut++) {
      assert.deepEqual(parseAll([STREAM.subarray(0, cut), STREAM.subarray(cut)]), EXPECTED, `cut at ${cut}`);
    }
  });

  it('refuses a packet larger than the handshake limit before it arrives', () => {
    assert.throws(() => packetParser(16)(hex('11000001')), isProtocolError);
  });
});

describe('length-encoded integers', () => {
  for (const n of [0, 250, 251, 0xffff, 0x10000, 0xffffff, 0x1000000]) {
    it(`round-trips ${n}`, () => {
      const bytes = Buffer.concat([lenencInt(n), Buffer.alloc(Math.min(n, 0x1000000))]);
      const r = new Reader(bytes, 'test');
      assert.equal(r.lenenc('n'), n);
    });
  }

  it('refuses 0xff as a length', () => {
    assert.throws(() => new Reader(hex('ff'), 'test').lenenc('n'), isProtocolError);
  });
});

describe('greeting', () => {
  it('builds a HandshakeV10 that parses back', () => {
    const scramble = Buffer.from('abcdefghijklmnopqrst');
    const bytes = buildGreeting({ serverVersion: '8.0.0-polyproxy', connectionId: 7, capabilities: PROXY_CAPABILITIES | CLIENT_SSL, charset: 45, status: 2, scramble, plugin: 'mysql_native_password' });
    assert.equal(bytes[0], 10);
    const g = parseGreeting(bytes);
    assert.equal(g.serverVersion, '8.0.0-polyproxy');
    assert.equal(g.connectionId, 7);
    assert.equal(g.capabilities, (PROXY_CAPABILITIES | CLIENT_SSL) >>> 0);
    assert.deepEqual(g.scramble, scramble);
    assert.equal(g.plugin, 'mysql_native_password');
  });

  it('parses a real MariaDB 10.11 greeting', () => {
    // Captured from MariaDB 10.11.19 (Debian 12).
    const bytes = hex(
      '0a352e352e352d31302e31312e31392d4d6172696144422d302b646562313275310026000000722972255e2c5c6b00fef72d0200ff81150000000000001d000000' +
        '28226f2f36636f25685d7968006d7973716c5f6e61746976655f70617373776f726400',
    );
    const g = parseGreeting(bytes);
    assert.equal(g.serverVersion, '5.5.5-10.11.19-MariaDB-0+deb12u1');
    assert.equal(g.connectionId, 0x26);
    assert.equal(g.scramble.length, 20);
    assert.equal(g.plugin, 'mysql_native_password');
  });

  it('refuses a truncated greeting as a backend protocol error', () => {
    assert.throws(
      () => parseGreeting(hex('0a 352e3500 01000000')),
      (err: unknown) => isProtocolError(err) && (err as PolyproxyError).source === 'backend',
    );
  });
});

const BASE_CAPS = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH;

describe('HandshakeResponse41', () => {
  it('reads user, auth response and plugin without a database', () => {
    const payload = hex(
      '00820800 | 00000001 | 21 | ' + '00'.repeat(23) + ' | 726f6f7400 | 14' + '11'.repeat(20) + ' | 6d7973716c5f6e61746976655f70617373776f726400',
    );
    const r = parseHandshakeResponse(payload);
    assert.equal(r.type, 'response');
    if (r.type !== 'response') return;
    assert.equal(r.user, 'root');
    assert.equal(r.database, '');
    assert.equal(r.authResponse.length, 20);
    assert.equal(r.plugin, 'mysql_native_password');
    assert.equal(r.attributes, null);
  });

  it('reads the database and connection attributes (lenenc auth data)', () => {
    const caps = BASE_CAPS | CLIENT_CONNECT_WITH_DB | CLIENT_CONNECT_ATTRS | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;
    const attrs = Buffer.concat([lenencInt(4), Buffer.from('_pid'), lenencInt(2), Buffer.from('42'), lenencInt(3), Buffer.from('app'), lenencInt(0)]);
    const payload = buildHandshakeResponse({ capabilities: caps, maxPacket: 1 << 24, charset: 45, user: 'alice', authResponse: Buffer.from('xyz'), database: 'shop', plugin: 'caching_sha2_password', rawAttributes: attrs });
    const r = parseHandshakeResponse(payload);
    assert.equal(r.type, 'response');
    if (r.type !== 'response') return;
    assert.equal(r.user, 'alice');
    assert.equal(r.database, 'shop');
    assert.deepEqual(r.authResponse, Buffer.from('xyz'));
    assert.equal(r.plugin, 'caching_sha2_password');
    assert.deepEqual([...(r.attributes ?? [])], [['_pid', '42'], ['app', '']]);
    assert.deepEqual(r.rawAttributes, attrs);
    assert.equal(r.maxPacket, 1 << 24);
  });

  it('recognises an SSLRequest (the 32-byte prefix with CLIENT_SSL)', () => {
    const payload = Buffer.alloc(32);
    payload.writeUInt32LE(BASE_CAPS | CLIENT_SSL, 0);
    payload[8] = 45;
    assert.deepEqual(parseHandshakeResponse(payload), { type: 'ssl', capabilities: (BASE_CAPS | CLIENT_SSL) >>> 0, maxPacket: 0, charset: 45 });
  });

  it('refuses the 32-byte prefix without CLIENT_SSL, pre-4.1 clients and truncations', () => {
    const prefix = Buffer.alloc(32);
    prefix.writeUInt32LE(BASE_CAPS, 0);
    assert.throws(() => parseHandshakeResponse(prefix), isProtocolError);
    assert.throws(() => parseHandshakeResponse(hex('0500000000')), isProtocolError);
    const full = buildHandshakeResponse({ capabilities: BASE_CAPS | CLIENT_CONNECT_ATTRS, maxPacket: 0, charset: 8, user: 'u', authResponse: Buffer.alloc(20), database: '', plugin: 'p', rawAttributes: Buffer.from([3, 0x61]) });
    assert.throws(() => parseHandshakeResponse(full), isProtocolError);
    for (let cut = 33; cut < 32 + 2 + 1 + 5; cut++) assert.throws(() => parseHandshakeResponse(full.subarray(0, cut)), isProtocolError, `cut ${cut}`);
  });
});

describe('ERR and AuthSwitchRequest packets', () => {
  it('encodes ERR with the SQLSTATE marker', () => {
    assert.deepEqual(errPacket(2, 1049, '42000', 'nope'), hex('0d0000 02 | ff 1904 | 23 3432303030 | 6e6f7065'));
  });

  it('encodes ERR without a SQLSTATE in place of a greeting', () => {
    assert.deepEqual(errPacket(0, 1040, null, 'Too'), hex('060000 00 | ff 1004 | 546f6f'));
  });

  it('parses ERR back', () => {
    assert.deepEqual(parseErr(errPacket(2, 1045, '28000', 'Access denied').subarray(4)), { code: 1045, sqlState: '28000', message: 'Access denied' });
  });

  it('passes a backend plugin name on byte for byte, as Latin-1 both ways (issue 15 fuzzing)', () => {
    // A greeting's plugin 0x80 is read as Latin-1; written as UTF-8 it became c2 80.
    const greeting = parseGreeting(buildGreeting({ serverVersion: 'v\u00e9', connectionId: 1, capabilities: BASE_CAPS, charset: 8, status: 2, scramble: Buffer.alloc(20, 1), plugin: 'p\u0080' }));
    assert.equal(greeting.serverVersion, 'v\u00e9');
    assert.equal(greeting.plugin, 'p\u0080');
    assert.deepEqual(buildAuthSwitchRequest(greeting.plugin, Buffer.alloc(0)), hex('fe 708000 00'));
    const response = buildHandshakeResponse({ capabilities: BASE_CAPS, maxPacket: 0, charset: 8, user: 'u', authResponse: Buffer.alloc(0), database: '', plugin: greeting.plugin, rawAttributes: null });
    assert.deepEqual(response.subarray(-3), hex('708000'));
    const parsed = parseHandshakeResponse(response);
    assert.equal(parsed.type === 'response' && parsed.plugin, 'p\u0080');
  });

  it('carries any plugin name and its challenge in an AuthSwitchRequest', () => {
    const data = Buffer.from('0123456789abcdefghij');
    const bytes = buildAuthSwitchRequest('caching_sha2_password', data);
    assert.deepEqual(bytes, Buffer.concat([hex('fe'), Buffer.from('caching_sha2_password\0'), data, hex('00')]));
  });
});
