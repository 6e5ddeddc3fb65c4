/** The limits a client agreed, against the proxy's and the broker's Tune. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tuneProblem } from '../../../../src/protocols/amqp/handshake.ts';

const rabbit = { channelMax: 2047, frameMax: 131072, heartbeat: 60 };

describe('tuneProblem', () => {
  it('within the limits, or no limit: fine', () => {
    assert.equal(tuneProblem({ channelMax: 2047, frameMax: 131072, heartbeat: 0 }, rabbit, 'the broker'), null);
    assert.equal(tuneProblem({ channelMax: 10, frameMax: 4096, heartbeat: 600 }, rabbit, 'the broker'), null);
    assert.equal(tuneProblem({ channelMax: 0, frameMax: 0, heartbeat: 0 }, { channelMax: 0, frameMax: 0, heartbeat: 0 }, 'the broker'), null);
  });

  it('more than allowed, or "no limit" where there is one, is named as RabbitMQ words it', () => {
    assert.equal(tuneProblem({ channelMax: 1, frameMax: 1048576, heartbeat: 0 }, rabbit, 'the broker'), 'frame_max=1048576 > 131072 max size of the broker');
    assert.equal(tuneProblem({ channelMax: 1, frameMax: 0, heartbeat: 0 }, rabbit, 'the broker'), 'frame_max=0 > 131072 max size of the broker');
    assert.equal(tuneProblem({ channelMax: 4096, frameMax: 4096, heartbeat: 0 }, rabbit, 'the proxy'), 'channel_max=4096 > 2047 max channels of the proxy');
    assert.equal(tuneProblem({ channelMax: 1, frameMax: 100, heartbeat: 0 }, rabbit, 'the proxy'), 'frame_max=100 < 4096 min size');
  });
});
