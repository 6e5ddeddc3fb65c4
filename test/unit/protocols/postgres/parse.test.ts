/**
 * parseStartupPacket (and, at the end, BackendKeyScanner) over wire bytes
 * written as hex, fed whole, byte by byte and split at every offset. Packet layouts:
 * https://www.postgresql.org/docs/current/protocol-message-formats.html
 * (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { PolyproxyError } from '../../../../src/core/errors.ts';
import { encodeError } from '../../../../src/protocols/postgres/errors.ts';
import { BackendKeyScanner, MAX_STARTUP_PACKET, parseStartupPacket } from '../../../../src/protocols/postgres/parse.ts';
import type { StartupPacket } from '../../../../src/protocols/postgres/parse.ts';
import { errorFields, hex, isProtocolError } from './wire.ts';

// --- fixtures ----------------------------------------------------------------

//                        length   | code 1234.5679
const SSL_REQUEST = hex('00000008 | 04d2162f');
//                           length   | code 1234.5680
const GSSENC_REQUEST = hex('00000008 | 04d21630');
//                        length   | code 1234.5678 | pid 12345 | 4-byte secret (3.0)
const CANCEL_30 = hex('00000010 | 04d2162e       | 00003039  | deadbeef');
//                    length 44 | code     | pid 54321 | 32-byte secret (3.2 allows up to 256)
const CANCEL_32 = hex(`0000002c | 04d2162e | 0000d431 |
  00112233445566778899aabbccddeeff 00112233445566778899aabbccddeeff`);
// StartupMessage 3.0: user=alice database=shop application_name=psql
const STARTUP_30 = hex(`00000038 | 00030000 |
  7573657200 616c69636500 |
  646174616261736500 73686f7000 |
  6170706c69636174696f6e5f6e616d6500 7073716c00 |
  00`);
// StartupMessage 3.2 (196610): user=bob options="-c geqo=off"
const STARTUP_32 = hex(`00000026 | 00030002 |
  7573657200 626f6200 |
  6f7074696f6e7300 2d63206765716f3d6f666600 |
  00`);

interface ValidCase {
  readonly name: string;
  readonly bytes: Buffer;
  readonly expected: StartupPacket;
}

const VALID: readonly ValidCase[] = [
  { name: 'SSLRequest', bytes: SSL_REQUEST, expected: { type: 'ssl' } },
  { name: 'GSSENCRequest', bytes: GSSENC_REQUEST, expected: { type: 'gssenc' } },
  { name: 'CancelRequest 3.0 (4-byte secret)', bytes: CANCEL_30, expected: { type: 'cancel', key: '00003039deadbeef', raw: CANCEL_30 } },
  {
    name: 'CancelRequest 3.2 (32-byte secret)',
    bytes: CANCEL_32,
    expected: { type: 'cancel', key: '0000d431' + '00112233445566778899aabbccddeeff'.repeat(2), raw: CANCEL_32 },
  },
  {
    name: 'StartupMessage 3.0',
    bytes: STARTUP_30,
    expected: {
      type: 'startup',
      version: 196608,
      params: new Map([
        ['user', 'alice'],
        ['database', 'shop'],
        ['application_name', 'psql'],
      ]),
      raw: STARTUP_30,
    },
  },
  {
    name: 'StartupMessage 3.2',
    bytes: STARTUP_32,
    expected: {
      type: 'startup',
      version: 196610,
      params: new Map([
        ['user', 'bob'],
        ['options', '-c geqo=off'],
      ]),
      raw: STARTUP_32,
    },
  },
];

// --- feeding -----------------------------------------------------------------

interface Emitted {
  readonly value: StartupPacket;
  /** Total bytes fed when the packet came out. */
  readonly afterBytes: number;
}

/** Feeds chunks the way ClientConnection does: append, parse until undefined, drop what was consumed. */
function feed(chunks: readonly Buffer[]): { emitted: Emitted[]; rest: Buffer } {
  let pending = Buffer.alloc(0);
  let fed = 0;
  const emitted: Emitted[] = [];
  for (const chunk of chunks) {
    pending = Buffer.concat([pending, chunk]);
    fed += chunk.length;
    while (pending.length > 0) {
      const result = parseStartupPacket(pending);
      if (result === undefined) break;
      assert.ok(result.consumed > 0 && result.consumed <= pending.length, `consumed ${result.consumed} of ${pending.length}`);
      emitted.push({ value: result.value, afterBytes: fed });
      pending = pending.subarray(result.consumed);
    }
  }
  return { emitted, rest: pending };
}

function bytewise(bytes: Buffer): Buffer[] {
  return [...bytes].map((byte) => Buffer.from([byte]));
}

// --- valid packets -----------------------------------------------------------

describe('parseStartupPacket: valid packets', () => {
  for (const { name, bytes, expected } of VALID) {
    describe(name, () => {
      it('parses when fed whole and consumes exactly the packet', () => {
        const result = parseStartupPacket(bytes);
        assert.deepStrictEqual(result, { value: expected, consumed: bytes.length });
      });

      it('returns undefined for every strict prefix, byte by byte', () => {
        const { emitted, rest } = feed(bytewise(bytes));
        assert.deepStrictEqual(emitted, [{ value: expected, afterBytes: bytes.length }]);
        assert.equal(rest.length, 0);
      });

      it('parses when split at every offset', () => {
        for (let cut = 0; cut <= bytes.length; cut++) {
          const { emitted, rest } = feed([bytes.subarray(0, cut), bytes.subarray(cut)]);
          assert.deepStrictEqual(emitted, [{ value: expected, afterBytes: bytes.length }], `cut at ${cut}`);
          assert.equal(rest.length, 0, `cut at ${cut}`);
        }
      });

      it('leaves bytes pipelined after the packet unconsumed', () => {
        // A simple Query 'Q' "SELECT 1" sent before the answer came back.
        const query = hex('51 0000000d 53454c4543542031 00');
        const result = parseStartupPacket(Buffer.concat([bytes, query]));
        assert.ok(result !== undefined);
        assert.equal(result.consumed, bytes.length);
        assert.deepStrictEqual(result.value, expected);
      });
    });
  }

  const PAIRS: ReadonlyArray<readonly [ValidCase, ValidCase]> = [
    [VALID[0] as ValidCase, VALID[5] as ValidCase], // SSLRequest then StartupMessage 3.2
    [VALID[1] as ValidCase, VALID[4] as ValidCase], // GSSENCRequest then StartupMessage 3.0
    [VALID[2] as ValidCase, VALID[3] as ValidCase], // two CancelRequests
    [VALID[4] as ValidCase, VALID[4] as ValidCase], // the same StartupMessage twice
  ];
  for (const [first, second] of PAIRS) {
    it(`parses ${first.name} + ${second.name} back to back, split at every offset`, () => {
      const both = Buffer.concat([first.bytes, second.bytes]);
      const expected: Emitted[] = [
        { value: first.expected, afterBytes: first.bytes.length },
        { value: second.expected, afterBytes: both.length },
      ];
      const whole = parseStartupPacket(both);
      assert.deepStrictEqual(whole, { value: first.expected, consumed: first.bytes.length });
      assert.deepStrictEqual(feed(bytewise(both)).emitted, expected);
      for (let cut = 0; cut <= both.length; cut++) {
        const { emitted, rest } = feed([both.subarray(0, cut), both.subarray(cut)]);
        // The first packet comes out with the chunk that completes it.
        const firstAt = cut >= first.bytes.length ? cut : both.length;
        assert.deepStrictEqual(emitted, [{ value: first.expected, afterBytes: firstAt }, expected[1]], `cut at ${cut}`);
        assert.equal(rest.length, 0);
      }
    });
  }

  it('copies raw out of the caller buffer, which the caller reuses', () => {
    const input = Buffer.from(STARTUP_30);
    const result = parseStartupPacket(input);
    assert.ok(result !== undefined && result.value.type === 'startup');
    input.fill(0xff);
    assert.deepStrictEqual(result.value.raw, STARTUP_30);
  });

  it('accepts the boundary lengths', () => {
    // CancelRequest with the largest 3.2 secret: 8 + pid 4 + key 256 = 268 (0x10c).
    const bigCancel = Buffer.concat([hex('0000010c 04d2162e 00000001'), Buffer.alloc(256, 0xab)]);
    assert.deepStrictEqual(parseStartupPacket(bigCancel), {
      value: { type: 'cancel', key: '00000001' + 'ab'.repeat(256), raw: bigCancel },
      consumed: 268,
    });
    // A StartupMessage of exactly MAX_STARTUP_PACKET bytes: 8 + "user\0a\0" + "x\0" + value + "\0" + "\0".
    const value = 'v'.repeat(MAX_STARTUP_PACKET - 19);
    const body = Buffer.from(`user\0a\0x\0${value}\0\0`);
    const head = Buffer.alloc(8);
    head.writeUInt32BE(8 + body.length, 0);
    head.writeUInt32BE(196608, 4);
    const max = Buffer.concat([head, body]);
    assert.equal(max.length, MAX_STARTUP_PACKET);
    const result = parseStartupPacket(max);
    assert.ok(result !== undefined && result.value.type === 'startup');
    assert.equal(result.consumed, MAX_STARTUP_PACKET);
    assert.equal(result.value.params.get('x'), value);
  });

  it('keeps empty values other than user', () => {
    // user=alice options=""
    const bytes = hex('0000001d 00030000 7573657200 616c69636500 6f7074696f6e730000 00');
    const result = parseStartupPacket(bytes);
    assert.ok(result !== undefined && result.value.type === 'startup');
    assert.deepStrictEqual(
      result.value.params,
      new Map([
        ['user', 'alice'],
        ['options', ''],
      ]),
    );
  });
});

// --- malformed packets -------------------------------------------------------

interface BadCase {
  readonly name: string;
  readonly bytes: Buffer;
  /** Bytes needed before the parser can tell (and must tell) that the packet is bad. */
  readonly throwsAt: number;
}

const V2_STARTUP = Buffer.concat([hex('00000128 00020000'), Buffer.alloc(296 - 8)]); // fixed 296-byte 2.0 packet

const BAD: readonly BadCase[] = [
  { name: 'length 0', bytes: hex('00000000 00030000'), throwsAt: 4 },
  { name: 'length 7 (< 8)', bytes: hex('00000007 00030000'), throwsAt: 4 },
  { name: 'length 10001 (> MAX_STARTUP_PACKET)', bytes: hex('00002711 00030000 7573657200'), throwsAt: 4 },
  { name: 'length 0xffffffff', bytes: hex('ffffffff 00030000'), throwsAt: 4 },
  { name: 'SSLRequest with length 12', bytes: hex('0000000c 04d2162f 00000000'), throwsAt: 8 },
  { name: 'GSSENCRequest with length 16', bytes: hex('00000010 04d21630 0000000000000000'), throwsAt: 8 },
  { name: 'CancelRequest with length 12 (no secret)', bytes: hex('0000000c 04d2162e 00003039'), throwsAt: 8 },
  { name: 'CancelRequest with length 15 (3-byte secret)', bytes: hex('0000000f 04d2162e 00003039 deadbe'), throwsAt: 8 },
  { name: 'CancelRequest with length 269 (257-byte secret)', bytes: Buffer.concat([hex('0000010d 04d2162e 00003039'), Buffer.alloc(257)]), throwsAt: 8 },
  { name: 'unknown negotiation code 1234.5681', bytes: hex('00000008 04d21631'), throwsAt: 8 },
  { name: 'protocol 2.0', bytes: V2_STARTUP, throwsAt: 8 },
  { name: 'protocol 4.0', bytes: hex('00000010 00040000 7573657200 6100 00'), throwsAt: 8 },
  { name: 'StartupMessage with no parameters at all', bytes: hex('00000008 00030000'), throwsAt: 8 },
  { name: 'missing final terminator', bytes: hex('00000013 00030000 7573657200 616c69636500'), throwsAt: 19 },
  { name: 'unterminated parameter name', bytes: hex('0000000c 00030000 75736572'), throwsAt: 12 },
  { name: 'unterminated parameter value', bytes: hex('00000012 00030000 7573657200 616c696365'), throwsAt: 18 },
  { name: 'missing user', bytes: hex('00000017 00030000 646174616261736500 73686f7000 00'), throwsAt: 23 },
  { name: 'empty user', bytes: hex('0000000f 00030000 7573657200 00 00'), throwsAt: 15 },
  // user=alice options="" user=carol: PostgreSQL keeps the last value, a pooler may keep the first (issue 15).
  { name: 'a repeated user', bytes: hex('00000028 00030000 7573657200 616c69636500 6f7074696f6e730000 7573657200 6361726f6c00 00'), throwsAt: 40 },
  // user=a database=x database=y
  { name: 'a repeated database', bytes: hex('00000026 00030000 7573657200 6100 646174616261736500 7800 646174616261736500 7900 00'), throwsAt: 38 },
  { name: 'junk after the terminator', bytes: hex('00000015 00030000 7573657200 616c69636500 00 78'), throwsAt: 21 },
];

/** Asserts the PROTOCOL error and the native bytes the client would get for it. */
function assertRejected(bytes: Buffer, label: string): void {
  let thrown: unknown;
  try {
    parseStartupPacket(bytes);
  } catch (err) {
    thrown = err;
  }
  assert.ok(thrown !== undefined, `${label}: expected a throw`);
  isProtocolError(thrown);
  const fields = errorFields(encodeError(thrown as PolyproxyError, undefined));
  assert.deepStrictEqual(
    fields.filter(([code]) => code === 'S' || code === 'C'),
    [
      ['S', 'FATAL'],
      ['C', '08P01'],
    ],
    label,
  );
}

describe('parseStartupPacket: malformed packets', () => {
  for (const { name, bytes, throwsAt } of BAD) {
    it(`rejects ${name} as soon as ${throwsAt} bytes are in`, () => {
      assert.ok(throwsAt <= bytes.length);
      assertRejected(bytes, 'whole');
      for (let n = 0; n <= bytes.length; n++) {
        const prefix = bytes.subarray(0, n);
        if (n < throwsAt) assert.equal(parseStartupPacket(prefix), undefined, `prefix of ${n} bytes`);
        else assertRejected(prefix, `prefix of ${n} bytes`);
      }
    });
  }

  it('checks the code early even though the declared length is far from buffered', () => {
    // 2.0 packet declaring 296 bytes: 8 are enough to refuse it, 7 are not.
    assert.equal(parseStartupPacket(V2_STARTUP.subarray(0, 7)), undefined);
    assertRejected(V2_STARTUP.subarray(0, 8), '2.0 header only');
  });

  it('rejects a bad packet that follows a good one once the good one is consumed', () => {
    const both = Buffer.concat([SSL_REQUEST, hex('ffffffff')]);
    const first = parseStartupPacket(both);
    assert.deepStrictEqual(first, { value: { type: 'ssl' }, consumed: 8 });
    assertRejected(both.subarray(first.consumed), 'second packet');
  });
});

/**
 * BackendKeyScanner over the messages a backend sends after the
 * StartupMessage (protocol-flow.html#PROTOCOL-FLOW-START-UP): Authentication,
 * ParameterStatus, BackendKeyData, ReadyForQuery — or an ErrorResponse.
 */
describe('backend messages', () => {
  //                     type | length   | body
  const AUTH_OK = hex('52     | 00000008 | 00000000');
  const PARAM_SERVER_VERSION = hex('53 | 00000018 | 7365727665725f76657273696f6e00 31362e3200'); // server_version=16.2
  const PARAM_CLIENT_ENCODING = hex('53 | 00000019 | 636c69656e745f656e636f64696e6700 5554463800'); // client_encoding=UTF8
  const PARAM_DATESTYLE = hex('53 | 00000017 | 446174655374796c6500 49534f2c204d445900'); // DateStyle=ISO, MDY
  //                    type | length | pid 12345 | secret (3.0: 4 bytes)
  const KEY_DATA = hex('4b  | 0000000c | 00003039 | deadbeef');
  const KEY_HEX = '00003039deadbeef';
  const READY_IDLE = hex('5a | 00000005 | 49'); // ReadyForQuery, idle
  // ErrorResponse: S FATAL, V FATAL, C 28P01, M password authentication failed for user "alice"
  const AUTH_FAILED = hex(`45 | 0000004b |
    53464154414c00 56464154414c00 433238503031 00
    4d70617373776f72642061757468656e7469636174696f6e206661696c656420666f7220757365722022616c69636522 00
    00`);

  const STARTUP = [AUTH_OK, PARAM_SERVER_VERSION, PARAM_CLIENT_ENCODING, PARAM_DATESTYLE, KEY_DATA, READY_IDLE];
  const STREAM = Buffer.concat(STARTUP);
  /** Offset just past the K message: the key is known from there on. */
  const KEY_END = Buffer.concat(STARTUP.slice(0, 5)).length;

  function scan(chunks: readonly Buffer[]): BackendKeyScanner {
    const scanner = new BackendKeyScanner();
    for (const chunk of chunks) scanner.push(chunk);
    return scanner;
  }

  describe('BackendKeyScanner', () => {
    it('finds the key as hex of pid + secret and is done after ReadyForQuery, fed whole', () => {
      const scanner = new BackendKeyScanner();
      assert.equal(scanner.push(STREAM), true);
      assert.equal(scanner.key, KEY_HEX);
      assert.equal(scanner.done, true);
    });

    it('is not done before ReadyForQuery has fully arrived', () => {
      const scanner = new BackendKeyScanner();
      assert.equal(scanner.push(STREAM.subarray(0, STREAM.length - 1)), false);
      assert.equal(scanner.key, KEY_HEX);
      assert.equal(scanner.done, false);
      assert.equal(scanner.push(STREAM.subarray(STREAM.length - 1)), true);
    });

    it('learns the key exactly when the last byte of BackendKeyData arrives and is done exactly at the last byte, byte by byte', () => {
      const scanner = new BackendKeyScanner();
      for (let i = 0; i < STREAM.length; i++) {
        const done = scanner.push(STREAM.subarray(i, i + 1));
        const fed = i + 1;
        assert.equal(scanner.key, fed >= KEY_END ? KEY_HEX : null, `after ${fed} bytes`);
        assert.equal(done, fed === STREAM.length, `after ${fed} bytes`);
        assert.equal(scanner.done, done);
      }
    });

    it('finds the key when the stream is split at every offset', () => {
      for (let cut = 0; cut <= STREAM.length; cut++) {
        const scanner = new BackendKeyScanner();
        const firstDone = scanner.push(STREAM.subarray(0, cut));
        assert.equal(firstDone, cut === STREAM.length, `cut at ${cut}`);
        assert.equal(scanner.key, cut >= KEY_END ? KEY_HEX : null, `cut at ${cut}`);
        assert.equal(scanner.push(STREAM.subarray(cut)), true, `cut at ${cut}`);
        assert.equal(scanner.key, KEY_HEX, `cut at ${cut}`);
      }
    });

    it('finds the key when the stream is split at every pair of offsets', () => {
      for (let a = 0; a <= STREAM.length; a++) {
        for (let b = a; b <= STREAM.length; b++) {
          const scanner = scan([STREAM.subarray(0, a), STREAM.subarray(a, b), STREAM.subarray(b)]);
          assert.equal(scanner.done, true, `cuts at ${a}, ${b}`);
          assert.equal(scanner.key, KEY_HEX, `cuts at ${a}, ${b}`);
        }
      }
    });

    it('ignores what follows ReadyForQuery (a later K is query traffic, not the session key)', () => {
      const other = hex('4b 0000000c 00000001 00000002');
      const scanner = scan([STREAM, other]);
      assert.equal(scanner.key, KEY_HEX);
      assert.equal(scanner.push(other), true);
      assert.equal(scanner.key, KEY_HEX);
    });

    it('reads a 3.2 BackendKeyData with a 32-byte secret', () => {
      const secret = '00112233445566778899aabbccddeeff'.repeat(2);
      // NegotiateProtocolVersion is not expected here; 3.2 servers just send a longer K.
      const key32 = hex(`4b | 00000028 | 0000d431 | ${secret}`);
      const stream = Buffer.concat([AUTH_OK, PARAM_SERVER_VERSION, key32, READY_IDLE]);
      for (let cut = 0; cut <= stream.length; cut++) {
        const scanner = scan([stream.subarray(0, cut), stream.subarray(cut)]);
        assert.equal(scanner.done, true);
        assert.equal(scanner.key, `0000d431${secret}`, `cut at ${cut}`);
      }
    });

    it('accepts the largest BackendKeyData: pid + 256-byte secret', () => {
      const key = Buffer.concat([hex('4b 00000108 00000007'), Buffer.alloc(256, 0xcd)]);
      const scanner = scan([AUTH_OK, key, READY_IDLE]);
      assert.equal(scanner.done, true);
      assert.equal(scanner.key, '00000007' + 'cd'.repeat(256));
    });

    it('skips a message with an empty body without losing its place', () => {
      const empty = hex('6e 00000004'); // NoData: header only
      const stream = Buffer.concat([AUTH_OK, empty, KEY_DATA, empty, READY_IDLE]);
      for (let cut = 0; cut <= stream.length; cut++) {
        const scanner = scan([stream.subarray(0, cut), stream.subarray(cut)]);
        assert.equal(scanner.done, true, `cut at ${cut}`);
        assert.equal(scanner.key, KEY_HEX, `cut at ${cut}`);
      }
    });

    it('is done without a key when the backend answers with an ErrorResponse', () => {
      const stream = Buffer.concat([AUTH_OK, PARAM_SERVER_VERSION, AUTH_FAILED]);
      for (let cut = 0; cut <= stream.length; cut++) {
        const scanner = new BackendKeyScanner();
        assert.equal(scanner.push(stream.subarray(0, cut)), cut === stream.length, `cut at ${cut}`);
        assert.equal(scanner.push(stream.subarray(cut)), true, `cut at ${cut}`);
        assert.equal(scanner.key, null);
      }
      // Byte by byte: done exactly at the ErrorResponse's last byte.
      const scanner = new BackendKeyScanner();
      for (let i = 0; i < stream.length; i++) assert.equal(scanner.push(stream.subarray(i, i + 1)), i === stream.length - 1, `byte ${i}`);
    });

    it('stops scanning, without a key and without throwing, on a BackendKeyData of absurd length', () => {
      const absurd = hex('4b ffffffff 00003039 deadbeef');
      const scanner = new BackendKeyScanner();
      assert.doesNotThrow(() => scanner.push(Buffer.concat([AUTH_OK, absurd, READY_IDLE])));
      assert.equal(scanner.done, true);
      assert.equal(scanner.key, null);
      // Split inside the header: stops as soon as the length is known.
      const split = new BackendKeyScanner();
      assert.equal(split.push(Buffer.concat([AUTH_OK, absurd.subarray(0, 3)])), false);
      assert.equal(split.push(absurd.subarray(3, 5)), true);
      assert.equal(split.key, null);
    });

    it('stops scanning on BackendKeyData bodies too short or too long for any protocol version', () => {
      for (const bad of [
        hex('4b 00000008 00003039'), // 4-byte body: pid only
        hex('4b 0000000b 00003039 deadbe'), // 7-byte body
        Buffer.concat([hex('4b 00000109 00003039'), Buffer.alloc(257)]), // 261-byte body: secret > 256
      ]) {
        const scanner = scan([AUTH_OK, bad, KEY_DATA, READY_IDLE]);
        assert.equal(scanner.done, true, bad.subarray(0, 5).toString('hex'));
        assert.equal(scanner.key, null, bad.subarray(0, 5).toString('hex'));
      }
    });

    it('stops scanning on a length below 4, which no PostgreSQL message has', () => {
      const scanner = scan([AUTH_OK, hex('53 00000003'), KEY_DATA, READY_IDLE]);
      assert.equal(scanner.done, true);
      assert.equal(scanner.key, null);
    });
  });
});
