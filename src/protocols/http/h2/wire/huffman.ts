/**
 * The HPACK Huffman code (RFC 7541 §5.2, table in Appendix B): the code as
 * data, a table-driven decoder and a small encoder.
 *
 * The decoder is a finite state machine over 4-bit nibbles, built once at
 * module load from the code table: its states are the 256 internal nodes of
 * the code tree (257 leaves) plus a dead state, and each (state, nibble)
 * entry gives the next state, the symbol completed on the way (at most one:
 * the shortest code is 5 bits) and whether the string may end there. A
 * string may end at the root (a symbol boundary) or on the all-ones path at
 * depth 1..7: §5.2 allows only padding of at most 7 bits taken from the most
 * significant bits of EOS. EOS itself inside a string is an error: completing
 * it leads to the dead state, which is never left and never accepting.
 */

/** Code of each symbol 0..255 and EOS (256), right-aligned (Appendix B, "code as hex"). */
export const HUFFMAN_CODES: readonly number[] = [
  0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7,
  0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec,
  0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3,
  0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb,
  0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa, // ' ' .. "'"
  0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18, // '(' .. '/'
  0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, // '0' .. '7'
  0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc, // '8' .. '?'
  0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, // '@' .. 'G'
  0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, // 'H' .. 'O'
  0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, // 'P' .. 'W'
  0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22, // 'X' .. '_'
  0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26, // '`' .. 'g'
  0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7, // 'h' .. 'o'
  0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78, // 'p' .. 'w'
  0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc, // 'x' .. 127
  0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9,
  0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf,
  0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3,
  0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef,
  0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde,
  0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec,
  0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef,
  0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1,
  0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec,
  0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed,
  0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2,
  0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5,
  0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3,
  0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4,
  0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea,
  0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee,
  0x3fffffff, // EOS
];

/** Bit length of each code, same order (Appendix B, "len in bits"). */
export const HUFFMAN_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // ' ' .. '/'
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // '0' .. '?'
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // '@' .. 'O'
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 'P' .. '_'
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // '`' .. 'o'
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 'p' .. 127
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30, // EOS
];

export const EOS = 256;

// Decoder table entry layout (Uint32): bits 0-8 the next state, bit 9 "a
// symbol was completed", bit 10 "the string may end here", bits 16-23 the
// symbol. States 0-255 are the internal nodes of the code tree (0 the root);
// state 256 is a dead state entered on EOS, which is never left and never
// accepting, so the loop needs no failure test.
const EMIT_SHIFT = 9;
const ACCEPT = 1 << 10;
const SYMBOL_SHIFT = 16;
const DEAD = 256;

/** (state << 4 | nibble) → entry; built by buildDecodeTable below. */
const DECODE = buildDecodeTable();

function buildDecodeTable(): Uint32Array {
  if (HUFFMAN_CODES.length !== 257 || HUFFMAN_LENGTHS.length !== 257) throw new Error('HPACK Huffman table: 257 symbols expected');
  // The code tree: child[node * 2 + bit] is an internal node (>= 0), a leaf
  // (-1 - symbol), or unset (null). Node 0 is the root.
  const child: (number | null)[] = [null, null];
  let nodes = 1;
  for (let sym = 0; sym <= EOS; sym++) {
    const code = HUFFMAN_CODES[sym] as number;
    const len = HUFFMAN_LENGTHS[sym] as number;
    if (len < 5 || len > 30 || code >= 2 ** len) throw new Error(`HPACK Huffman table: bad code for symbol ${sym}`);
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const slot = node * 2 + ((code >>> i) & 1);
      const next = child[slot];
      if (i === 0) {
        if (next !== null) throw new Error(`HPACK Huffman table: code of symbol ${sym} is not prefix-free`);
        child[slot] = -1 - sym;
      } else if (next === null || next === undefined) {
        child[slot] = nodes;
        child.push(null, null);
        node = nodes++;
      } else if (next < 0) {
        throw new Error(`HPACK Huffman table: code of symbol ${sym} is not prefix-free`);
      } else {
        node = next;
      }
    }
  }
  // A complete prefix code over 257 leaves has exactly 256 internal nodes
  // and no empty branch (the Kraft sum is 1), so every bit string walks
  // somewhere.
  if (nodes !== DEAD || child.includes(null)) throw new Error('HPACK Huffman table: the code is not complete');

  // Nodes on the all-ones path at depth 1..7 (plus the root): where padding may stop.
  const accepting = new Uint8Array(nodes);
  accepting[0] = 1;
  for (let node = 0, depth = 1; depth <= 7; depth++) {
    node = child[node * 2 + 1] as number;
    accepting[node] = 1;
  }

  const table = new Uint32Array((nodes + 1) * 16);
  for (let state = 0; state < nodes; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let entry = 0;
      for (let i = 3; i >= 0; i--) {
        const next = child[node * 2 + ((nibble >>> i) & 1)] as number;
        if (next >= 0) {
          node = next;
          continue;
        }
        const sym = -1 - next;
        if (sym === EOS) {
          node = DEAD;
          entry = 0;
          break;
        }
        entry = (1 << EMIT_SHIFT) | (sym << SYMBOL_SHIFT);
        node = 0;
      }
      table[state * 16 + nibble] = node === DEAD ? DEAD : entry | node | (accepting[node] === 1 ? ACCEPT : 0);
    }
  }
  for (let nibble = 0; nibble < 16; nibble++) table[DEAD * 16 + nibble] = DEAD;
  return table;
}

interface Latin1Buffer {
  latin1Slice(start: number, end: number): string;
}

/** Where decoded bytes are gathered; grown (never shrunk) for longer strings. */
let scratch = Buffer.allocUnsafe(4096);

/**
 * Decodes the Huffman-coded string src[start, end) to a latin1 string, or
 * null if it is not a valid encoding (§5.2: padding longer than 7 bits,
 * padding that is not a prefix of EOS, or EOS inside the string).
 */
export function huffmanDecode(src: Buffer, start: number, end: number): string | null {
  // Every symbol takes at least 5 bits; one more octet because the loop
  // writes a symbol slot whether or not a symbol was completed.
  const most = Math.floor(((end - start) * 8) / 5) + 1;
  if (most > scratch.length) scratch = Buffer.allocUnsafe(Math.max(most, scratch.length * 2));
  const out = scratch;
  const table = DECODE;
  let n = 0;
  let entry = ACCEPT; // the empty string is a valid encoding
  for (let i = start; i < end; i++) {
    const byte = src[i] as number;
    // Branch-free: store the symbol slot, advance only if one was completed.
    entry = table[((entry & 0x1ff) << 4) | (byte >>> 4)] as number;
    out[n] = entry >>> SYMBOL_SHIFT;
    n += (entry >>> EMIT_SHIFT) & 1;
    entry = table[((entry & 0x1ff) << 4) | (byte & 0x0f)] as number;
    out[n] = entry >>> SYMBOL_SHIFT;
    n += (entry >>> EMIT_SHIFT) & 1;
  }
  if ((entry & ACCEPT) === 0) return null;
  return (out as unknown as Latin1Buffer).latin1Slice(0, n);
}

/** Octets the Huffman encoding of `s` takes (latin1: each char's low byte is the symbol). */
export function huffmanEncodedLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += HUFFMAN_LENGTHS[s.charCodeAt(i) & 0xff] as number;
  return Math.ceil(bits / 8);
}

/**
 * Writes the Huffman encoding of `s` (latin1) at target[offset] and returns
 * the offset after it; target must have huffmanEncodedLength(s) bytes free.
 * Pads with the most significant bits of EOS (all ones).
 */
export function huffmanEncode(s: string, target: Buffer, offset: number): number {
  // acc holds `bits` pending bits (< 8 between symbols, < 38 while adding one),
  // so it is kept as an exact double rather than a 32-bit integer.
  let acc = 0;
  let bits = 0;
  let pos = offset;
  for (let i = 0; i < s.length; i++) {
    const sym = s.charCodeAt(i) & 0xff;
    const len = HUFFMAN_LENGTHS[sym] as number;
    acc = acc * 2 ** len + (HUFFMAN_CODES[sym] as number);
    bits += len;
    while (bits >= 8) {
      bits -= 8;
      const high = Math.floor(acc / 2 ** bits);
      target[pos++] = high;
      acc -= high * 2 ** bits;
    }
  }
  if (bits > 0) target[pos++] = (acc << (8 - bits)) | (0xff >>> bits);
  return pos;
}
