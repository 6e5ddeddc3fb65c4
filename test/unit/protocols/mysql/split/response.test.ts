import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ANSWER_NONE, ANSWER_PREPARE, ANSWER_RESULT, ANSWER_SIMPLE, ResponseTracker, answerKind } from '../../../../../src/protocols/mysql/split/response.ts';

function packet(seq: number, payload: number[] | Buffer): Buffer {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const head = Buffer.alloc(4);
  head.writeUIntLE(body.length, 0, 3);
  head[3] = seq;
  return Buffer.concat([head, body]);
}
/** OK: header, affected rows, last insert id, status, warnings (+ session-track info). */
const ok = (status: number, header = 0x00, extra: number[] = []) => [header, 0, 0, status & 0xff, status >> 8, 0, 0, ...extra];
const eof = (status: number) => [0xfe, 0, 0, status & 0xff, status >> 8];
const column = () => Buffer.from([3, 0x64, 0x65, 0x66, 0, 0, 0, 1, 0x61, 1, 0x61, 0x0c, 0x21, 0, 0, 0, 0, 0xfd, 0, 0, 0, 0, 0]);
const row = (text: string) => Buffer.concat([Buffer.from([text.length]), Buffer.from(text)]);

/** Feeds `bytes` one byte at a time and whole; both must end at the same place with the same status. */
function track(kind: number, deprecateEof: boolean, bytes: Buffer): { used: number; status: number; done: boolean } {
  const whole = new ResponseTracker(deprecateEof);
  whole.start(kind);
  const used = whole.feed(bytes, 0, bytes.length);
  const split = new ResponseTracker(deprecateEof);
  split.start(kind);
  let at = 0;
  while (at < bytes.length && !split.done) at += split.feed(bytes, at, at + 1);
  assert.equal(at, used, 'byte-at-a-time ends at the same byte');
  assert.equal(split.status, whole.status);
  return { used, status: whole.status, done: whole.done };
}

test('an OK (with session-state info longer than the looked-at prefix) ends the answer with its status', () => {
  const bytes = packet(1, ok(0x4000, 0x00, [0, 0x0f, ...Array(20).fill(1)]));
  assert.deepEqual(track(ANSWER_RESULT, true, Buffer.concat([bytes, Buffer.from([9, 9])])), { used: bytes.length, status: 0x4000, done: true });
});

test('a text result set: classic EOF framing and CLIENT_DEPRECATE_EOF, the closing status (in transaction)', () => {
  const classic = Buffer.concat([packet(1, [2]), packet(2, column()), packet(3, column()), packet(4, eof(0x0003)), packet(5, Buffer.concat([row('ab'), row('cd')])), packet(6, eof(0x0003))]);
  assert.deepEqual(track(ANSWER_RESULT, false, classic), { used: classic.length, status: 0x0003, done: true });
  const modern = Buffer.concat([packet(1, [1]), packet(2, column()), packet(3, row('x')), packet(4, ok(0x0001, 0xfe))]);
  assert.deepEqual(track(ANSWER_RESULT, true, modern), { used: modern.length, status: 0x0001, done: true });
});

test('multi-results: SERVER_MORE_RESULTS_EXISTS keeps the answer open until the last result', () => {
  const bytes = Buffer.concat([packet(1, ok(0x000a)), packet(2, [1]), packet(3, column()), packet(4, row('1')), packet(5, ok(0x000a, 0xfe)), packet(6, ok(0x0002))]);
  assert.deepEqual(track(ANSWER_RESULT, true, bytes), { used: bytes.length, status: 0x0002, done: true });
  const half = new ResponseTracker(true);
  half.start(ANSWER_RESULT);
  half.feed(bytes, 0, packet(1, ok(0x000a)).length);
  assert.equal(half.done, false);
});

test('an ERR ends the answer and keeps its code; LOCAL INFILE waits for the client file', () => {
  const err = packet(1, [0xff, 0x26, 0x04, 0x23, 0x34, 0x32, 0x30, 0x30, 0x30, 0x78]);
  const t = new ResponseTracker(true);
  t.start(ANSWER_RESULT);
  t.feed(err, 0, err.length);
  assert.equal(t.done, true);
  assert.equal(t.errorCode, 1062);
  const infile = packet(1, [0xfb, 0x2f, 0x74]);
  t.start(ANSWER_RESULT);
  assert.equal(t.feed(infile, 0, infile.length), infile.length);
  assert.equal(t.infile, true);
  assert.equal(t.done, false);
  t.infileSent();
  const fin = packet(4, ok(0x0002));
  t.feed(fin, 0, fin.length);
  assert.equal(t.done, true);
});

test('COM_STMT_PREPARE: parameter and column definitions (each list with its EOF in classic framing); none answered for CLOSE', () => {
  const prepareOk = [0x00, 1, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0];
  const classic = Buffer.concat([packet(1, prepareOk), packet(2, column()), packet(3, column()), packet(4, eof(2)), packet(5, column()), packet(6, eof(2))]);
  assert.equal(track(ANSWER_PREPARE, false, classic).used, classic.length);
  const modern = Buffer.concat([packet(1, prepareOk), packet(2, column()), packet(3, column()), packet(4, column())]);
  assert.equal(track(ANSWER_PREPARE, true, modern).used, modern.length);
  assert.equal(answerKind(0x19), ANSWER_NONE);
  assert.equal(answerKind(0x0e), ANSWER_SIMPLE);
  const t = new ResponseTracker(true);
  t.start(ANSWER_NONE);
  assert.equal(t.done, true);
});

test('a row of more than 0xFFFFFF bytes continues in the next packet without being read as a terminator', () => {
  const big = Buffer.alloc(0xffffff, 0x61);
  big[0] = 0xfe; // a lenenc 8-byte length starts the row
  const bytes = Buffer.concat([packet(1, [1]), packet(2, column()), packet(3, big), packet(4, [0xfe, 1]), packet(5, ok(0x0002, 0xfe))]);
  const t = new ResponseTracker(true);
  t.start(ANSWER_RESULT);
  assert.equal(t.feed(bytes, 0, bytes.length), bytes.length);
  assert.equal(t.done, true);
  assert.equal(t.status, 0x0002);
});
