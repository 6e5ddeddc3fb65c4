/**
 * src/core/cluster.ts: broadcasts and asks between workers. Outside a
 * worker they go nowhere; as a worker (POLYPROXY_WORKER set and an IPC
 * channel, here a recording process.send) the messages have the shape the
 * supervisor relays, answers come back by id, handlers that throw answer
 * undefined.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { answerAsk, ask, broadcast, deliverAnswers, deliverBroadcast, isAnswer, isAnswers, isAsk, isBroadcast, onAsk, onBroadcast } from '../../../src/core/cluster.ts';
import type { AnswerMessage, AskMessage } from '../../../src/core/cluster.ts';

describe('cluster outside a worker', () => {
  it('broadcast reports no siblings and ask resolves at once with nothing missing', async () => {
    assert.equal(process.env.POLYPROXY_WORKER, undefined);
    assert.equal(broadcast('t', {}), false);
    assert.deepEqual(await ask('t', {}, 1000), { answers: [], missing: 0 });
  });

  it('deliverBroadcast calls the handler of its topic only', () => {
    const seen: unknown[] = [];
    onBroadcast('cluster-test.a', (payload) => seen.push(['a', payload]));
    onBroadcast('cluster-test.b', (payload) => seen.push(['b', payload]));
    const message = { type: 'polyproxy:broadcast', topic: 'cluster-test.b', payload: 42 };
    assert.equal(isBroadcast(message), true);
    deliverBroadcast(message as Parameters<typeof deliverBroadcast>[0]);
    deliverBroadcast({ ...message, topic: 'cluster-test.none' } as Parameters<typeof deliverBroadcast>[0]);
    assert.deepEqual(seen, [['b', 42]]);
  });
});

describe('cluster as a worker', () => {
  let sent: unknown[];
  const original = process.send;
  beforeEach(() => {
    sent = [];
    process.env.POLYPROXY_WORKER = '1';
    process.send = ((message: unknown) => {
      sent.push(message);
      return true;
    }) as typeof process.send;
  });
  afterEach(() => {
    delete process.env.POLYPROXY_WORKER;
    process.send = original;
  });

  it('broadcast sends one message for the supervisor to fan out', () => {
    assert.equal(broadcast('postgres.cancel', { key: 'k' }), true);
    assert.deepEqual(sent, [{ type: 'polyproxy:broadcast', topic: 'postgres.cancel', payload: { key: 'k' } }]);
  });

  it('ask sends an AskMessage and resolves with the answers delivered for its id', async () => {
    const pending = ask('push', { client: 'c1' }, 500);
    const message = sent[0] as AskMessage;
    assert.equal(isAsk(message), true);
    assert.equal(message.topic, 'push');
    assert.deepEqual(message.payload, { client: 'c1' });
    assert.equal(message.timeoutMs, 500);
    deliverAnswers({ type: 'polyproxy:answers', id: message.id + 1000, answers: ['wrong'], missing: 0 });
    const answers = { type: 'polyproxy:answers' as const, id: message.id, answers: [true, false], missing: 1 };
    assert.equal(isAnswers(answers), true);
    deliverAnswers(answers);
    assert.deepEqual(await pending, { answers: [true, false], missing: 1 });
  });

  it('answerAsk replies with the handler\'s value, awaited; undefined when it throws, rejects or is missing', async () => {
    onAsk('cluster-test.value', (payload) => (payload as number) * 2);
    onAsk('cluster-test.async', (payload) => Promise.resolve(`got ${String(payload)}`));
    onAsk('cluster-test.throws', () => {
      throw new Error('boom');
    });
    onAsk('cluster-test.rejects', () => Promise.reject(new Error('boom')));
    const askOf = (topic: string, id: number): AskMessage & { asker: number } => ({ type: 'polyproxy:ask', id, topic, payload: 21, timeoutMs: 100, asker: 777 });
    answerAsk(askOf('cluster-test.value', 1));
    answerAsk(askOf('cluster-test.async', 2));
    answerAsk(askOf('cluster-test.throws', 3));
    answerAsk(askOf('cluster-test.rejects', 4));
    answerAsk(askOf('cluster-test.nobody', 5));
    // Let the promise-based answers settle.
    while (sent.length < 5) await new Promise((resolve) => setImmediate(resolve));
    const byId = new Map((sent as AnswerMessage[]).map((m) => [m.id, m]));
    assert.ok([...byId.values()].every((m) => isAnswer(m) && m.asker === 777));
    assert.equal(byId.get(1)?.answer, 42);
    assert.equal(byId.get(2)?.answer, 'got 21');
    assert.equal(byId.get(3)?.answer, undefined);
    assert.equal(byId.get(4)?.answer, undefined);
    assert.equal(byId.get(5)?.answer, undefined);
    assert.equal(byId.size, 5);
  });
});
