/**
 * FastCGI record framing (spec section 3.3): exact bytes, every split of a
 * stream, padding and the version check. (Properties: test/fuzz/fastcgi.fuzz.test.ts.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FastCgiError } from '../../../src/fastcgi/errors.ts';
import {
  FCGI_END_REQUEST,
  FCGI_KEEP_CONN,
  FCGI_MAX_CONTENT,
  FCGI_PARAMS,
  FCGI_RESPONDER,
  FCGI_STDIN,
  FCGI_STDOUT,
  RecordParser,
  decodeBeginRequest,
  decodeEndRequest,
  decodeRecords,
  encodeBeginRequest,
  encodeEndRequest,
  encodeRecord,
  encodeStream,
} from '../../../src/fastcgi/records.ts';

interface Seen {
  type: number;
  id: number;
  content: string;
}

function parseChunks(chunks: readonly Buffer[]): Seen[] {
  const seen: Seen[] = [];
  const parser = new RecordParser((type, id, content) => seen.push({ type, id, content: content.toString('hex') }));
  for (const chunk of chunks) parser.push(chunk);
  assert.ok(parser.atBoundary, 'parser ends between records');
  return seen;
}

function protocolError(err: unknown): boolean {
  return err instanceof FastCgiError && err.code === 'FCGI_ERR_PROTOCOL';
}

describe('FastCGI records', () => {
  it('encodes a BEGIN_REQUEST with the keep-conn flag byte for byte', () => {
    assert.equal(encodeBeginRequest(1, FCGI_RESPONDER, FCGI_KEEP_CONN).toString('hex'), '0101000100080000' + '0001010000000000');
    assert.deepEqual(decodeBeginRequest(Buffer.from('0001010000000000', 'hex')), { role: 1, flags: 1 });
  });

  it('encodes and decodes END_REQUEST', () => {
    const bytes = encodeEndRequest(7, 255, 0);
    assert.equal(bytes.toString('hex'), '0103000700080000' + '000000ff00000000');
    const [record] = decodeRecords(bytes);
    assert.deepEqual(decodeEndRequest(record?.content as Buffer), { appStatus: 255, protocolStatus: 0 });
    assert.throws(() => decodeEndRequest(Buffer.alloc(3)), protocolError);
  });

  it('splits a stream into records of at most 65535 bytes', () => {
    const content = Buffer.alloc(FCGI_MAX_CONTENT * 2 + 10, 0xab);
    const records = decodeRecords(encodeStream(FCGI_STDIN, 1, content));
    assert.deepEqual(
      records.map((r) => r.content.length),
      [FCGI_MAX_CONTENT, FCGI_MAX_CONTENT, 10],
    );
    assert.ok(records.every((r) => r.type === FCGI_STDIN && r.requestId === 1));
    assert.equal(encodeStream(FCGI_STDIN, 1, Buffer.alloc(0)).length, 0);
  });

  it('refuses what the header cannot carry', () => {
    assert.throws(() => encodeRecord(FCGI_STDOUT, 1, Buffer.alloc(FCGI_MAX_CONTENT + 1)), (e: unknown) => e instanceof FastCgiError && e.code === 'FCGI_ERR_INVALID_ARGUMENT');
    assert.throws(() => encodeRecord(FCGI_STDOUT, 70000), (e: unknown) => e instanceof FastCgiError && e.code === 'FCGI_ERR_INVALID_ARGUMENT');
    assert.throws(() => encodeRecord(300, 1), (e: unknown) => e instanceof FastCgiError && e.code === 'FCGI_ERR_INVALID_ARGUMENT');
  });

  it('skips padding and decodes the same whole, byte by byte, and split at every offset', () => {
    // STDOUT "hi" with 6 bytes of padding, an empty PARAMS, END_REQUEST.
    const bytes = Buffer.from('0106000100020600' + '6869' + '000000000000' + '0104000100000000' + '0103000100080000' + '0000000000000000', 'hex');
    const whole = parseChunks([bytes]);
    assert.deepEqual(whole, [
      { type: FCGI_STDOUT, id: 1, content: '6869' },
      { type: FCGI_PARAMS, id: 1, content: '' },
      { type: FCGI_END_REQUEST, id: 1, content: '0000000000000000' },
    ]);
    assert.deepEqual(parseChunks([...bytes].map((b) => Buffer.from([b]))), whole);
    for (let i = 0; i <= bytes.length; i++) assert.deepEqual(parseChunks([bytes.subarray(0, i), bytes.subarray(i)]), whole, `split at ${i}`);
  });

  it('fails with FCGI_ERR_PROTOCOL on a bad version, and stays failed', () => {
    const parser = new RecordParser(() => {});
    assert.throws(() => parser.push(Buffer.from('0206000100000000', 'hex')), protocolError);
    assert.throws(() => parser.push(encodeRecord(FCGI_STDOUT, 1)), protocolError);
  });

  it('reports a truncated record at the end of decodeRecords input', () => {
    assert.throws(() => decodeRecords(encodeRecord(FCGI_STDOUT, 1, Buffer.from('abc')).subarray(0, 9)), protocolError);
  });
});
