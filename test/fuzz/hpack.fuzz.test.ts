/**
 * The HPACK codec (RFC 7541) against plain reference models: any bytes make
 * HpackDecoder return or throw HpackError, agreeing with a naive decoder (an
 * array for the dynamic table, a bit-by-bit Huffman decoder) on the fields,
 * the error and the table left behind, block after block; what it pushes
 * never passes maxListSize; HpackEncoder's output decodes back to its input;
 * huffmanDecode agrees with the bit-by-bit decoder and the encoder.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { HpackDecoder, HpackEncoder, HpackError, encodedLength, maxEncodedLength, staticEntry } from '../../src/protocols/http/h2/wire/hpack.ts';
import { EOS, HUFFMAN_CODES, HUFFMAN_LENGTHS, huffmanDecode, huffmanEncode, huffmanEncodedLength } from '../../src/protocols/http/h2/wire/huffman.ts';
import { fuzz } from '../helpers/fuzz.ts';

// --- Reference models: slow and plain ---

const CODE_BY_BITS = new Map<string, number>();
for (let sym = 0; sym <= EOS; sym++) CODE_BY_BITS.set((HUFFMAN_CODES[sym] as number).toString(2).padStart(HUFFMAN_LENGTHS[sym] as number, '0'), sym);

/** §5.2 read literally: symbols bit by bit; what is left must be at most 7 ones; EOS is an error. */
function refHuffman(bytes: Uint8Array): string | null {
  let text = '';
  let pending = '';
  for (const byte of bytes) {
    for (let i = 7; i >= 0; i--) {
      pending += (byte >> i) & 1;
      const sym = CODE_BY_BITS.get(pending);
      if (sym === undefined) continue;
      if (sym === EOS) return null;
      text += String.fromCharCode(sym);
      pending = '';
    }
  }
  return pending.length <= 7 && !pending.includes('0') ? text : null;
}

class RefError extends Error {}

class RefDecoder {
  entries: [string, string][] = []; // newest first
  capacity: number;
  readonly max: number;
  constructor(max: number) {
    this.max = max;
    this.capacity = max;
  }
  size(): number {
    return this.entries.reduce((sum, [n, v]) => sum + n.length + v.length + 32, 0);
  }
  evict(): void {
    while (this.size() > this.capacity) this.entries.pop();
  }
  decode(block: Uint8Array): string[] {
    const out: string[] = [];
    let pos = 0;
    const int = (prefixBits: number): number => {
      const max = 2 ** prefixBits - 1;
      let value = (block[pos++] as number) & max;
      if (value < max) return value;
      for (let shift = 0; ; shift += 7) {
        if (pos >= block.length) throw new RefError('truncated');
        if (shift > 28) throw new RefError('too long'); // at most 5 continuation octets
        const octet = block[pos++] as number;
        value += (octet & 0x7f) * 2 ** shift;
        if (value > 0x7fffffff) throw new RefError('overflow');
        if (octet < 0x80) return value;
      }
    };
    const string = (): string => {
      if (pos >= block.length) throw new RefError('truncated');
      const huffman = ((block[pos] as number) & 0x80) !== 0;
      const length = int(7);
      if (pos + length > block.length) throw new RefError('past end');
      const bytes = block.subarray(pos, pos + length);
      pos += length;
      const text = huffman ? refHuffman(bytes) : String.fromCharCode(...bytes);
      if (text === null) throw new RefError('huffman');
      return text;
    };
    const entry = (index: number): [string, string] => {
      if (index === 0) throw new RefError('index 0');
      const found = index <= 61 ? staticEntry(index) : this.entries[index - 62];
      if (found === undefined) throw new RefError('range');
      return [found[0], found[1]];
    };
    let fields = 0;
    while (pos < block.length) {
      const first = block[pos] as number;
      if (first >= 0x80) {
        out.push(...entry(int(7)));
      } else if (first >= 0x40 || first < 0x20) {
        const indexing = first >= 0x40;
        const index = int(indexing ? 6 : 4);
        const name = index === 0 ? string() : entry(index)[0];
        const value = string();
        out.push(name, value);
        if (indexing) {
          this.entries.unshift([name, value]);
          this.evict();
        }
      } else {
        if (fields > 0) throw new RefError('late size update');
        const size = int(5);
        if (size > this.max) throw new RefError('too big');
        this.capacity = size;
        this.evict();
        continue;
      }
      fields++;
    }
    return out;
  }
}

// --- Generators ---

function intBytes(pattern: number, prefixBits: number, value: number): number[] {
  const max = 2 ** prefixBits - 1;
  if (value < max) return [pattern | value];
  const bytes = [pattern | max];
  let rest = value - max;
  while (rest >= 128) {
    bytes.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return bytes;
}

const latin1 = (maxLength: number): fc.Arbitrary<string> =>
  fc.array(fc.oneof({ arbitrary: fc.integer({ min: 0x61, max: 0x7a }), weight: 4 }, fc.integer({ min: 0, max: 255 })), { maxLength }).map((codes) => String.fromCharCode(...codes));

/** A §5.2 string: raw or Huffman, now and then with a flipped bit or a cut. */
const stringBytes = fc.tuple(latin1(40), fc.boolean(), fc.nat({ max: 60 }), fc.nat()).map(([text, huffman, damage, where]) => {
  let body: number[];
  if (huffman) {
    const buf = Buffer.alloc(huffmanEncodedLength(text));
    huffmanEncode(text, buf, 0);
    body = [...buf];
  } else {
    body = [...Buffer.from(text, 'latin1')];
  }
  if (damage === 0 && body.length > 0) body[where % body.length] = (body[where % body.length] as number) ^ (1 << (where % 8));
  const bytes = [...intBytes(huffman ? 0x80 : 0, 7, body.length), ...body];
  return damage === 1 ? bytes.slice(0, where % (bytes.length + 1)) : bytes;
});

/** Indices: mostly valid (static, or the newest few dynamic entries), sometimes 0, past the table or huge. */
const index = fc.oneof(
  { arbitrary: fc.integer({ min: 1, max: 61 }), weight: 40 },
  { arbitrary: fc.integer({ min: 62, max: 64 }), weight: 12 },
  { arbitrary: fc.integer({ min: 0, max: 200 }), weight: 1 },
  { arbitrary: fc.constantFrom(0, 0x7fffffff, 0x80000000), weight: 1 },
);

/** A size update, mostly within the decoder's `max`, sometimes just past it. */
const sizeUpdate = (max: number): fc.Arbitrary<number[]> =>
  fc.oneof({ arbitrary: fc.integer({ min: 0, max }), weight: 4 }, fc.constantFrom(0, 32, max, max + 1, 4097)).map((size) => intBytes(0x20, 5, size));

const representation = (max: number): fc.Arbitrary<number[]> =>
  fc.oneof(
    { arbitrary: index.map((i) => intBytes(0x80, 7, i)), weight: 24 },
    {
      arbitrary: fc.tuple(fc.constantFrom([0x40, 6], [0x40, 6], [0x00, 4], [0x10, 4]), fc.boolean(), index, stringBytes, stringBytes).map(([[pattern, bits], literalName, i, name, value]) => [
        ...intBytes(pattern as number, bits as number, literalName ? 0 : i),
        ...(literalName ? name : []),
        ...value,
      ]),
      weight: 36,
    },
    { arbitrary: sizeUpdate(max), weight: 1 }, // not at the start: an error
    { arbitrary: fc.uint8Array({ maxLength: 6 }).map((bytes) => [...bytes]), weight: 1 },
  );

/** A block: size updates (the start is where they belong), then representations; or any bytes. */
const block = (max: number): fc.Arbitrary<Buffer> =>
  fc.oneof(
    {
      arbitrary: fc.tuple(fc.array(sizeUpdate(max), { maxLength: 2 }), fc.array(representation(max), { maxLength: 10 })).map(([updates, reps]) => Buffer.from([...updates, ...reps].flat())),
      weight: 8,
    },
    fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
  );

function listSize(flat: readonly string[]): number {
  let size = 0;
  for (let i = 0; i < flat.length; i += 2) size += (flat[i] as string).length + (flat[i + 1] as string).length + 32;
  return size;
}

describe('fuzz: HPACK', () => {
  it('HpackDecoder agrees with the reference decoder, block after block, or throws HpackError where it throws', (t) => {
    fuzz(
      t,
      fc.property(fc.constantFrom(0, 64, 256, 4096).chain((size) => fc.tuple(fc.constant(size), fc.array(block(size), { minLength: 1, maxLength: 5 }))), ([tableSize, blocks]) => {
        const decoder = new HpackDecoder(tableSize);
        const ref = new RefDecoder(tableSize);
        for (const bytes of blocks) {
          let expected: string[] | RefError;
          try {
            expected = ref.decode(bytes);
          } catch (err) {
            if (!(err instanceof RefError)) throw err;
            expected = err;
          }
          const out: string[] = [];
          let size: number | HpackError;
          try {
            size = decoder.decode(bytes, 0, bytes.length, out, 1 << 30);
          } catch (err) {
            if (!(err instanceof HpackError)) throw err;
            size = err;
          }
          if (expected instanceof RefError) {
            assert.ok(size instanceof HpackError, `reference: ${expected.message}; decoder returned`);
            return; // the connection is gone after a COMPRESSION_ERROR
          }
          assert.ok(!(size instanceof HpackError), `decoder: ${size instanceof HpackError ? size.message : ''}; reference decoded`);
          assert.deepEqual(out, expected);
          assert.equal(size, listSize(expected));
          assert.equal(decoder.tableSize, ref.size());
          assert.equal(decoder.tableCapacity, ref.capacity);
          assert.deepEqual(
            Array.from({ length: decoder.tableLength }, (_, i) => decoder.tableEntry(i + 1)),
            ref.entries,
          );
        }
      }),
    );
  });

  it('HpackDecoder never pushes more than maxListSize, and counts what it drops', (t) => {
    fuzz(
      t,
      fc.property(fc.array(block(4096), { minLength: 1, maxLength: 4 }), fc.nat({ max: 600 }), (blocks, maxListSize) => {
        const decoder = new HpackDecoder(4096);
        const full = new HpackDecoder(4096);
        for (const bytes of blocks) {
          const out: string[] = [];
          const all: string[] = [];
          let size: number;
          try {
            size = decoder.decode(bytes, 0, bytes.length, out, maxListSize);
          } catch (err) {
            assert.ok(err instanceof HpackError);
            assert.throws(() => full.decode(bytes, 0, bytes.length, all, 1 << 30), HpackError);
            return;
          }
          assert.equal(full.decode(bytes, 0, bytes.length, all, 1 << 30), size);
          assert.ok(listSize(out) <= maxListSize);
          // What it pushed is the start of the whole list, all of it within the limit.
          assert.deepEqual(out, all.slice(0, out.length));
          if (size <= maxListSize) assert.equal(out.length, all.length);
          assert.equal(decoder.tableSize, full.tableSize);
        }
      }),
    );
  });

  it('HpackEncoder output decodes back to its input, within the announced lengths', (t) => {
    const token = fc.stringMatching(/^[a-z0-9!#$%&'*+.^_`|~-]{1,20}$/);
    const staticName = fc.integer({ min: 1, max: 61 }).map((i) => (staticEntry(i) as readonly [string, string])[0]);
    const value = fc.oneof(latin1(30), fc.integer({ min: 1, max: 61 }).map((i) => (staticEntry(i) as readonly [string, string])[1]), fc.constantFrom('200', '204', '206', '304', '400', '404', '500', '302'));
    const field = fc.tuple(fc.oneof(token, staticName, fc.constant(':status')), value);
    fuzz(
      t,
      fc.property(fc.array(field, { maxLength: 12 }), fc.nat({ max: 3 }), fc.integer({ min: 0, max: 4096 }), (fieldPairs, offset, tableSize) => {
        const flat = fieldPairs.flat();
        const buf = Buffer.alloc(offset + maxEncodedLength(flat));
        const end = new HpackEncoder().encode(flat, buf, offset);
        assert.equal(end - offset, encodedLength(flat));
        assert.ok(end <= buf.length);
        const decoder = new HpackDecoder(tableSize);
        const out: string[] = [];
        assert.equal(decoder.decode(buf, offset, end, out, 1 << 30), listSize(flat));
        assert.deepEqual(out, flat);
        assert.equal(decoder.tableLength, 0);
      }),
    );
  });

  it('huffmanDecode agrees with the bit-by-bit decoder, never throws, and inverts huffmanEncode', (t) => {
    fuzz(
      t,
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 24 }), latin1(40).map((s) => {
        const buf = Buffer.alloc(huffmanEncodedLength(s));
        huffmanEncode(s, buf, 0);
        return new Uint8Array(buf);
      })), fc.nat({ max: 3 }), (bytes, offset) => {
        const buf = Buffer.concat([Buffer.alloc(offset, 0xaa), bytes, Buffer.alloc(2, 0x55)]);
        const text = huffmanDecode(buf, offset, offset + bytes.length);
        assert.equal(text, refHuffman(bytes));
        if (text !== null) {
          // A valid encoding is the unique one: minimal all-ones padding.
          const again = Buffer.alloc(huffmanEncodedLength(text));
          huffmanEncode(text, again, 0);
          assert.deepEqual(new Uint8Array(again), new Uint8Array(bytes));
        }
      }),
    );
  });
});
