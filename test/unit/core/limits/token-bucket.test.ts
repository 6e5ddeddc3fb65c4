import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TokenBucket } from '../../../../src/core/limits/token-bucket.ts';

test('take: a full bucket gives its burst at once, then refuses with the time until a token', () => {
  const bucket = new TokenBucket(10, 3, 0);
  assert.equal(bucket.take(1, 0), 0);
  assert.equal(bucket.take(1, 0), 0);
  assert.equal(bucket.take(1, 0), 0);
  assert.equal(bucket.take(1, 0), 100);
  // Nothing was taken by the refusal: 100 ms later one token is there.
  assert.equal(bucket.take(1, 100), 0);
  assert.equal(bucket.take(1, 100), 100);
});

test('take: refills at the rate and never past the burst', () => {
  const bucket = new TokenBucket(2, 2, 0);
  bucket.take(2, 0);
  assert.equal(bucket.take(1, 10_000), 0);
  assert.equal(bucket.take(1, 10_000), 0);
  assert.equal(bucket.take(1, 10_000), 500);
});

test('spend: goes into debt and says how long until it is paid', () => {
  const bucket = new TokenBucket(1000, 1000, 0);
  assert.equal(bucket.spend(500, 0), 0);
  assert.equal(bucket.spend(1500, 0), 1000);
  assert.equal(bucket.spend(0, 500), 500);
  assert.equal(bucket.spend(0, 1000), 0);
});

test('configure: a new rate applies; tokens are capped at the new burst', () => {
  const bucket = new TokenBucket(100, 100, 0);
  bucket.configure(10, 5);
  assert.equal(bucket.tokens, 5);
  bucket.take(5, 0);
  assert.equal(bucket.take(1, 0), 100);
});
