/**
 * Error documents per failure kind, framed for the pending request (OP_MSG
 * or OP_REPLY), and what the proxy learns from a backend's hello/buildInfo.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BSON } from 'mongodb';
import { PolyproxyError, ResolveError } from '../../../../src/core/errors.ts';
import type { FailureKind } from '../../../../src/core/errors.ts';
import { MONGO_ERROR, encodeErrorReply } from '../../../../src/protocols/mongodb/errors.ts';
import { ServerFacts, buildInfoReply } from '../../../../src/protocols/mongodb/handshake.ts';
import { OP_MSG, OP_REPLY } from '../../../../src/protocols/mongodb/wire.ts';

const MSG = { requestID: 7, op: 'msg', moreToCome: false } as const;
const QUERY = { requestID: 8, op: 'query', moreToCome: false } as const;

describe('MongoDB error replies', () => {
  const expected: Array<[FailureKind, number | null, RegExp | null]> = [
    ['NOT_FOUND', 26, /^database "shop" is not routed by this proxy$/],
    ['FORBIDDEN', 13, /forbidden/],
    ['UNAVAILABLE', 74, /unavailable/],
    ['TIMEOUT', 202, /unavailable/],
    ['BACKEND_UNREACHABLE', 74, /cannot reach the server for database "shop"/],
    ['INTERNAL', 1, /internal/],
    ['TLS_REQUIRED', 13, /refused/],
    ['PROTOCOL', null, null],
    ['HANDSHAKE_TIMEOUT', null, null],
    ['TOO_MANY', null, null],
    ['SHUTTING_DOWN', 91, /shutting down/],
  ];
  for (const [kind, code, message] of expected) {
    it(`${kind} → ${code ?? 'close without a reply'}`, () => {
      const bytes = encodeErrorReply(new PolyproxyError(kind, 'detail'), 'shop', MSG, 99);
      if (code === null) {
        assert.equal(bytes, null);
        return;
      }
      assert.ok(bytes !== null);
      assert.equal(bytes.readInt32LE(0), bytes.length);
      assert.equal(bytes.readInt32LE(4), 99);
      assert.equal(bytes.readInt32LE(8), 7, 'responseTo is the client request');
      assert.equal(bytes.readInt32LE(12), OP_MSG);
      const doc = BSON.deserialize(bytes.subarray(21));
      assert.equal(doc.ok, 0);
      assert.equal(doc.code, code);
      assert.equal(doc.codeName, MONGO_ERROR[kind]?.codeName);
      assert.match(doc.errmsg, message as RegExp);
    });
  }

  it('answers an OP_QUERY with an OP_REPLY', () => {
    const bytes = encodeErrorReply(new ResolveError('NOT_FOUND'), 'shop', QUERY, 5);
    assert.ok(bytes !== null);
    assert.equal(bytes.readInt32LE(8), 8);
    assert.equal(bytes.readInt32LE(12), OP_REPLY);
    assert.equal(BSON.deserialize(bytes.subarray(36)).code, 26);
  });

  it('sends nothing for a moreToCome request or when no request is known', () => {
    assert.equal(encodeErrorReply(new ResolveError('NOT_FOUND'), 'shop', { ...MSG, moreToCome: true }, 1), null);
    assert.equal(encodeErrorReply(new ResolveError('NOT_FOUND'), 'shop', undefined, 1), null);
  });
});

describe('ServerFacts', () => {
  it('learns wire versions, limits and version from a backend, and ignores failed replies', () => {
    const facts = new ServerFacts();
    facts.learnFromHello({ ok: 0, maxWireVersion: 3 });
    assert.equal(facts.maxWireVersion, 21);
    facts.learnFromHello({ ok: 1, minWireVersion: 0, maxWireVersion: 17, maxBsonObjectSize: 99 * 1024 * 1024, maxWriteBatchSize: 1000, logicalSessionTimeoutMinutes: 45 });
    assert.deepStrictEqual([facts.maxWireVersion, facts.maxBsonObjectSize, facts.maxWriteBatchSize, facts.logicalSessionTimeoutMinutes], [17, 16 * 1024 * 1024, 1000, 45]);
    facts.learnFromBuildInfo({ ok: 1, version: '6.0.5' });
    assert.deepStrictEqual(buildInfoReply(facts).versionArray, [6, 0, 5, 0]);
  });
});
