/**
 * Fuzzing what the fleet reads from Redis, which anyone with access to it
 * can write: a route value (src/resolvers/redis.ts parseRedisRoute) either
 * becomes a Route the router's check accepts or fails with a PolyproxyError
 * (INTERNAL, naming the source) — never another exception; and the
 * holder values of the ws-bridge registry and the JSON route form
 * round-trip.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PolyproxyError } from '../../src/core/errors.ts';
import { checkRoute } from '../../src/core/route-check.ts';
import { parseRedisRoute } from '../../src/resolvers/redis.ts';
import { fuzz, text } from '../helpers/fuzz.ts';

const endpointish = fc.oneof(
  fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 70000 })).map(([ip, port]) => `${ip}:${port}`),
  fc.array(fc.constantFrom(...'0123456789.:[],{}" abcunix/'), { maxLength: 40 }).map((c) => c.join('')),
  text(0, 60),
);

describe('resolver.redis values', () => {
  it('parseRedisRoute → a route checkRoute accepts, or a PolyproxyError; never another throw', (t) => {
    fuzz(
      t,
      fc.property(fc.oneof(endpointish, fc.json(), fc.array(endpointish, { maxLength: 4 }).map((l) => l.join(','))), (value) => {
        try {
          checkRoute(parseRedisRoute(value, 'tenant'), 'redis', 'tenant');
        } catch (err) {
          assert.ok(err instanceof PolyproxyError, `threw ${String(err)}`);
        }
      }),
    );
  });

  it('a JSON Route written by a control plane comes back with the same endpoints', (t) => {
    fuzz(
      t,
      fc.property(fc.array(fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 65535 })).map(([ip, port]) => `${ip}:${port}`), { minLength: 1, maxLength: 5 }), fc.option(fc.nat({ max: 100000 }), { nil: undefined }), (endpoints, ttlMs) => {
        const route = checkRoute(parseRedisRoute(JSON.stringify({ endpoint: endpoints, ...(ttlMs === undefined ? {} : { ttlMs }) }), 't'), 'redis', 't');
        assert.deepEqual(route.endpoint, endpoints);
        assert.equal(route.ttlMs, ttlMs);
        const plain = checkRoute(parseRedisRoute(endpoints.join(','), 't'), 'redis', 't');
        assert.deepEqual(typeof plain.endpoint === 'string' ? [plain.endpoint] : plain.endpoint, endpoints);
      }),
    );
  });
});
