/** The tenant a CONNECT names, and the broker's first packet. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import { MqttRefusal } from '../../../../src/protocols/mqtt/errors.ts';
import { parseBrokerPacket, tenantOf } from '../../../../src/protocols/mqtt/opening.ts';
import type { ConnectPacket } from '../../../../src/protocols/mqtt/parse.ts';

function connect(fields: Partial<ConnectPacket>): ConnectPacket {
  return { level: 5, cleanStart: true, keepAlive: 0, clientId: '', username: undefined, hasPassword: false, will: undefined, maxPacketSize: undefined, authMethod: undefined, raw: Buffer.alloc(0), ...fields };
}

describe('tenantOf', () => {
  it('routeBy username: the user name; none is not authorized (0x05 / 0x87)', () => {
    assert.equal(tenantOf(connect({ username: 'shop' }), { routeBy: 'username', separator: '/' }), 'shop');
    assert.throws(() => tenantOf(connect({ username: '' }), { routeBy: 'username', separator: '/' }), (err: unknown) => err instanceof MqttRefusal && err.v3 === 0x05 && err.v5 === 0x87);
  });

  it('routeBy clientIdPrefix: up to the first separator; none, or an empty prefix, is 0x02 / 0x85', () => {
    assert.equal(tenantOf(connect({ clientId: 'shop/sensor/1' }), { routeBy: 'clientIdPrefix', separator: '/' }), 'shop');
    assert.equal(tenantOf(connect({ clientId: 'shop::1' }), { routeBy: 'clientIdPrefix', separator: '::' }), 'shop');
    for (const clientId of ['shop', '/x', '']) {
      assert.throws(() => tenantOf(connect({ clientId, level: 4 }), { routeBy: 'clientIdPrefix', separator: '/' }), (err: unknown) => err instanceof MqttRefusal && err.v3 === 0x02 && err.level === 4);
    }
  });
});

describe('parseBrokerPacket', () => {
  it('a CONNACK or an AUTH, whole; waits for the rest', () => {
    assert.deepEqual(parseBrokerPacket(Buffer.from([0x20, 2, 0, 0, 0x30])), { value: Buffer.from([0x20, 2, 0, 0]), consumed: 4 });
    assert.equal(parseBrokerPacket(Buffer.from([0xf0, 3, 0x18])), undefined);
    assert.equal(parseBrokerPacket(Buffer.from([0x20])), undefined);
  });

  it('anything else is the backend breaking the protocol', () => {
    assert.throws(() => parseBrokerPacket(Buffer.from([0x30, 0])), (err: unknown) => err instanceof PolyproxyError && err.source === 'backend' && err.kind === 'PROTOCOL');
    assert.throws(() => parseBrokerPacket(Buffer.from([0x20, 0x80, 0x80, 0x80, 0x80])), (err: unknown) => err instanceof PolyproxyError && err.source === 'backend');
  });
});
