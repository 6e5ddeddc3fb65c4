/** CONNACKs per failure kind and version. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import { CONNACK_CODES, MqttRefusal, connack3, connack5, encodeFailure } from '../../../../src/protocols/mqtt/errors.ts';

describe('mqtt errors', () => {
  it('3.1.1 CONNACK: four bytes with the return code', () => {
    assert.equal(encodeFailure(new PolyproxyError('NOT_FOUND', 'x'), 'shop', 4, undefined)?.toString('hex'), '20020005');
    assert.equal(encodeFailure(new PolyproxyError('BACKEND_UNREACHABLE', 'x'), 'shop', 3, undefined)?.toString('hex'), '20020003');
    assert.equal(encodeFailure(new PolyproxyError('PROTOCOL', 'x'), undefined, 4, undefined), null, 'a 3.1.1 protocol violation closes');
  });

  it('5.0 CONNACK: reason code and a Reason String naming the tenant', () => {
    const bytes = encodeFailure(new PolyproxyError('NOT_FOUND', 'x'), 'shop', 5, undefined);
    assert.ok(bytes !== null);
    assert.deepEqual([bytes[0], bytes[2], bytes[3], bytes[5]], [0x20, 0, 0x87, 0x1f]);
    assert.equal(bytes.toString('utf8', 8), 'tenant "shop" is not routed by this proxy');
    assert.equal(bytes[1], bytes.length - 2);
    assert.equal(encodeFailure(new PolyproxyError('TOO_MANY', 'x'), undefined, 5, undefined)?.[3], 0x89);
    assert.equal(encodeFailure(new PolyproxyError('SHUTTING_DOWN', 'x'), undefined, 5, undefined)?.[3], 0x88);
  });

  it('an MqttRefusal carries its own codes and level', () => {
    const refusal = new MqttRefusal('FORBIDDEN', 'no separator', { level: 5, v3: 0x02, v5: 0x85 });
    assert.equal(encodeFailure(refusal, undefined, undefined, undefined)?.[3], 0x85);
    assert.equal(encodeFailure(new MqttRefusal('FORBIDDEN', 'x', { level: 4, v3: 0x02, v5: 0x85 }), undefined, undefined, undefined)?.toString('hex'), '20020002');
  });

  it('before the CONNECT was read: the 3.1.1 form for refusals, nothing for a timeout', () => {
    assert.equal(encodeFailure(new PolyproxyError('TOO_MANY', 'x'), undefined, undefined, undefined)?.toString('hex'), '20020003');
    assert.equal(encodeFailure(new PolyproxyError('HANDSHAKE_TIMEOUT', 'x'), undefined, undefined, undefined), null);
  });

  it("connack5 drops the Reason String past the client's Maximum Packet Size", () => {
    assert.deepEqual([...connack5(0x87, 'a long explanation', 10)], [0x20, 3, 0, 0x87, 0]);
    assert.equal(connack5(0x87, 'abc', 11).length, 11);
    assert.deepEqual([...connack3(5)], [0x20, 2, 0, 5]);
  });

  it('every kind has a 5.0 code from the CONNACK list', () => {
    const allowed = new Set([0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8c, 0x90, 0x95, 0x97, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9f]);
    for (const [kind, codes] of Object.entries(CONNACK_CODES)) assert.ok(allowed.has(codes.v5), kind);
  });
});
