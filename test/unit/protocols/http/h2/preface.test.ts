import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IS_H2, MAYBE_H2, NOT_H2, PREFACE, prefaceState } from '../../../../../src/protocols/http/h2/preface.ts';

describe('prefaceState', () => {
  it('the whole preface (and anything after it) is HTTP/2', () => {
    assert.equal(prefaceState(PREFACE), IS_H2);
    assert.equal(prefaceState(Buffer.concat([PREFACE, Buffer.from('000012040000000000', 'hex')])), IS_H2);
  });

  it('every proper prefix waits for more bytes', () => {
    for (let n = 1; n < PREFACE.length; n++) assert.equal(prefaceState(PREFACE.subarray(0, n)), MAYBE_H2, `prefix of ${n}`);
  });

  it('HTTP/1.1 requests, including ones that start like the preface, are not HTTP/2', () => {
    for (const text of ['GET / HTTP/1.1\r\n', 'PRINT / HTTP/1.1\r\n', 'PRI / HTTP/1.1\r\n', 'PRI * HTTP/1.1\r\n\r\n', 'PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n', 'pri * HTTP/2.0\r\n\r\nSM\r\n\r\n']) {
      assert.equal(prefaceState(Buffer.from(text, 'latin1')), NOT_H2, JSON.stringify(text));
    }
  });

  it('reads only `length` bytes', () => {
    assert.equal(prefaceState(PREFACE, 3), MAYBE_H2);
    assert.equal(prefaceState(Buffer.from('PRX'), 2), MAYBE_H2);
  });
});
