/**
 * Runs the property tests of test/fuzz (issue 15): each property gets its
 * input count from POLYPROXY_FUZZ_RUNS (unset: a smoke count, so that
 * `npm test` stays fast; `npm run fuzz` sets 100000) and one seed from
 * POLYPROXY_FUZZ_SEED (unset: a fixed one, so a failure replays; `random`
 * draws one), and reports one diagnostic line per property:
 * `<inputs> inputs, seed <seed>`. A failure names the seed and the
 * counterexample (fast-check's report).
 */
import type { TestContext } from 'node:test';
import fc from 'fast-check';

export const RUNS_ENV = 'POLYPROXY_FUZZ_RUNS';
export const SEED_ENV = 'POLYPROXY_FUZZ_SEED';
/** Inputs per property when RUNS_ENV is unset (the smoke run in `npm test`). */
export const SMOKE_RUNS = 200;
const DEFAULT_SEED = 1515;

function positiveInteger(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, not ${JSON.stringify(text)}`);
  return value;
}

/** Inputs per property: RUNS_ENV, or `smoke` (SMOKE_RUNS unless a property is much slower than the rest). */
export function fuzzRuns(smoke = SMOKE_RUNS): number {
  const text = process.env[RUNS_ENV];
  return text === undefined || text === '' ? smoke : positiveInteger(RUNS_ENV, text);
}

const seed = ((): number => {
  const text = process.env[SEED_ENV];
  if (text === undefined || text === '') return DEFAULT_SEED;
  if (text === 'random') return Math.floor(Math.random() * 0x7fffffff);
  return positiveInteger(SEED_ENV, text);
})();

export function fuzzSeed(): number {
  return seed;
}

export interface FuzzOptions {
  /** Inputs when RUNS_ENV is unset (default SMOKE_RUNS). */
  readonly smoke?: number;
}

function report(t: TestContext, details: fc.RunDetails<unknown>): void {
  if (details.failed) throw new Error(fc.defaultReportMessage(details) ?? `property failed (seed ${details.seed})`);
  t.diagnostic(`${details.numRuns} inputs, seed ${details.seed}`);
}

/** Checks a synchronous property and reports how many inputs it ran. */
export function fuzz<Ts>(t: TestContext, property: fc.IPropertyWithHooks<Ts>, options: FuzzOptions = {}): void {
  report(t, fc.check(property, { numRuns: fuzzRuns(options.smoke), seed, includeErrorInReport: true }) as fc.RunDetails<unknown>);
}

/** Checks an asynchronous property and reports how many inputs it ran. */
export async function fuzzAsync<Ts>(t: TestContext, property: fc.IAsyncPropertyWithHooks<Ts>, options: FuzzOptions = {}): Promise<void> {
  report(t, (await fc.check(property, { numRuns: fuzzRuns(options.smoke), seed, includeErrorInReport: true })) as fc.RunDetails<unknown>);
}

/** Cuts `bytes` at the given points (each taken modulo its length + 1, so any nat works). */
export function chunked(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const point of points) {
    chunks.push(bytes.subarray(from, point));
    from = point;
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}

/** Chunk boundaries for `chunked`: none to many. */
export const cuts = fc.array(fc.nat(), { maxLength: 12 });

/** A code point, mostly ASCII, any scalar value (no lone surrogates) now and then. */
const codePoint = fc.oneof(
  { arbitrary: fc.integer({ min: 0x20, max: 0x7e }), weight: 6 },
  { arbitrary: fc.integer({ min: 0, max: 0xff }), weight: 2 },
  fc.integer({ min: 0, max: 0x10ffff }).filter((c) => c < 0xd800 || c > 0xdfff),
);

/**
 * Text of `minLength`..`maxLength` code points without `exclude` characters.
 * (fc.string with unit 'binary' spends seconds building its tables on first
 * use in each file: too slow for the smoke run.)
 */
export function text(minLength: number, maxLength: number, exclude = ''): fc.Arbitrary<string> {
  const allowed = exclude === '' ? codePoint : codePoint.filter((c) => !exclude.includes(String.fromCodePoint(c)));
  return fc.array(allowed, { minLength, maxLength }).map((points) => String.fromCodePoint(...points));
}
