/**
 * HPACK (RFC 7541) for the proxy's own HTTP/2 framing: a decoder for request
 * header blocks and a stateless encoder for response header blocks.
 *
 * Decoder: §6 representations with §5.1 integers and §5.2 strings (raw or
 * Huffman), the static table (Appendix A) and the dynamic table (§2.3.2, §4:
 * entry size name + value + 32 octets, eviction of the oldest entries, an
 * entry larger than the table empties it), size updates (§6.3, only at the
 * start of a block, §4.2). Any malformed block is an HpackError, which the
 * connection answers with GOAWAY COMPRESSION_ERROR (RFC 9113 §4.3).
 *
 * Encoder: static-table matches only, no Huffman and no dynamic table
 * insertions, so it never needs a table size update and is valid whatever
 * SETTINGS_HEADER_TABLE_SIZE the peer announces.
 *
 * Strings are latin1 both ways: one char per octet.
 */
import { huffmanDecode } from './huffman.ts';

/** A header block the decoder cannot decode: a connection error of type COMPRESSION_ERROR (RFC 9113 §4.3). */
export class HpackError extends Error {
  override name = 'HpackError';
}

/** RFC 7541 Appendix A, index 1..61 as pairs. */
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

export const STATIC_TABLE_LENGTH = 61;

// Indexed 1..61 (slot 0 unused) so that a wire index reads them directly.
const STATIC_NAMES: readonly string[] = ['', ...STATIC_TABLE.map(([name]) => name)];
const STATIC_VALUES: readonly string[] = ['', ...STATIC_TABLE.map(([, value]) => value)];

/** Name → lowest static index with that name (entries of one name are adjacent). */
const STATIC_NAME_INDEX: ReadonlyMap<string, number> = (() => {
  const map = new Map<string, number>();
  for (let i = STATIC_TABLE_LENGTH; i >= 1; i--) map.set(STATIC_NAMES[i] as string, i);
  return map;
})();

/** A static entry by index (1..61), for tests and diagnostics. */
export function staticEntry(index: number): readonly [string, string] | undefined {
  return STATIC_TABLE[index - 1];
}

// Node's Buffer has these (they back toString/write for 'latin1') but
// @types/node does not declare them; they skip the encoding dispatch.
interface Latin1Buffer {
  latin1Slice(start: number, end: number): string;
  latin1Write(s: string, offset: number, length: number): number;
}

/** Largest integer the decoder accepts (§5.1 allows it to set a limit). */
const MAX_INT = 0x7fffffff;
/** Continuation octets after the prefix: 5 carry 35 bits, beyond MAX_INT already. */
const MAX_INT_CONTINUATION = 5;

/** The offset after the integer that readIntTail last read (a module variable, so that it returns one number). */
let intEnd = 0;

/**
 * The continuation octets of a §5.1 integer whose prefix was all ones
 * (`prefixMax`): block[pos, end). Returns the value and leaves the offset
 * after it in intEnd. The one-octet case is handled inline by the caller.
 */
/** Where the last readString ended. */
let stringEnd = 0;

/** A §5.2 string literal at block[pos, end): H bit, 7-bit prefix length, octets (Huffman-coded when H). Leaves the offset after it in stringEnd. */
function readString(block: Buffer, pos: number, end: number): string {
  if (pos >= end) throw new HpackError('HPACK: truncated field');
  const octet = block[pos++] as number;
  let length = octet & 0x7f;
  if (length === 0x7f) {
    length = readIntTail(block, pos, end, 0x7f);
    pos = intEnd;
  }
  if (length > end - pos) throw new HpackError('HPACK: string past the block end');
  stringEnd = pos + length;
  if ((octet & 0x80) === 0) return (block as unknown as Latin1Buffer).latin1Slice(pos, pos + length);
  const decoded = huffmanDecode(block, pos, pos + length);
  if (decoded === null) throw new HpackError('HPACK: bad Huffman string');
  return decoded;
}

function readIntTail(block: Buffer, pos: number, end: number, prefixMax: number): number {
  let value = prefixMax;
  let scale = 1;
  for (let count = 0; count < MAX_INT_CONTINUATION; count++) {
    if (pos >= end) throw new HpackError('HPACK: truncated integer');
    const octet = block[pos++] as number;
    value += (octet & 0x7f) * scale;
    if (value > MAX_INT) throw new HpackError('HPACK: integer overflow');
    if ((octet & 0x80) === 0) {
      intEnd = pos;
      return value;
    }
    scale *= 128;
  }
  throw new HpackError('HPACK: integer overflow');
}

/**
 * Decodes the header blocks of one connection (one direction): the dynamic
 * table lives across blocks, so every block must be decoded, in order.
 */
export class HpackDecoder {
  /** SETTINGS_HEADER_TABLE_SIZE as announced: the most a size update may ask for. */
  readonly maxTableSize: number;
  /** The table's current maximum size (the last size update, else maxTableSize). */
  #capacity: number;
  #size = 0;
  // The dynamic table as a ring: #head is the slot of the newest entry
  // (dynamic index 1), older entries at lower slots, #count entries in all.
  readonly #names: string[];
  readonly #values: string[];
  readonly #mask: number;
  #head = 0;
  #count = 0;

  constructor(maxTableSize: number) {
    if (!Number.isSafeInteger(maxTableSize) || maxTableSize < 0 || maxTableSize > MAX_INT) throw new RangeError(`bad HPACK table size ${maxTableSize}`);
    this.maxTableSize = maxTableSize;
    this.#capacity = maxTableSize;
    // Each entry takes at least 32 octets, so the table never holds more
    // than maxTableSize / 32 entries; a power of two lets slots wrap by mask.
    let slots = 1;
    while (slots <= maxTableSize / 32) slots *= 2;
    this.#names = new Array<string>(slots).fill('');
    this.#values = new Array<string>(slots).fill('');
    this.#mask = slots - 1;
  }

  /** The dynamic table's current size in octets (§4.1). */
  get tableSize(): number {
    return this.#size;
  }

  /** The dynamic table's current maximum size (§4.2). */
  get tableCapacity(): number {
    return this.#capacity;
  }

  /** Entries in the dynamic table. */
  get tableLength(): number {
    return this.#count;
  }

  /** Dynamic entry `index` (1 = newest), for tests. */
  tableEntry(index: number): readonly [string, string] | undefined {
    if (index < 1 || index > this.#count) return undefined;
    const slot = (this.#head - index + 1) & this.#mask;
    return [this.#names[slot] as string, this.#values[slot] as string];
  }

  /**
   * Decodes the complete header block block[start, end) and pushes its
   * fields onto `out` as name, value, name, value... Returns the header list
   * size (RFC 9113 §6.5.2: octets of name and value plus 32, per field).
   * Once that size passes maxListSize no more fields are pushed, but the
   * block is still decoded to its end so that the table stays in step with
   * the peer's encoder. Throws HpackError if the block is malformed.
   */
  decode(block: Buffer, start: number, end: number, out: string[], maxListSize: number): number {
    if (start < 0 || end > block.length || start > end) throw new RangeError('HPACK: block bounds out of range');
    const staticNames = STATIC_NAMES;
    const staticValues = STATIC_VALUES;
    let listSize = 0;
    let fields = 0;
    let pos = start;
    while (pos < end) {
      const first = block[pos++] as number;
      let name: string;
      let value: string;

      if ((first & 0x80) !== 0) {
        // §6.1 indexed header field, 7-bit prefix.
        let index = first & 0x7f;
        if (index === 0x7f) {
          index = readIntTail(block, pos, end, 0x7f);
          pos = intEnd;
        } else if (index === 0) {
          throw new HpackError('HPACK: index 0');
        }
        if (index <= STATIC_TABLE_LENGTH) {
          name = staticNames[index] as string;
          value = staticValues[index] as string;
        } else {
          const dyn = index - STATIC_TABLE_LENGTH;
          if (dyn > this.#count) throw new HpackError(`HPACK: index ${index} past the table`);
          const slot = (this.#head - dyn + 1) & this.#mask;
          name = this.#names[slot] as string;
          value = this.#values[slot] as string;
        }
      } else if ((first & 0xe0) === 0x20) {
        // §6.3 dynamic table size update, 5-bit prefix; only before the first field (§4.2).
        if (fields !== 0) throw new HpackError('HPACK: table size update after a field');
        let size = first & 0x1f;
        if (size === 0x1f) {
          size = readIntTail(block, pos, end, 0x1f);
          pos = intEnd;
        }
        if (size > this.maxTableSize) throw new HpackError(`HPACK: table size update to ${size} above the ${this.maxTableSize} allowed`);
        this.#capacity = size;
        this.#evictTo(size);
        continue;
      } else {
        // §6.2 literals: with incremental indexing (01, 6-bit prefix), without
        // indexing (0000) or never indexed (0001), 4-bit prefix. Index 0
        // means a literal name follows.
        const indexing = (first & 0x40) !== 0;
        const prefixMax = indexing ? 0x3f : 0x0f;
        let index = first & prefixMax;
        if (index === prefixMax) {
          index = readIntTail(block, pos, end, prefixMax);
          pos = intEnd;
        }
        if (index === 0) {
          name = readString(block, pos, end);
          pos = stringEnd;
        } else if (index <= STATIC_TABLE_LENGTH) {
          name = staticNames[index] as string;
        } else {
          const dyn = index - STATIC_TABLE_LENGTH;
          if (dyn > this.#count) throw new HpackError(`HPACK: index ${index} past the table`);
          name = this.#names[(this.#head - dyn + 1) & this.#mask] as string;
        }
        value = readString(block, pos, end);
        pos = stringEnd;
        if (indexing) this.#insert(name, value);
      }

      fields++;
      listSize += name.length + value.length + 32;
      // Past the limit the fields are only counted: the caller refuses the
      // stream, and a block of small references to a large entry must not
      // expand into a huge list.
      if (listSize <= maxListSize) out.push(name, value);
    }
    return listSize;
  }

  /** §4.4: evicts until the new entry fits, then adds it; one larger than the table empties it. */
  #insert(name: string, value: string): void {
    const entrySize = name.length + value.length + 32;
    if (entrySize > this.#capacity) {
      this.#evictTo(0);
      return;
    }
    this.#evictTo(this.#capacity - entrySize);
    const slot = (this.#head + 1) & this.#mask;
    this.#head = slot;
    this.#names[slot] = name;
    this.#values[slot] = value;
    this.#count++;
    this.#size += entrySize;
  }

  /** Evicts the oldest entries until the table takes at most `size` octets. */
  #evictTo(size: number): void {
    while (this.#size > size) {
      const slot = (this.#head - this.#count + 1) & this.#mask;
      const name = this.#names[slot] as string;
      const value = this.#values[slot] as string;
      this.#size -= name.length + value.length + 32;
      // Drop the references so the strings can be collected.
      this.#names[slot] = '';
      this.#values[slot] = '';
      this.#count--;
    }
  }
}

/** Octets of the §5.1 integer `value` with an `prefixBits`-bit prefix. */
function intLength(value: number, prefixBits: number): number {
  const prefixMax = (1 << prefixBits) - 1;
  if (value < prefixMax) return 1;
  let length = 2;
  for (let rest = value - prefixMax; rest >= 128; rest = Math.floor(rest / 128)) length++;
  return length;
}

/**
 * An upper bound of the octets encode() writes for `fields`: per field one
 * representation octet, two string lengths of at most 5 octets each (lengths
 * below 2^28), and the name and value octets.
 */
export function maxEncodedLength(fields: readonly string[]): number {
  let total = 0;
  for (let i = 0; i + 1 < fields.length; i += 2) total += (fields[i] as string).length + (fields[i + 1] as string).length + 11;
  return total;
}

/** Writes the §5.1 integer `value` whose prefix octet already holds `pattern`; returns the offset after it. */
function writeInt(target: Buffer, offset: number, pattern: number, prefixBits: number, value: number): number {
  const prefixMax = (1 << prefixBits) - 1;
  if (value < prefixMax) {
    target[offset++] = pattern | value;
    return offset;
  }
  target[offset++] = pattern | prefixMax;
  let rest = value - prefixMax;
  while (rest >= 128) {
    target[offset++] = (rest % 128) | 0x80;
    rest = Math.floor(rest / 128);
  }
  target[offset++] = rest;
  return offset;
}

/** Writes a raw (non-Huffman) §5.2 string: 7-bit prefix length, latin1 octets. */
function writeString(target: Buffer, offset: number, s: string): number {
  const length = s.length;
  if (length < 0x7f) target[offset++] = length;
  else offset = writeInt(target, offset, 0, 7, length);
  (target as unknown as Latin1Buffer).latin1Write(s, offset, length);
  return offset + length;
}

/**
 * Encodes response header blocks. Stateless: exact static-table matches
 * become §6.1 indexed fields (`:status: 200` is 0x88), static names become
 * §6.2.2 literals without indexing with an indexed name, and other fields
 * literals without indexing with a literal name. Never inserts into the
 * peer's dynamic table, so it never sends a §6.3 size update.
 */
export class HpackEncoder {
  /**
   * Writes `fields` (name, value, ...; names lowercase, strings latin1) at
   * target[offset] and returns the offset after them. The caller makes
   * room: maxEncodedLength(fields) octets.
   */
  encode(fields: readonly string[], target: Buffer, offset: number): number {
    const staticNames = STATIC_NAMES;
    const staticValues = STATIC_VALUES;
    const nameIndex = STATIC_NAME_INDEX;
    let pos = offset;
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const name = fields[i] as string;
      const value = fields[i + 1] as string;
      const index = nameIndex.get(name);
      if (index === undefined) {
        target[pos++] = 0x00;
        pos = writeString(target, pos, name);
        pos = writeString(target, pos, value);
        continue;
      }
      // Entries of one name are adjacent (:status 200..500 are 8..14).
      let exact = 0;
      for (let j = index; j <= STATIC_TABLE_LENGTH && staticNames[j] === name; j++) {
        if (staticValues[j] === value) {
          exact = j;
          break;
        }
      }
      if (exact !== 0) {
        target[pos++] = 0x80 | exact;
        continue;
      }
      if (index < 0x0f) target[pos++] = index;
      else pos = writeInt(target, pos, 0x00, 4, index);
      pos = writeString(target, pos, value);
    }
    return pos;
  }
}

/** Octets encode() writes for `fields` exactly (for tests and for sizing frames precisely). */
export function encodedLength(fields: readonly string[]): number {
  let total = 0;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i] as string;
    const value = fields[i + 1] as string;
    const index = STATIC_NAME_INDEX.get(name);
    if (index === undefined) {
      total += 1 + intLength(name.length, 7) + name.length + intLength(value.length, 7) + value.length;
      continue;
    }
    let exact = false;
    for (let j = index; j <= STATIC_TABLE_LENGTH && STATIC_NAMES[j] === name; j++) if (STATIC_VALUES[j] === value) exact = true;
    total += exact ? 1 : intLength(index, 4) + intLength(value.length, 7) + value.length;
  }
  return total;
}
