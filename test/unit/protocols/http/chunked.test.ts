/**
 * ChunkedFramer over wire bytes: the end of a chunked body found whole,
 * byte by byte and split at every offset; bad sizes, CRLFs, extensions and
 * trailers refused with PROTOCOL (400 from a client, 502 from a backend).
 * RFC 9112 §7.1.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import { ChunkedFramer } from '../../../../src/protocols/http/chunked.ts';
import type { HttpParseError } from '../../../../src/protocols/http/head-parser.ts';

const b = (text: string): Buffer => Buffer.from(text, 'latin1');

function isProtocol(status?: number): (err: unknown) => boolean {
  return (err) => err instanceof PolyproxyError && err.kind === 'PROTOCOL' && (status === undefined || (err as HttpParseError).status === status);
}

describe('ChunkedFramer', () => {
  const BODY = b('5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT');
  const END = BODY.length - 4;

  it('finds the end whole, byte by byte and split at every offset', () => {
    assert.equal(new ChunkedFramer().feed(BODY), END);
    const bytewise = new ChunkedFramer();
    let found = -1;
    for (let i = 0; i < BODY.length && found < 0; i++) {
      const at = bytewise.feed(BODY, i, i + 1);
      if (at >= 0) found = at;
    }
    assert.equal(found, END);
    for (let cut = 0; cut <= END; cut++) {
      const framer = new ChunkedFramer();
      const first = framer.feed(BODY, 0, cut);
      const end = first >= 0 ? first : framer.feed(BODY, cut);
      assert.equal(end, END, `cut ${cut}`);
      assert.ok(framer.done);
    }
  });

  it('refuses invalid chunk sizes, missing CRLFs, bare LF and bad trailers', () => {
    const bad = ['zz\r\n', '-1\r\n', '\r\n', '5\nhello\r\n', '5\r\nhelloX\r\n', '5\r\nhello\r\r', '1ffffffffffffffff\r\n', '0\r\n bad\r\n\r\n', '0\r\nX: a\0b\r\n\r\n', '0\r\n\r\r', '5 x\r\n', '5;a\0\r\n', '0\r\nX: 1\n'];
    for (const text of bad) assert.throws(() => new ChunkedFramer().feed(b(text)), isProtocol(400), JSON.stringify(text));
    assert.throws(() => new ChunkedFramer('backend').feed(b('zz\r\n')), isProtocol(502));
  });
});

describe('ChunkedFramer: issue 15 grammar', () => {
  it('refuses chunk extensions outside the chunk-ext grammar (RFC 9112 §7.1.1)', () => {
    const ok = ['2;a\r\nab\r\n0\r\n\r\n', '2;a=b\r\nab\r\n0\r\n\r\n', '2 ; a = "b;\\"c" ;d\r\nab\r\n0\r\n\r\n', '2;a="" \t;b=c\r\nab\r\n0;x\r\n\r\n', '2;a="\xe9\\\xe9"\r\nab\r\n0\r\n\r\n'];
    for (const text of ok) {
      const bytes = b(text);
      assert.equal(new ChunkedFramer().feed(bytes), bytes.length, JSON.stringify(text));
      for (let cut = 1; cut < bytes.length; cut++) {
        const framer = new ChunkedFramer();
        assert.equal(framer.feed(bytes, 0, cut), -1);
        assert.equal(framer.feed(bytes, cut), bytes.length, `${JSON.stringify(text)} cut ${cut}`);
      }
    }
    const bad = ['2;\r\n', '2;;a\r\n', '2; \r\n', '2;a=\r\n', '2;a="b\r\n', '2;a="b\\\r\n', '2;a=b c\r\n', '2;a=b \r\n', '2;a b\r\n', '2;a="b"c\r\n', '2;a=@\r\n', '2;=b\r\n', '2;a="\x7f"\r\n', '2;a\xa0\r\n', '2 \r\n'];
    for (const text of bad) assert.throws(() => new ChunkedFramer().feed(b(text)), isProtocol(400), JSON.stringify(text));
    assert.throws(() => new ChunkedFramer('backend').feed(b('2;\r\n')), isProtocol(502));
  });

  it('refuses trailer lines that are not field lines (RFC 9112 §7.1.2)', () => {
    const trailers = b('0\r\nX-T: a b\xe9\r\nY:\r\n\r\n');
    assert.equal(new ChunkedFramer().feed(trailers), trailers.length);
    for (const text of ['0\r\nX T: a\r\n\r\n', '0\r\nX\r\n\r\n', '0\r\nX :a\r\n\r\n', '0\r\nX\xa0: a\r\n\r\n', '0\r\n"X": a\r\n\r\n']) {
      assert.throws(() => new ChunkedFramer().feed(b(text)), isProtocol(400), JSON.stringify(text));
    }
  });

});

describe('ChunkedFramer with a sink', () => {
  it('hands over the decoded chunk data, split across feeds, and finds the end', () => {
    const framer = new ChunkedFramer('backend');
    const parts: string[] = [];
    const trailers: string[] = [];
    const sink = {
      chunkData(buf: Buffer, start: number, end: number): void {
        parts.push(buf.toString('latin1', start, end));
      },
      chunkTrailer(buf: Buffer, start: number, end: number): void {
        trailers.push(buf.toString('latin1', start, end));
      },
    };
    const body = Buffer.from('5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\ntrailer: x\r\n\r\nNEXT');
    assert.equal(framer.feed(body, 0, 12, sink), -1);
    assert.equal(framer.feed(body, 12, body.length, sink), body.length - 4);
    assert.equal(parts.join(''), 'hello, world');
    assert.deepEqual(trailers, ['trailer: x']);
    assert.ok(framer.done);
  });

  it('hands over each trailer line without its CRLF, whatever the feeds split', () => {
    const body = Buffer.from('3\r\nabc\r\n0\r\nX-Sum: sha256=abc\r\nx-status:done\r\n\r\n');
    // Every split point, including inside a line, between CR and LF, and at the final CRLF.
    for (let cut = 1; cut < body.length; cut++) {
      const trailers: string[] = [];
      const sink = {
        chunkData(): void {},
        chunkTrailer(buf: Buffer, start: number, end: number): void {
          trailers.push(buf.toString('latin1', start, end));
        },
      };
      const framer = new ChunkedFramer('backend');
      assert.equal(framer.feed(body, 0, cut, sink), -1, `cut ${cut}`);
      assert.equal(framer.feed(body, cut, body.length, sink), body.length, `cut ${cut}`);
      assert.deepEqual(trailers, ['X-Sum: sha256=abc', 'x-status:done'], `cut ${cut}`);
    }
  });

  it('hears no trailer line when there is none', () => {
    const trailers: string[] = [];
    const sink = { chunkData(): void {}, chunkTrailer(): void { trailers.push('?'); } };
    const body = Buffer.from('2\r\nok\r\n0\r\n\r\n');
    assert.equal(new ChunkedFramer('backend').feed(body, 0, body.length, sink), body.length);
    assert.deepEqual(trailers, []);
  });
});
