/** The supervisor's relay for core/cluster.ts `ask` (used by ws-bridge pushes across workers). */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { test } from 'node:test';
import type { AnswersMessage, AskMessage } from '../../../src/core/cluster.ts';
import { AskRelay } from '../../../src/supervisor/ask-relay.ts';

class FakeChild {
  readonly pid: number;
  connected = true;
  readonly sent: unknown[] = [];
  constructor(pid: number) {
    this.pid = pid;
  }
  send(message: unknown): boolean {
    this.sent.push(message);
    return true;
  }
}

const asChild = (c: FakeChild): ChildProcess => c as unknown as ChildProcess;
const ask = (id: number, timeoutMs = 1000): AskMessage => ({ type: 'polyproxy:ask', id, topic: 't', payload: { x: 1 }, timeoutMs });

test('forwards to every other worker and returns all answers in one message', () => {
  const relay = new AskRelay();
  const [a, b, c] = [new FakeChild(1), new FakeChild(2), new FakeChild(3)];
  relay.ask(asChild(a), ask(7), [a, b, c].map(asChild));
  assert.equal(a.sent.length, 0);
  assert.deepEqual(b.sent, [{ ...ask(7), asker: 1 }]);
  relay.answer(asChild(b), { type: 'polyproxy:answer', id: 7, asker: 1, answer: false });
  assert.equal(a.sent.length, 0, 'waits for every worker');
  relay.answer(asChild(c), { type: 'polyproxy:answer', id: 7, asker: 1, answer: true });
  assert.deepEqual(a.sent, [{ type: 'polyproxy:answers', id: 7, answers: [false, true], missing: 0 } satisfies AnswersMessage]);
  // A late duplicate changes nothing.
  relay.answer(asChild(c), { type: 'polyproxy:answer', id: 7, asker: 1, answer: true });
  assert.equal(a.sent.length, 1);
});

test('no other worker: answered at once, nothing missing', () => {
  const relay = new AskRelay();
  const a = new FakeChild(1);
  relay.ask(asChild(a), ask(1), [asChild(a)]);
  assert.deepEqual(a.sent, [{ type: 'polyproxy:answers', id: 1, answers: [], missing: 0 }]);
});

test('a worker that exits counts as answered; the deadline reports the silent ones', async () => {
  const relay = new AskRelay();
  const [a, b, c] = [new FakeChild(1), new FakeChild(2), new FakeChild(3)];
  relay.ask(asChild(a), ask(2), [a, b, c].map(asChild));
  relay.forget(asChild(b));
  relay.answer(asChild(c), { type: 'polyproxy:answer', id: 2, asker: 1, answer: 'x' });
  assert.deepEqual(a.sent, [{ type: 'polyproxy:answers', id: 2, answers: ['x'], missing: 0 }]);

  relay.ask(asChild(a), ask(3, 20), [a, c].map(asChild));
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.deepEqual(a.sent[1], { type: 'polyproxy:answers', id: 3, answers: [], missing: 1 });
});
