/**
 * Fuzzing the MySQL split's answer tracker (src/protocols/mysql/split/response.ts):
 * where the backend's answer to one command ends decides when the next
 * command may go to another connection, and the status it ends with
 * decides whether the session is in a transaction. So:
 * - on any bytes, for every answer kind and both EOF framings, it never
 *   throws, never claims more bytes than it was given, and reaches the same
 *   end, status, error code and LOCAL INFILE state however TCP cut the bytes;
 * - on well-formed answers (OK, ERR, result sets with NULLs and long
 *   strings, multi-results, prepares) it ends exactly at the answer's last
 *   byte with the closing status, leaving what follows unread.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ANSWER_NONE, ANSWER_PREPARE, ANSWER_RESULT, ANSWER_UNTIL_EOF, ResponseTracker, SERVER_MORE_RESULTS_EXISTS } from '../../src/protocols/mysql/split/response.ts';
import { chunked, cuts, fuzz } from '../helpers/fuzz.ts';

interface Outcome {
  used: number;
  done: boolean;
  status: number;
  errorCode: number;
  infile: boolean;
}

function outcome(t: ResponseTracker, used: number): Outcome {
  return { used, done: t.done, status: t.status, errorCode: t.errorCode, infile: t.infile };
}

function whole(kind: number, deprecateEof: boolean, bytes: Buffer): Outcome {
  const t = new ResponseTracker(deprecateEof);
  t.start(kind);
  const used = t.feed(bytes, 0, bytes.length);
  assert.ok(used >= 0 && used <= bytes.length, `feed claimed ${used} of ${bytes.length} bytes`);
  return outcome(t, used);
}

/** Feeds the chunks as a session does: stops at the chunk the answer ended in. */
function inChunks(kind: number, deprecateEof: boolean, chunks: readonly Buffer[]): Outcome {
  const t = new ResponseTracker(deprecateEof);
  t.start(kind);
  let used = 0;
  for (const chunk of chunks) {
    const n = t.feed(chunk, 0, chunk.length);
    assert.ok(n >= 0 && n <= chunk.length);
    used += n;
    if (n < chunk.length || t.done || t.infile) break;
  }
  return outcome(t, used);
}

function packet(seq: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUIntLE(payload.length, 0, 3);
  head[3] = seq & 0xff;
  return Buffer.concat([head, payload]);
}

/** A length-encoded integer (https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_dt_integers.html). */
function lenenc(n: number): Buffer {
  if (n < 0xfb) return Buffer.from([n]);
  if (n < 0x10000) return Buffer.from([0xfc, n & 0xff, n >> 8]);
  return Buffer.from([0xfd, n & 0xff, (n >> 8) & 0xff, n >> 16]);
}

const ok = (header: number, affected: number, status: number, info: Buffer): Buffer => Buffer.concat([Buffer.from([header]), lenenc(affected), lenenc(0), Buffer.from([status & 0xff, status >> 8, 0, 0]), info]);
const eof = (status: number): Buffer => Buffer.from([0xfe, 0, 0, status & 0xff, status >> 8]);
const column = Buffer.from([3, 0x64, 0x65, 0x66, 0, 0, 0, 1, 0x61, 1, 0x61, 0x0c, 0x21, 0, 0, 0, 0, 0xfd, 0, 0, 0, 0, 0]);

/** A result set's packets: count, columns, (EOF), rows, terminator with `status`. */
function resultSet(deprecateEof: boolean, columns: number, rows: readonly (readonly (Buffer | null)[])[], status: number): Buffer[] {
  const packets = [lenenc(columns)];
  for (let i = 0; i < columns; i++) packets.push(column);
  if (!deprecateEof) packets.push(eof(status & ~SERVER_MORE_RESULTS_EXISTS));
  for (const values of rows) packets.push(Buffer.concat(values.slice(0, columns).map((v) => (v === null ? Buffer.from([0xfb]) : Buffer.concat([lenenc(v.length), v])))));
  packets.push(deprecateEof ? ok(0xfe, 0, status, Buffer.alloc(0)) : eof(status));
  return packets;
}

const status = fc.integer({ min: 0, max: 0xffff }).map((s) => s & ~SERVER_MORE_RESULTS_EXISTS & ~0x0040);
const value = fc.oneof(fc.constant(null), fc.uint8Array({ minLength: 0, maxLength: 300 }).map((a) => Buffer.from(a)));
const result = fc.record({
  columns: fc.integer({ min: 1, max: 4 }),
  rows: fc.array(fc.array(value, { minLength: 4, maxLength: 4 }), { maxLength: 4 }),
  ok: fc.boolean(),
  affected: fc.nat(),
  info: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
});

describe('fuzz: MySQL split answer tracker', () => {
  it('any bytes, any kind: never throws, and TCP cuts change nothing', (t) => {
    fuzz(
      t,
      fc.property(fc.integer({ min: ANSWER_NONE, max: ANSWER_UNTIL_EOF }), fc.boolean(), fc.uint8Array({ maxLength: 400 }), cuts, (kind, deprecateEof, raw, at) => {
        const bytes = Buffer.from(raw);
        assert.deepEqual(inChunks(kind, deprecateEof, chunked(bytes, at)), whole(kind, deprecateEof, bytes));
      }),
    );
  });

  it('well-formed answers, results and multi-results: ends exactly at the last byte with the closing status', (t) => {
    fuzz(
      t,
      fc.property(fc.boolean(), fc.array(fc.tuple(result, status), { minLength: 1, maxLength: 3 }), fc.uint8Array({ maxLength: 20 }), cuts, (deprecateEof, results, after, at) => {
        const packets: Buffer[] = [];
        results.forEach(([r, s], i) => {
          const closing = i < results.length - 1 ? s | SERVER_MORE_RESULTS_EXISTS : s;
          if (r.ok) packets.push(ok(0x00, r.affected, closing, r.info));
          else packets.push(...resultSet(deprecateEof, r.columns, r.rows, closing));
        });
        const answer = Buffer.concat(packets.map((p, i) => packet(i + 1, p)));
        const bytes = Buffer.concat([answer, Buffer.from(after)]);
        const expected = { used: answer.length, done: true, status: (results.at(-1) as [unknown, number])[1], errorCode: 0, infile: false };
        assert.deepEqual(whole(ANSWER_RESULT, deprecateEof, bytes), expected);
        assert.deepEqual(inChunks(ANSWER_RESULT, deprecateEof, chunked(bytes, at)), expected);
      }),
    );
  });

  it('an ERR first, or inside the rows, ends the answer where it ends', (t) => {
    fuzz(
      t,
      fc.property(fc.boolean(), result, fc.integer({ min: 1000, max: 0xffff }), fc.uint8Array({ maxLength: 60 }), cuts, (deprecateEof, r, code, message, at) => {
        const err = Buffer.concat([Buffer.from([0xff, code & 0xff, code >> 8, 0x23, 0x48, 0x59, 0x30, 0x30, 0x30]), Buffer.from(message)]);
        const first = packet(1, err);
        const expectedFirst = { used: first.length, done: true, status: -1, errorCode: code, infile: false };
        assert.deepEqual(whole(ANSWER_RESULT, deprecateEof, Buffer.concat([first, Buffer.from([1, 0, 0, 2, 0])])), expectedFirst);
        const set = resultSet(deprecateEof, r.columns, r.rows, 0).slice(0, -1);
        const answer = Buffer.concat([...set, err].map((p, i) => packet(i + 1, p)));
        const got = inChunks(ANSWER_RESULT, deprecateEof, chunked(Buffer.concat([answer, Buffer.from([7, 7, 7])]), at));
        assert.equal(got.used, answer.length);
        assert.equal(got.done, true);
      }),
    );
  });

  it('COM_STMT_PREPARE: parameters and columns (each list with its EOF in classic framing)', (t) => {
    fuzz(
      t,
      fc.property(fc.boolean(), fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 5 }), status, cuts, (deprecateEof, params, columns, s, at) => {
        const head = Buffer.from([0x00, 1, 0, 0, 0, columns & 0xff, columns >> 8, params & 0xff, params >> 8, 0, 0, 0]);
        const packets: Buffer[] = [head];
        for (let i = 0; i < params; i++) packets.push(column);
        if (params > 0 && !deprecateEof) packets.push(eof(s));
        for (let i = 0; i < columns; i++) packets.push(column);
        if (columns > 0 && !deprecateEof) packets.push(eof(s));
        const answer = Buffer.concat(packets.map((p, i) => packet(i + 1, p)));
        const got = inChunks(ANSWER_PREPARE, deprecateEof, chunked(Buffer.concat([answer, Buffer.from([9, 9])]), at));
        assert.equal(got.used, answer.length);
        assert.equal(got.done, true);
      }),
    );
  });
});
