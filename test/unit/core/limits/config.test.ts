import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkRouteLimits, effectiveLimits, limitsSchema } from '../../../../src/core/limits/config.ts';

test('default ← tenant ← route, field by field; bursts default to one second', () => {
  const config = limitsSchema.parse({ default: { maxConnections: 1000, requestsPerSecond: 50 }, tenants: { shop: { maxConnections: 50, bandwidth: { inBytesPerSecond: 1024 } } } });
  const limits = effectiveLimits(config.default, config.tenants.shop, { connectionsPerSecond: 2.5 });
  assert.deepEqual(limits, { maxConnections: 50, connectionsPerSecond: 2.5, connectionsBurst: 2, requestsPerSecond: 50, requestsBurst: 50, inBytesPerSecond: 1024, outBytesPerSecond: undefined });
  assert.equal(effectiveLimits(limitsSchema.parse({}).default), null);
});

test('a route\'s limits are checked like the config\'s', () => {
  assert.deepEqual(checkRouteLimits({ maxConnections: 5 }), { maxConnections: 5 });
  assert.throws(() => checkRouteLimits({ maxConnections: -1 }), /maxConnections/);
  assert.throws(() => checkRouteLimits({ maxConections: 5 }), /maxConections|Unrecognized/);
});
