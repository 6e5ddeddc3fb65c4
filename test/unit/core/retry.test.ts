/**
 * Core's retry rule (undici's): after request bytes reached a backend, only
 * an idempotent method (RFC 9110 §9.2.2), on a reused connection that
 * closed before any response byte, with a request that can be sent again,
 * once.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_RETRIES, isIdempotent, mayRetry } from '../../../src/core/retry.ts';
import type { AttemptFailure } from '../../../src/core/retry.ts';

/** The keep-alive race: a reused connection closed as the request went out, nothing came back. */
const RACE: AttemptFailure = { method: 'GET', requestSent: true, reusedConnection: true, connectionClosed: true, responseStarted: false, replayable: true, retries: 0 };

describe('retry policy', () => {
  it('idempotent methods are exactly RFC 9110 §9.2.2 (case-sensitive, as methods are)', () => {
    for (const m of ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']) assert.equal(isIdempotent(m), true, m);
    for (const m of ['POST', 'PATCH', 'CONNECT', 'PROPFIND', 'get', '']) assert.equal(isIdempotent(m), false, m);
  });

  it('the keep-alive race retries every idempotent method', () => {
    for (const method of ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']) assert.equal(mayRetry({ ...RACE, method }), true, method);
  });

  it('never retries POST or PATCH once request bytes reached the backend (RFC 9112 §9.3.1)', () => {
    for (const method of ['POST', 'PATCH', 'CONNECT']) assert.equal(mayRetry({ ...RACE, method }), false, method);
  });

  it('a fresh connection, a timeout or error, a started response or a body not held: no retry', () => {
    assert.equal(mayRetry({ ...RACE, reusedConnection: false }), false, 'fresh connection');
    assert.equal(mayRetry({ ...RACE, connectionClosed: false }), false, 'timeout or protocol error');
    assert.equal(mayRetry({ ...RACE, responseStarted: true }), false, 'response bytes arrived');
    assert.equal(mayRetry({ ...RACE, replayable: false }), false, 'streamed body');
  });

  it('at most once', () => {
    assert.equal(MAX_RETRIES, 1);
    assert.equal(mayRetry({ ...RACE, retries: 1 }), false);
  });

  it('nothing sent yet: any method may go elsewhere (the Dial case), still once', () => {
    const unsent = { ...RACE, method: 'POST', requestSent: false, reusedConnection: false, connectionClosed: false, replayable: false };
    assert.equal(mayRetry(unsent), true);
    assert.equal(mayRetry({ ...unsent, retries: 1 }), false);
  });
});
