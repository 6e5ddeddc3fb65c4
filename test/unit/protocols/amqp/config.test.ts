/** The amqp listener's fields. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, parseConfig } from '../../../../src/config/load.ts';

describe('amqp listener config', () => {
  it("defaults are RabbitMQ's Tune: channelMax 2047, frameMax 131072, heartbeat 60", () => {
    const listener = parseConfig({ listeners: [{ protocol: 'amqp', port: 0 }] }, '/tmp').listeners[0];
    assert.ok(listener?.protocol === 'amqp');
    assert.deepEqual([listener.channelMax, listener.frameMax, listener.heartbeat, listener.firstResponseTimeoutMs], [2047, 131072, 60, 15000]);
  });

  it('frameMax is 0 or at least frame-min-size (4096)', () => {
    assert.doesNotThrow(() => parseConfig({ listeners: [{ protocol: 'amqp', port: 0, frameMax: 0 }] }, '/tmp'));
    assert.throws(() => parseConfig({ listeners: [{ protocol: 'amqp', port: 0, frameMax: 1000 }] }, '/tmp'), (err: unknown) => err instanceof ConfigError && /listeners\.0\.frameMax: frameMax must be 0/.test(err.message));
  });
});
