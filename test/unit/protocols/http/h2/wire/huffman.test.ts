/**
 * The HPACK Huffman code (RFC 7541 Appendix B) and its decoder (§5.2): the
 * table is a complete canonical prefix code, the decoder agrees with the
 * RFC's examples and with the encoder, and rejects what §5.2 rejects.
 * (The differential against nghttp2 is in hpack.test.ts.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EOS, HUFFMAN_CODES, HUFFMAN_LENGTHS, huffmanDecode, huffmanEncode, huffmanEncodedLength } from '../../../../../../src/protocols/http/h2/wire/huffman.ts';

function decodeHex(hex: string): string | null {
  const buf = Buffer.from(hex.replace(/\s+/g, ''), 'hex');
  return huffmanDecode(buf, 0, buf.length);
}

function encodeHex(s: string): string {
  const buf = Buffer.alloc(huffmanEncodedLength(s));
  assert.equal(huffmanEncode(s, buf, 0), buf.length);
  return buf.toString('hex');
}

/** Bits of `sym`'s code as a '0'/'1' string. */
function bits(sym: number): string {
  return (HUFFMAN_CODES[sym] as number).toString(2).padStart(HUFFMAN_LENGTHS[sym] as number, '0');
}

/** Packs a bit string into octets, padding the last one with `pad` bits. */
function pack(bitString: string, pad = '1'): Buffer {
  const padded = bitString + pad.repeat((8 - (bitString.length % 8)) % 8);
  const out = Buffer.alloc(padded.length / 8);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(padded.slice(i * 8, i * 8 + 8), 2);
  return out;
}

describe('HPACK Huffman table', () => {
  it('has 257 codes of 5..30 bits whose Kraft sum is exactly 1', () => {
    assert.equal(HUFFMAN_CODES.length, 257);
    assert.equal(HUFFMAN_LENGTHS.length, 257);
    let kraft = 0;
    for (let sym = 0; sym <= EOS; sym++) {
      const len = HUFFMAN_LENGTHS[sym] as number;
      assert.ok(len >= 5 && len <= 30, `symbol ${sym}: length ${len}`);
      assert.ok((HUFFMAN_CODES[sym] as number) < 2 ** len, `symbol ${sym}: code wider than its length`);
      kraft += 2 ** -len;
    }
    assert.equal(kraft, 1);
  });

  it('is the canonical code of its lengths (so codes and lengths were written down consistently)', () => {
    // Canonical: ordered by (length, symbol), each code is the previous plus
    // one, shifted left to the new length. A typo in either column breaks it.
    const order = [...Array(257).keys()].sort((a, b) => (HUFFMAN_LENGTHS[a] as number) - (HUFFMAN_LENGTHS[b] as number) || a - b);
    let code = 0;
    let len = 5;
    for (const sym of order) {
      const l = HUFFMAN_LENGTHS[sym] as number;
      code *= 2 ** (l - len);
      len = l;
      assert.equal(HUFFMAN_CODES[sym], code, `symbol ${sym}`);
      code++;
    }
    assert.equal(code, 2 ** 30);
  });

  it('matches spot checks from Appendix B', () => {
    assert.equal(bits(47), '011000'); // '/' — the RFC's worked example
    assert.equal(bits(0), '1111111111000');
    assert.equal(bits(48), '00000');
    assert.equal(bits(EOS), '1'.repeat(30));
    assert.equal(bits(255), '11111111111111111111101110');
    assert.equal(bits(10), '111111111111111111111111111100');
  });
});

describe('huffmanDecode', () => {
  it('decodes the RFC 7541 Appendix C.4 and C.6 strings', () => {
    const cases: [string, string][] = [
      ['f1e3 c2e5 f23a 6ba0 ab90 f4ff', 'www.example.com'],
      ['a8eb 1064 9cbf', 'no-cache'],
      ['25a8 49e9 5ba9 7d7f', 'custom-key'],
      ['25a8 49e9 5bb8 e8b4 bf', 'custom-value'],
      ['6402', '302'],
      ['aec3 771a 4b', 'private'],
      ['d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff', 'Mon, 21 Oct 2013 20:13:21 GMT'],
      ['9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3', 'https://www.example.com'],
      ['640e ff', '307'],
      ['9bd9 ab', 'gzip'],
      ['94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1'],
    ];
    for (const [hex, text] of cases) {
      assert.equal(decodeHex(hex), text, hex);
      assert.equal(encodeHex(text), hex.replace(/\s+/g, ''), text);
    }
  });

  it('decodes the empty string and respects start/end', () => {
    assert.equal(decodeHex(''), '');
    const buf = Buffer.from('00f1e3c2e5f23a6ba0ab90f4ff00', 'hex');
    assert.equal(huffmanDecode(buf, 1, buf.length - 1), 'www.example.com');
    assert.equal(huffmanDecode(buf, 5, 5), '');
  });

  it('decodes every symbol alone, between others and repeated', () => {
    for (let sym = 0; sym < 256; sym++) {
      for (const text of [String.fromCharCode(sym), `a${String.fromCharCode(sym)}z`, String.fromCharCode(sym).repeat(3)]) {
        const stream = [...text].map((c) => bits(c.charCodeAt(0))).join('');
        assert.equal(huffmanDecode(pack(stream), 0, pack(stream).length), text, `symbol ${sym} in ${JSON.stringify(text)}`);
      }
    }
  });

  it('decodes all 256 octets in one long string (scratch growth included)', () => {
    let text = '';
    for (let round = 0; round < 40; round++) for (let c = 0; c < 256; c++) text += String.fromCharCode((c + round) & 0xff);
    const buf = Buffer.alloc(huffmanEncodedLength(text));
    huffmanEncode(text, buf, 0);
    assert.equal(huffmanDecode(buf, 0, buf.length), text);
  });

  it('rejects padding longer than 7 bits (§5.2)', () => {
    // 'a' is 00011: 3 bits of padding fit its octet; a whole octet of ones more is too much.
    assert.equal(decodeHex('1f'), 'a');
    assert.equal(decodeHex('1fff'), null);
    assert.equal(decodeHex('ff'), null); // 8 bits of padding alone
    assert.equal(decodeHex('ffff'), null);
    // Exactly 7 bits of padding are fine: 'aaaaa' is 25 bits, + 7 ones = 4 octets.
    const five = pack(bits(97).repeat(5));
    assert.equal(five.length, 4);
    assert.equal(huffmanDecode(five, 0, 4), 'aaaaa');
    // 'aaaa' is 20 bits: 4 ones pad it to 3 octets, a fourth octet of ones makes 12.
    const four = Buffer.concat([pack(bits(97).repeat(4)), Buffer.from([0xff])]);
    assert.equal(huffmanDecode(four, 0, 3), 'aaaa');
    assert.equal(huffmanDecode(four, 0, 4), null);
  });

  it('rejects padding that is not a prefix of EOS (§5.2)', () => {
    assert.equal(decodeHex('18'), null); // 'a' then 000
    assert.equal(decodeHex('1e'), null); // 'a' then 110
    assert.equal(decodeHex('1d'), null); // 'a' then 101
    const www = Buffer.from('f1e3c2e5f23a6ba0ab90f4fe', 'hex'); // last padding bit cleared
    assert.equal(huffmanDecode(www, 0, www.length), null);
  });

  it('rejects EOS inside the string (§5.2)', () => {
    assert.equal(huffmanDecode(pack(bits(EOS)), 0, 4), null);
    assert.equal(huffmanDecode(pack(bits(97) + bits(EOS)), 0, pack(bits(97) + bits(EOS)).length), null);
    assert.equal(huffmanDecode(pack(bits(EOS) + bits(97)), 0, pack(bits(EOS) + bits(97)).length), null);
    assert.equal(decodeHex('ffffffff'), null);
  });

  it('rejects a string cut inside a long code', () => {
    // Symbol 0 is 13 bits; cut after its first octet it is 8 ones of padding.
    assert.equal(decodeHex('ff'), null);
    // Symbol 1's 23-bit code cut after 16 bits: ones too, 16 of them.
    assert.equal(huffmanDecode(pack(bits(1)), 0, 2), null);
  });
});
