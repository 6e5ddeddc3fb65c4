/** The mqtt listener's fields. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, parseConfig } from '../../../../src/config/load.ts';

function problems(listener: Record<string, unknown>): string {
  try {
    parseConfig({ routes: { x: '127.0.0.1:1' }, listeners: [{ protocol: 'mqtt', port: 0, ...listener }] }, '/tmp');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.message;
  }
  return '';
}

describe('mqtt listener config', () => {
  it('defaults: routeBy username, firstResponseTimeoutMs 15000', () => {
    const listener = parseConfig({ listeners: [{ protocol: 'mqtt', port: 0 }] }, '/tmp').listeners[0];
    assert.ok(listener?.protocol === 'mqtt');
    assert.deepEqual([listener.routeBy, listener.separator, listener.firstResponseTimeoutMs], ['username', undefined, 15000]);
  });

  it('separator only with routeBy: clientIdPrefix', () => {
    assert.equal(problems({ routeBy: 'clientIdPrefix', separator: ':' }), '');
    assert.match(problems({ separator: ':' }), /listeners\.0\.separator: separator only applies to routeBy: clientIdPrefix/);
    assert.match(problems({ routeBy: 'topic' }), /listeners\.0\.routeBy/);
    assert.match(problems({ routeBy: 'clientIdPrefix', separator: '' }), /listeners\.0\.separator/);
  });
});
