/** src/core/errors.ts: stable codes, default sources per kind, and what toPolyproxyError makes of anything thrown. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError, ResolveError, toPolyproxyError } from '../../../src/core/errors.ts';
import type { FailureKind, FailureSource } from '../../../src/core/errors.ts';

describe('PolyproxyError', () => {
  it('derives the code from the kind and the source from who can cause it', () => {
    const expected: Array<[FailureKind, FailureSource]> = [
      ['NOT_FOUND', 'resolver'],
      ['FORBIDDEN', 'resolver'],
      ['UNAVAILABLE', 'resolver'],
      ['TIMEOUT', 'resolver'],
      ['INTERNAL', 'internal'],
      ['TOO_MANY', 'internal'],
      ['BACKEND_UNREACHABLE', 'backend'],
      ['PROTOCOL', 'client'],
      ['HANDSHAKE_TIMEOUT', 'client'],
      ['TLS_REQUIRED', 'client'],
    ];
    for (const [kind, source] of expected) {
      const err = new PolyproxyError(kind, 'm');
      assert.equal(err.code, `PP_ERR_${kind}`);
      assert.equal(err.source, source, kind);
      assert.equal(err.retryable, false);
      assert.equal(err.resourceId, undefined);
      assert.equal(err.name, 'PolyproxyError');
      assert.ok(err instanceof Error);
    }
  });

  it('keeps the options it is given: source, retryable, cause, resourceId', () => {
    const cause = new Error('ECONNREFUSED');
    const err = new PolyproxyError('PROTOCOL', 'bad', { source: 'backend', retryable: true, cause, resourceId: 'shop' });
    assert.equal(err.source, 'backend');
    assert.equal(err.retryable, true);
    assert.equal(err.cause, cause);
    assert.equal(err.resourceId, 'shop');
    assert.equal('cause' in new PolyproxyError('PROTOCOL', 'x'), false, 'no cause property when none was given');
  });
});

describe('ResolveError', () => {
  it('is a resolver-sourced PolyproxyError with a default message from the code', () => {
    const err = new ResolveError('NOT_FOUND');
    assert.ok(err instanceof PolyproxyError);
    assert.equal(err.name, 'ResolveError');
    assert.equal(err.kind, 'NOT_FOUND');
    assert.equal(err.code, 'PP_ERR_NOT_FOUND');
    assert.equal(err.source, 'resolver');
    assert.equal(err.message, 'not found');
    assert.equal(new ResolveError('INTERNAL', 'db down').message, 'db down');
  });
});

describe('toPolyproxyError', () => {
  it('returns a PolyproxyError as it is', () => {
    const err = new PolyproxyError('TIMEOUT', 't');
    assert.equal(toPolyproxyError(err), err);
  });

  it('turns an object carrying a resolver code into a ResolveError, keeping the message and the cause', () => {
    for (const code of ['NOT_FOUND', 'FORBIDDEN', 'UNAVAILABLE', 'TIMEOUT', 'INTERNAL'] as const) {
      const thrown = Object.assign(new Error(`no ${code}`), { code });
      const err = toPolyproxyError(thrown);
      assert.ok(err instanceof ResolveError);
      assert.equal(err.kind, code);
      assert.equal(err.message, `no ${code}`);
      assert.equal(err.cause, thrown);
    }
    assert.equal(toPolyproxyError({ code: 'FORBIDDEN' }).kind, 'FORBIDDEN');
  });

  it('anything else is INTERNAL with its message', () => {
    const sys = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const a = toPolyproxyError(sys);
    assert.equal(a.kind, 'INTERNAL');
    assert.equal(a.message, 'connect ECONNREFUSED');
    assert.equal(a.cause, sys);
    assert.equal(toPolyproxyError('plain string').message, 'plain string');
    assert.equal(toPolyproxyError(null).kind, 'INTERNAL');
    assert.equal(toPolyproxyError(undefined).message, 'undefined');
  });
});
