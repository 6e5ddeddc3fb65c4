import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReadAfterWrite } from '../../../../src/core/rw-split/read-after-write.ts';

test('after a committed write, reads need the primary for ms, then not', () => {
  const raw = new ReadAfterWrite(500);
  assert.equal(raw.primaryRequired(1000), false);
  raw.noteCommittedWrite(1000);
  assert.equal(raw.primaryRequired(1000), true);
  assert.equal(raw.primaryRequired(1499), true);
  assert.equal(raw.primaryRequired(1500), false);
  raw.noteCommittedWrite(1400);
  assert.equal(raw.primaryRequired(1800), true);
});

test('ms 0 is off', () => {
  const raw = new ReadAfterWrite(0);
  raw.noteCommittedWrite(1000);
  assert.equal(raw.primaryRequired(1000), false);
});
