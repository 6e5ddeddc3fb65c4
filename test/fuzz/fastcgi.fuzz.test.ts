/**
 * Fuzzing the FastCGI parsers (issue 15): records and name-value pairs
 * round-trip under any chunking, and on arbitrary bytes agree with
 * reference decoders written here from the specification (sections 3.3,
 * 3.4); the CGI response head (RFC 3875 section 6) round-trips and reads
 * the same in any two chunks.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CgiHeadParser, splitCgiOutput } from '../../src/fastcgi/cgi-head.ts';
import { FastCgiError } from '../../src/fastcgi/errors.ts';
import { decodeNameValuePairs, encodeNameValuePairs } from '../../src/fastcgi/name-value.ts';
import { FCGI_MAX_CONTENT, RecordParser, encodeRecord, encodeStream } from '../../src/fastcgi/records.ts';
import { chunked, cuts, fuzz, text } from '../helpers/fuzz.ts';

function protocolError(err: unknown): boolean {
  return err instanceof FastCgiError && err.code === 'FCGI_ERR_PROTOCOL';
}

interface Seen {
  type: number;
  id: number;
  content: string;
}

interface Run {
  seen: Seen[];
  /** Failed (a header with a version other than 1). */
  error: boolean;
  /** Ended between records. */
  boundary: boolean;
}

function parseChunks(chunks: readonly Buffer[]): Run {
  const seen: Seen[] = [];
  const parser = new RecordParser((type, id, content) => seen.push({ type, id, content: content.toString('hex') }));
  try {
    for (const chunk of chunks) parser.push(chunk);
  } catch (err) {
    assert.ok(protocolError(err), `unexpected ${String(err)}`);
    // Failed for good: the next push throws the same.
    assert.throws(() => parser.push(Buffer.alloc(1)), protocolError);
    return { seen, error: true, boundary: false };
  }
  return { seen, error: false, boundary: parser.atBoundary };
}

/**
 * The reference: 8-byte headers (version 1, type, request id, content
 * length, padding length, reserved), then content and padding; a record is
 * delivered once its content is complete (its padding may still be
 * missing); any other version fails the stream.
 */
function referenceRecords(bytes: Buffer): Run {
  const seen: Seen[] = [];
  let at = 0;
  while (at < bytes.length) {
    if (bytes.length - at < 8) return { seen, error: false, boundary: false };
    if (bytes[at] !== 1) return { seen, error: true, boundary: false };
    const contentLength = bytes.readUInt16BE(at + 4);
    const padding = bytes[at + 6] as number;
    const contentEnd = at + 8 + contentLength;
    if (contentEnd > bytes.length) return { seen, error: false, boundary: false };
    seen.push({ type: bytes[at + 1] as number, id: bytes.readUInt16BE(at + 2), content: bytes.toString('hex', at + 8, contentEnd) });
    if (contentEnd + padding > bytes.length) return { seen, error: false, boundary: false };
    at = contentEnd + padding;
  }
  return { seen, error: false, boundary: true };
}

const record = fc.record({ type: fc.integer({ min: 1, max: 11 }), id: fc.integer({ min: 0, max: 0xffff }), content: fc.uint8Array({ maxLength: 300 }), padding: fc.integer({ min: 0, max: 255 }) });

function encodePadded(r: { type: number; id: number; content: Uint8Array; padding: number }): Buffer {
  const encoded = encodeRecord(r.type, r.id, r.content);
  encoded[6] = r.padding;
  return Buffer.concat([encoded, Buffer.alloc(r.padding, 0xee)]);
}

describe('FastCGI records', () => {
  it('encoded records (with padding) decode to themselves under any chunking', (t) => {
    fuzz(
      t,
      fc.property(fc.array(record, { maxLength: 8 }), cuts, (records, points) => {
        const bytes = Buffer.concat(records.map(encodePadded));
        const expected = records.map((r) => ({ type: r.type, id: r.id, content: Buffer.from(r.content).toString('hex') }));
        assert.deepStrictEqual(parseChunks(chunked(bytes, points)), { seen: expected, error: false, boundary: true });
      }),
    );
  });

  it('a stream split by encodeStream comes back whole, in records of at most 65535 bytes', (t) => {
    const length = fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: FCGI_MAX_CONTENT - 2, max: FCGI_MAX_CONTENT + 2 }), fc.constantFrom(2 * FCGI_MAX_CONTENT, 2 * FCGI_MAX_CONTENT + 1));
    fuzz(
      t,
      fc.property(length, fc.integer({ min: 0, max: 0xffff }), fc.array(fc.nat(), { maxLength: 4 }), (n, id, points) => {
        const content = Buffer.alloc(n);
        for (let i = 0; i < n; i += 997) content[i] = i & 0xff;
        const parts: Buffer[] = [];
        const parser = new RecordParser((type, requestId, part) => {
          assert.deepStrictEqual([type, requestId], [6, id]);
          assert.ok(part.length > 0 && part.length <= FCGI_MAX_CONTENT);
          parts.push(Buffer.from(part));
        });
        for (const chunk of chunked(encodeStream(6, id, content), points)) parser.push(chunk);
        assert.ok(parser.atBoundary);
        assert.equal(parts.length, Math.ceil(n / FCGI_MAX_CONTENT));
        assert.ok(Buffer.concat(parts).equals(content));
      }),
    );
  });

  it('arbitrary bytes decode as the reference decoder says, under any chunking', (t) => {
    // Mostly version-1 headers so the content and padding paths get exercised.
    const bytesArb = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((raw) => Buffer.from(raw)),
      fc
        .array(fc.tuple(fc.integer({ min: 0, max: 12 }), fc.uint8Array({ minLength: 7, maxLength: 40 })), { maxLength: 6 })
        .map((parts) => Buffer.concat(parts.map(([type, rest]) => Buffer.concat([Buffer.from([1, type]), rest])))),
      fc.tuple(fc.array(record, { maxLength: 4 }), fc.nat(), fc.integer({ min: 0, max: 255 })).map(([records, at, byte]) => {
        const bytes = Buffer.concat(records.map(encodePadded));
        if (bytes.length > 0) bytes[at % bytes.length] = byte;
        return bytes;
      }),
    );
    fuzz(
      t,
      fc.property(bytesArb, cuts, (bytes, points) => {
        assert.deepStrictEqual(parseChunks(chunked(bytes, points)), referenceRecords(bytes));
      }),
    );
  });
});

// --- name-value pairs ----------------------------------------------------------

/** The reference: a length is one byte below 128, else four with the top bit cleared; a pair is two lengths, then the bytes. */
function referencePairs(bytes: Buffer): Array<[string, string]> | 'error' {
  const pairs = new Map<string, string>();
  let at = 0;
  const length = (): number | null => {
    if (at >= bytes.length) return null;
    if ((bytes[at] as number) >> 7 === 0) return bytes[at++] as number;
    if (at + 4 > bytes.length) return null;
    const n = (((bytes[at] as number) & 0x7f) << 24) + ((bytes[at + 1] as number) << 16) + ((bytes[at + 2] as number) << 8) + (bytes[at + 3] as number);
    at += 4;
    return n;
  };
  while (at < bytes.length) {
    const name = length();
    const value = length();
    if (name === null || value === null || at + name + value > bytes.length) return 'error';
    pairs.set(bytes.toString('utf8', at, at + name), bytes.toString('utf8', at + name, at + name + value));
    at += name + value;
  }
  return [...pairs];
}

describe('FastCGI name-value pairs', () => {
  it('round-trip any names and values, short and long lengths', (t) => {
    const pairs = fc.array(fc.tuple(text(1, 140), fc.oneof(text(0, 40), text(120, 300))), { maxLength: 8 });
    fuzz(
      t,
      fc.property(pairs, (list) => {
        assert.deepStrictEqual([...decodeNameValuePairs(encodeNameValuePairs(list))], [...new Map(list)]);
      }),
    );
  });

  it('arbitrary bytes decode as the reference decoder says, or fail only with FCGI_ERR_PROTOCOL', (t) => {
    const bytesArb = fc.oneof(
      fc.uint8Array({ maxLength: 100 }).map((raw) => Buffer.from(raw)),
      fc.tuple(fc.array(fc.tuple(text(1, 20), text(0, 140)), { maxLength: 4 }), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean()).map(([list, at, byte, cut]) => {
        const bytes = encodeNameValuePairs(list);
        if (bytes.length === 0) return bytes;
        if (cut) return bytes.subarray(0, at % bytes.length);
        bytes[at % bytes.length] = byte;
        return bytes;
      }),
    );
    fuzz(
      t,
      fc.property(bytesArb, (bytes) => {
        let actual: Array<[string, string]> | 'error';
        try {
          actual = [...decodeNameValuePairs(bytes)];
        } catch (err) {
          assert.ok(protocolError(err), String(err));
          actual = 'error';
        }
        assert.deepStrictEqual(actual, referencePairs(bytes));
      }),
    );
  });
});

// --- the CGI response head -------------------------------------------------------

function runCgi(chunks: readonly Buffer[]): string {
  const parser = new CgiHeadParser();
  try {
    let rest = '';
    let got: ReturnType<CgiHeadParser['push']>;
    for (const chunk of chunks) {
      if (got !== undefined) rest += chunk.toString('latin1');
      else got = parser.push(chunk);
    }
    return got === undefined ? 'pending' : JSON.stringify([got.head, got.rest.toString('latin1') + rest]);
  } catch (err) {
    assert.ok(protocolError(err), String(err));
    return 'error';
  }
}

describe('CGI response head', () => {
  it('a head written from fields reads back the same, with the body after it, however it is chunked', (t) => {
    const token = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}$/).filter((name) => !/^(status|location)$/i.test(name));
    const value = fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,20}[\x21-\x7e])?$/);
    const head = fc.record({
      status: fc.option(fc.integer({ min: 100, max: 999 })),
      statusText: fc.option(value),
      headers: fc.array(fc.tuple(token, fc.option(value, { nil: '' })), { maxLength: 5 }),
      location: fc.option(value),
      newline: fc.constantFrom('\r\n', '\n'),
      body: fc.uint8Array({ maxLength: 40 }),
    });
    fuzz(
      t,
      fc.property(head, cuts, (h, points) => {
        const lines = h.headers.map(([name, v]) => `${name}: ${v}`);
        if (h.location !== null) lines.push(`Location: ${h.location}`);
        if (h.status !== null) lines.unshift(`Status: ${h.status}${h.statusText === null ? '' : ` ${h.statusText}`}`);
        const output = Buffer.concat([Buffer.from(lines.map((line) => line + h.newline).join('') + h.newline, 'latin1'), h.body]);
        const expected = {
          status: h.status ?? (h.location !== null ? 302 : 200),
          statusText: h.status === null ? '' : (h.statusText ?? ''),
          headers: [...h.headers, ...(h.location === null ? [] : [['Location', h.location] as [string, string]])],
        };
        assert.equal(runCgi(chunked(output, points)), JSON.stringify([expected, Buffer.from(h.body).toString('latin1')]));
        const split = splitCgiOutput(output);
        assert.deepStrictEqual([split.head, split.body], [expected, Buffer.from(h.body)]);
      }),
    );
  });

  it('any output parses or fails only with FCGI_ERR_PROTOCOL, the same whole or in two chunks', (t) => {
    const line = fc.oneof(
      fc.constantFrom('Status: 200 OK', 'Status: 5', 'Status: 1000', 'status:404', 'A: b', 'Location: /', 'junk', '', ':x', 'X:', ' :y', '\r'),
      fc.stringMatching(/^[\x20-\x7e]{0,12}$/),
    );
    const output = fc.tuple(fc.array(line, { maxLength: 6 }), fc.constantFrom('\r\n', '\n'), fc.constantFrom('\r\n\r\nbody', '\n\nbody', '\n\r\nbody', '', '\r\n')).map(([lines, newline, end]) => Buffer.from(lines.join(newline) + end, 'latin1'));
    fuzz(
      t,
      fc.property(output, fc.nat(), (bytes, cut) => {
        const at = cut % (bytes.length + 1);
        assert.equal(runCgi([bytes.subarray(0, at), bytes.subarray(at)]), runCgi([bytes]));
      }),
    );
  });
});
