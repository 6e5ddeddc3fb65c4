/** test/helpers/fuzz.ts: input counts from POLYPROXY_FUZZ_RUNS, chunking, and failures that name the seed and counterexample. */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RUNS_ENV, SMOKE_RUNS, chunked, fuzz, fuzzRuns, fuzzSeed } from '../../helpers/fuzz.ts';

const saved = process.env[RUNS_ENV];
afterEach(() => {
  if (saved === undefined) delete process.env[RUNS_ENV];
  else process.env[RUNS_ENV] = saved;
});

test('fuzzRuns: the smoke count unless POLYPROXY_FUZZ_RUNS says otherwise; nonsense is refused', () => {
  delete process.env[RUNS_ENV];
  assert.equal(fuzzRuns(), SMOKE_RUNS);
  assert.equal(fuzzRuns(50), 50);
  process.env[RUNS_ENV] = '100000';
  assert.equal(fuzzRuns(50), 100000);
  for (const bad of ['0', '-1', '1.5', 'many']) {
    process.env[RUNS_ENV] = bad;
    assert.throws(() => fuzzRuns(), /POLYPROXY_FUZZ_RUNS must be a positive integer/);
  }
});

test('chunked: the pieces rejoin to the input, cut where asked', () => {
  const bytes = Buffer.from('abcdef');
  assert.deepEqual(chunked(bytes, []).map(String), ['abcdef']);
  // Cuts are taken modulo length + 1 (12 → 5) and deduplicated.
  assert.deepEqual(chunked(bytes, [4, 2, 2, 12]).map(String), ['ab', 'cd', 'e', 'f']);
});

test('fuzz: reports the inputs run, and a failing property throws with its seed and counterexample', (t) => {
  process.env[RUNS_ENV] = '30';
  let runs = 0;
  fuzz(t, fc.property(fc.nat(), () => {
    runs++;
  }));
  assert.equal(runs, 30);
  assert.throws(
    () => fuzz(t, fc.property(fc.nat(), (n) => n < 5)),
    (err: Error) => err.message.includes(`seed: ${fuzzSeed()}`) && err.message.includes('Counterexample: [5]'),
  );
});
