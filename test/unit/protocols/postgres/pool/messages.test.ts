/** The messages the pool writes itself, to the byte. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { authenticationOk, backendKeyData, cancelRequest, errorMessage, parameterStatus, query, readErrorFields, readyForQuery } from '../../../../../src/protocols/postgres/pool/messages.ts';

describe('pool messages', () => {
  it('ErrorResponse: S, V, C, M (D, H) fields, NUL-terminated', () => {
    const e = errorMessage('FATAL', '53300', 'no server', { hint: 'h' });
    assert.deepEqual(e, Buffer.concat([Buffer.from([0x45, 0, 0, 0, 0x28]), Buffer.from('SFATAL\0VFATAL\0C53300\0Mno server\0Hh\0\0')]));
    const fields = readErrorFields(e, 5, e.length);
    assert.deepEqual(fields, { severity: 'FATAL', code: '53300', message: 'no server' });
  });
  it('ReadyForQuery, ParameterStatus, BackendKeyData, AuthenticationOk, Query, CancelRequest', () => {
    assert.deepEqual(readyForQuery(0x49), Buffer.from([0x5a, 0, 0, 0, 5, 0x49]));
    assert.deepEqual(parameterStatus('a', 'b'), Buffer.from([0x53, 0, 0, 0, 8, 0x61, 0, 0x62, 0]));
    assert.deepEqual(backendKeyData(7, Buffer.from([1, 2, 3, 4])), Buffer.from([0x4b, 0, 0, 0, 12, 0, 0, 0, 7, 1, 2, 3, 4]));
    assert.deepEqual(authenticationOk(), Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]));
    assert.deepEqual(query('x'), Buffer.from([0x51, 0, 0, 0, 6, 0x78, 0]));
    assert.deepEqual(cancelRequest(7, Buffer.from([1, 2, 3, 4])), Buffer.from([0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 7, 1, 2, 3, 4]));
  });
});
