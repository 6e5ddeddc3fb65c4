/**
 * Failures as ErrorResponse messages. Format:
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-ERRORRESPONSE
 * SQLSTATEs: https://www.postgresql.org/docs/current/errcodes-appendix.html
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PolyproxyError, ResolveError } from '../../../../src/core/errors.ts';
import type { FailureKind } from '../../../../src/core/errors.ts';
import { SQLSTATE, encodeError, errorResponse } from '../../../../src/protocols/postgres/errors.ts';
import { errorFields, hex } from './wire.ts';

describe('errorResponse', () => {
  it('writes the exact bytes of a FATAL ErrorResponse', () => {
    assert.deepStrictEqual(
      errorResponse('08P01', 'bad'),
      //   E | length 0x1f | S FATAL        | V FATAL        | C 08P01      | M bad      | end
      hex('45 | 0000001f   | 53464154414c00 | 56464154414c00 | 433038503031 00 | 4d62616400 | 00'),
    );
  });

  it('frames S, V, C, M in order with a correct length and a double terminator', () => {
    const bytes = errorResponse('3D000', 'database "shop" does not exist');
    assert.equal(bytes.readUInt32BE(1), bytes.length - 1);
    assert.deepStrictEqual(bytes.subarray(-2), Buffer.from([0, 0]));
    assert.deepStrictEqual(errorFields(bytes), [
      ['S', 'FATAL'],
      ['V', 'FATAL'],
      ['C', '3D000'],
      ['M', 'database "shop" does not exist'],
    ]);
  });

  it('appends the hint as an H field', () => {
    assert.deepStrictEqual(errorFields(errorResponse('57P03', 'not now', 'try later')), [
      ['S', 'FATAL'],
      ['V', 'FATAL'],
      ['C', '57P03'],
      ['M', 'not now'],
      ['H', 'try later'],
    ]);
  });

  it('counts the length in bytes, not characters, for non-ASCII text', () => {
    const message = 'база данных «магазин» 🛒';
    const bytes = errorResponse('3D000', message, 'ü');
    assert.equal(bytes.readUInt32BE(1), bytes.length - 1);
    const fields = new Map(errorFields(bytes));
    assert.equal(fields.get('M'), message);
    assert.equal(fields.get('H'), 'ü');
  });

  it(
    'keeps the frame well-formed when the text contains a NUL',
    () => {
      for (const message of ['abc\0', 'a\0b']) {
        assert.deepStrictEqual(
          errorFields(errorResponse('08P01', message)).map(([code]) => code),
          ['S', 'V', 'C', 'M'],
          JSON.stringify(message),
        );
      }
    },
  );

  it('keeps empty message and hint fields', () => {
    assert.deepStrictEqual(errorFields(errorResponse('XX000', '', '')), [
      ['S', 'FATAL'],
      ['V', 'FATAL'],
      ['C', 'XX000'],
      ['M', ''],
      ['H', ''],
    ]);
  });
});

describe('encodeError', () => {
  /** [kind, SQLSTATE, whether the message names the database] */
  const TABLE: ReadonlyArray<readonly [FailureKind, string, boolean]> = [
    ['NOT_FOUND', '3D000', true],
    ['FORBIDDEN', '28000', true],
    ['UNAVAILABLE', '57P03', true],
    ['TIMEOUT', '57P03', true],
    ['BACKEND_UNREACHABLE', '08006', true],
    ['TOO_MANY', '53300', false], // refused before the startup packet is read: no database known
    ['PROTOCOL', '08P01', false],
    ['HANDSHAKE_TIMEOUT', '08P01', false],
    ['TLS_REQUIRED', '28000', true],
    ['INTERNAL', 'XX000', true],
    ['SHUTTING_DOWN', '57P01', false], // admin_shutdown, as the server says it
    ['LIMITED', '53300', false], // a tenant limit: too_many_connections, naming the tenant when known
  ];

  it('covers every failure kind', () => {
    assert.deepStrictEqual(Object.keys(SQLSTATE).sort(), TABLE.map(([kind]) => kind).sort());
  });

  for (const [kind, sqlstate, namesDatabase] of TABLE) {
    it(`maps ${kind} to SQLSTATE ${sqlstate}`, () => {
      assert.equal(SQLSTATE[kind], sqlstate);
      const fields = new Map(errorFields(encodeError(new PolyproxyError(kind, 'detail from the proxy'), 'shop')));
      assert.equal(fields.get('S'), 'FATAL');
      assert.equal(fields.get('C'), sqlstate);
      const message = fields.get('M') ?? '';
      assert.notEqual(message, '');
      if (namesDatabase) {
        assert.match(message, /"shop"/);
        // Without a database the message still reads well.
        const anonymous = new Map(errorFields(encodeError(new PolyproxyError(kind, 'detail from the proxy'), undefined)));
        assert.match(anonymous.get('M') ?? '', /the requested database/);
        assert.equal(anonymous.get('C'), sqlstate);
      }
    });
  }

  it('hints at the route for NOT_FOUND', () => {
    const fields = new Map(errorFields(encodeError(new ResolveError('NOT_FOUND'), 'nope')));
    assert.equal(fields.get('C'), '3D000');
    assert.match(fields.get('M') ?? '', /"nope"/);
    assert.ok((fields.get('H') ?? '') !== '', 'hint present');
  });

  it('passes the parser message through for PROTOCOL and the reason for TLS_REQUIRED', () => {
    const protocol = new Map(errorFields(encodeError(new PolyproxyError('PROTOCOL', 'invalid startup packet length 7'), undefined)));
    assert.equal(protocol.get('M'), 'invalid startup packet length 7');
    const tls = new Map(errorFields(encodeError(new PolyproxyError('TLS_REQUIRED', 'a valid client certificate is required'), 'shop')));
    assert.match(tls.get('M') ?? '', /a valid client certificate is required/);
  });

  it('encodes a database name with quotes and non-ASCII characters intact', () => {
    const fields = new Map(errorFields(encodeError(new ResolveError('NOT_FOUND'), 'my "ünïcode" db')));
    assert.match(fields.get('M') ?? '', /database "my "ünïcode" db"/);
  });
});
