/** src/protocols/mysql/errors.ts: every failure kind as an ERR packet a MySQL client can read (number, SQLSTATE, message). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import type { FailureKind } from '../../../../src/core/errors.ts';
import { MYSQL_ERRORS, MysqlReplyError, OTHER_BACKEND, encodeFailure, errorMessage } from '../../../../src/protocols/mysql/errors.ts';
import { parseErr } from '../../../../src/protocols/mysql/packets.ts';

const KINDS: FailureKind[] = ['NOT_FOUND', 'FORBIDDEN', 'UNAVAILABLE', 'TIMEOUT', 'INTERNAL', 'BACKEND_UNREACHABLE', 'PROTOCOL', 'HANDSHAKE_TIMEOUT', 'TLS_REQUIRED', 'TOO_MANY'];

/** Splits a packet into its header (length, sequence id) and payload. */
function unpack(packet: Buffer): { length: number; seq: number; payload: Buffer } {
  return { length: packet.readUIntLE(0, 3), seq: packet[3] ?? -1, payload: packet.subarray(4) };
}

describe('mysql errors', () => {
  it('encodes each kind with its error number, SQLSTATE and sequence id', () => {
    for (const kind of KINDS) {
      const packet = encodeFailure(new PolyproxyError(kind, 'detail'), 'shop', 2, true);
      const { length, seq, payload } = unpack(packet);
      assert.equal(length, payload.length);
      assert.equal(seq, 2);
      const err = parseErr(payload);
      assert.equal(err.code, MYSQL_ERRORS[kind].code, kind);
      assert.equal(err.sqlState, MYSQL_ERRORS[kind].sqlState, kind);
      assert.equal(err.message, errorMessage(new PolyproxyError(kind, 'detail'), 'shop'));
    }
  });

  it('uses the server codes a client recognises', () => {
    assert.deepEqual(MYSQL_ERRORS.NOT_FOUND, { code: 1049, sqlState: '42000' });
    assert.deepEqual(MYSQL_ERRORS.TOO_MANY, { code: 1040, sqlState: '08004' });
    assert.deepEqual(MYSQL_ERRORS.BACKEND_UNREACHABLE, { code: 2003, sqlState: 'HY000' });
    assert.equal(OTHER_BACKEND, MYSQL_ERRORS.FORBIDDEN);
  });

  it('leaves the SQLSTATE out before the client announced PROTOCOL_41', () => {
    const packet = encodeFailure(new PolyproxyError('TOO_MANY', 'x'), undefined, 0, false);
    const { payload } = unpack(packet);
    assert.equal(payload[3] === 0x23, false, 'no # marker');
    const err = parseErr(payload);
    assert.equal(err.sqlState, null);
    assert.equal(err.message, 'Too many connections');
  });

  it('names the database, or says "the requested database" when none is known', () => {
    assert.equal(errorMessage(new PolyproxyError('NOT_FOUND', 'x'), 'shop'), "Unknown database 'shop' (not routed by this proxy)");
    assert.equal(errorMessage(new PolyproxyError('FORBIDDEN', 'x'), undefined), 'Access denied to database the requested database');
    assert.equal(errorMessage(new PolyproxyError('PROTOCOL', 'bad length'), 'shop'), 'Bad handshake: bad length');
    assert.equal(errorMessage(new PolyproxyError('TLS_REQUIRED', 'client certificate required'), 'db'), "Connection to 'db' refused: client certificate required");
  });

  it('MysqlReplyError carries a ready packet (or null for a silent close)', () => {
    const packet = encodeFailure(new PolyproxyError('FORBIDDEN', 'x'), 'a', 3, true);
    const err = new MysqlReplyError('FORBIDDEN', 'denied', packet, { source: 'backend', resourceId: 'a' });
    assert.ok(err instanceof PolyproxyError);
    assert.equal(err.name, 'MysqlReplyError');
    assert.equal(err.packet, packet);
    assert.equal(err.source, 'backend');
    assert.equal(err.resourceId, 'a');
    assert.equal(new MysqlReplyError('PROTOCOL', 'x', null).packet, null);
  });
});
