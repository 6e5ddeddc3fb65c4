/**
 * src/protocols/mongodb/handshake.ts (pure): the facts learnt from the
 * backends' hello and buildInfo, the commands answered before routing,
 * the hello and buildInfo the proxy answers with, and when an awaitable
 * hello may be held.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Double, ObjectId } from '../../../../src/protocols/mongodb/bson.ts';
import { ServerFacts, awaitTimeMs, buildInfoReply, handshakeCommand, helloReply } from '../../../../src/protocols/mongodb/handshake.ts';
import type { TopologyVersion } from '../../../../src/protocols/mongodb/handshake.ts';
import { MAX_BSON_OBJECT_SIZE, MAX_OPENING_MESSAGE } from '../../../../src/protocols/mongodb/wire.ts';

const TOPOLOGY: TopologyVersion = { processId: new ObjectId(Buffer.alloc(12, 7)), counter: 0n };

describe('ServerFacts', () => {
  it('starts as a MongoDB 7.0 standalone', () => {
    const facts = new ServerFacts();
    assert.equal(facts.maxWireVersion, 21);
    assert.equal(facts.version, '7.0.0');
    assert.equal(facts.helloLearned, false);
  });

  it('learns wire versions and limits from an ok hello, capping the object size at what the proxy reads', () => {
    const facts = new ServerFacts();
    facts.learnFromHello({ ok: new Double(1), minWireVersion: 0, maxWireVersion: 17, maxBsonObjectSize: MAX_BSON_OBJECT_SIZE * 2, maxWriteBatchSize: 1000n, logicalSessionTimeoutMinutes: 15 });
    assert.equal(facts.maxWireVersion, 17);
    assert.equal(facts.maxBsonObjectSize, MAX_BSON_OBJECT_SIZE);
    assert.equal(facts.maxWriteBatchSize, 1000);
    assert.equal(facts.logicalSessionTimeoutMinutes, 15);
    assert.equal(facts.helloLearned, true);
  });

  it('ignores a failed hello and inconsistent wire versions; no session timeout means no sessions', () => {
    const facts = new ServerFacts();
    facts.learnFromHello({ ok: 0, maxWireVersion: 6 });
    assert.equal(facts.maxWireVersion, 21);
    assert.equal(facts.helloLearned, false);
    facts.learnFromHello({ ok: 1, minWireVersion: 9, maxWireVersion: 8 });
    assert.equal(facts.minWireVersion, 0);
    assert.equal(facts.logicalSessionTimeoutMinutes, null);
  });

  it('learns the version from buildInfo only when it looks like one', () => {
    const facts = new ServerFacts();
    facts.learnFromBuildInfo({ ok: 1, version: 'banana' });
    assert.equal(facts.buildInfoLearned, false);
    facts.learnFromBuildInfo({ ok: true, version: '6.0.3' });
    assert.equal(facts.version, '6.0.3');
    assert.equal(facts.buildInfoLearned, true);
  });
});

describe('handshake commands and replies', () => {
  it('recognises the commands answered before routing, in mongod\'s spellings only', () => {
    assert.equal(handshakeCommand('hello'), 'hello');
    assert.equal(handshakeCommand('ismaster'), 'isMaster');
    assert.equal(handshakeCommand('isMaster'), 'isMaster');
    assert.equal(handshakeCommand('buildinfo'), 'buildInfo');
    assert.equal(handshakeCommand('endSessions'), 'endSessions');
    assert.equal(handshakeCommand('Hello'), undefined);
    assert.equal(handshakeCommand('find'), undefined);
    assert.equal(handshakeCommand(undefined), undefined);
  });

  it('hello answers as a writable standalone with the learnt facts', () => {
    const facts = new ServerFacts();
    facts.learnFromHello({ ok: 1, minWireVersion: 0, maxWireVersion: 17, logicalSessionTimeoutMinutes: 30 });
    const now = new Date(0);
    const doc = helloReply('hello', { hello: 1, helloOk: true }, { facts, topologyVersion: TOPOLOGY, connectionId: 9, now });
    assert.equal(doc.helloOk, true);
    assert.equal(doc.isWritablePrimary, true);
    assert.equal(doc.ismaster, undefined);
    assert.equal(doc.maxWireVersion, 17);
    assert.equal(doc.maxMessageSizeBytes, MAX_OPENING_MESSAGE);
    assert.equal(doc.connectionId, 9);
    assert.equal(doc.localTime, now);
    assert.equal(doc.logicalSessionTimeoutMinutes, 30);
    assert.equal(doc.compression, undefined, 'never offers compression');
    assert.deepEqual(doc.ok, new Double(1));
    const legacy = helloReply('isMaster', { isMaster: 1 }, { facts, topologyVersion: TOPOLOGY, connectionId: 1, now });
    assert.equal(legacy.ismaster, true);
    assert.equal(legacy.isWritablePrimary, undefined);
    assert.equal(legacy.helloOk, undefined);
  });

  it('buildInfo carries the version and its array', () => {
    const facts = new ServerFacts();
    facts.learnFromBuildInfo({ ok: 1, version: '6.0.3-rc1' });
    const doc = buildInfoReply(facts);
    assert.equal(doc.version, '6.0.3-rc1');
    assert.deepEqual(doc.versionArray, [6, 0, 3, 0]);
    assert.equal(doc.bits, 64);
  });
});

describe('awaitTimeMs', () => {
  it('holds a hello that names the current topologyVersion, for its maxAwaitTimeMS', () => {
    assert.equal(awaitTimeMs({ topologyVersion: { processId: TOPOLOGY.processId, counter: 0n }, maxAwaitTimeMS: 10000 }, TOPOLOGY), 10000);
    assert.equal(awaitTimeMs({ topologyVersion: { processId: TOPOLOGY.processId, counter: 0 }, maxAwaitTimeMS: 5n }, TOPOLOGY), 5);
  });

  it('answers at once when the client\'s view is stale or it did not ask to wait', () => {
    const other = new ObjectId(Buffer.alloc(12, 1));
    assert.equal(awaitTimeMs({ topologyVersion: { processId: other, counter: 0n }, maxAwaitTimeMS: 100 }, TOPOLOGY), undefined);
    assert.equal(awaitTimeMs({ topologyVersion: { processId: TOPOLOGY.processId, counter: 1n }, maxAwaitTimeMS: 100 }, TOPOLOGY), undefined);
    assert.equal(awaitTimeMs({ topologyVersion: { processId: TOPOLOGY.processId, counter: 0n } }, TOPOLOGY), undefined);
    assert.equal(awaitTimeMs({ topologyVersion: { processId: TOPOLOGY.processId, counter: 0n }, maxAwaitTimeMS: -1 }, TOPOLOGY), undefined);
    assert.equal(awaitTimeMs({ maxAwaitTimeMS: 100 }, TOPOLOGY), undefined);
  });
});
