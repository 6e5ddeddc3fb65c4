/**
 * The HPACK codec (RFC 7541): the Appendix C examples with the dynamic table
 * after each block, decoding what nghttp2 (node:http2's client) encodes and
 * nghttp2 decoding what HpackEncoder writes, table semantics (§4), every
 * COMPRESSION_ERROR the decoder raises, and the header list size cap.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { HpackDecoder, HpackEncoder, HpackError, encodedLength, maxEncodedLength, staticEntry } from '../../../../../../src/protocols/http/h2/wire/hpack.ts';

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

/** Decodes one block and returns its fields as [name, value] pairs. */
function decodePairs(decoder: HpackDecoder, block: Buffer, maxListSize = 1 << 20): [string, string][] {
  const out: string[] = [];
  decoder.decode(block, 0, block.length, out, maxListSize);
  return pairs(out);
}

function pairs(flat: readonly string[]): [string, string][] {
  const result: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) result.push([flat[i] as string, flat[i + 1] as string]);
  return result;
}

/** The dynamic table, newest first, as the RFC prints it: [name, value] pairs. */
function table(decoder: HpackDecoder): [string, string][] {
  const entries: [string, string][] = [];
  for (let i = 1; i <= decoder.tableLength; i++) entries.push([...(decoder.tableEntry(i) as [string, string])]);
  return entries;
}

function fields(text: string): [string, string][] {
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const at = line.indexOf(': ', 1);
      return [line.slice(0, at).trim(), line.slice(at + 2)];
    });
}

function encode(flat: readonly string[]): Buffer {
  const buf = Buffer.alloc(maxEncodedLength(flat));
  const end = new HpackEncoder().encode(flat, buf, 0);
  assert.equal(end, encodedLength(flat));
  return buf.subarray(0, end);
}

function rejects(block: Buffer, pattern: RegExp, decoder = new HpackDecoder(4096)): void {
  assert.throws(() => decoder.decode(block, 0, block.length, [], 1 << 20), (err: unknown) => err instanceof HpackError && pattern.test(err.message));
}

describe('HPACK static table (Appendix A)', () => {
  it('has the 61 entries, :status 200..500 at 8..14', () => {
    assert.deepEqual(staticEntry(1), [':authority', '']);
    assert.deepEqual(staticEntry(2), [':method', 'GET']);
    assert.deepEqual(staticEntry(8), [':status', '200']);
    assert.deepEqual(staticEntry(14), [':status', '500']);
    assert.deepEqual(staticEntry(16), ['accept-encoding', 'gzip, deflate']);
    assert.deepEqual(staticEntry(61), ['www-authenticate', '']);
    assert.equal(staticEntry(62), undefined);
    const decoder = new HpackDecoder(4096);
    for (let i = 1; i <= 61; i++) assert.deepEqual(decodePairs(decoder, Buffer.from([0x80 | i])), [staticEntry(i)]);
  });
});

describe('HpackDecoder: RFC 7541 Appendix C', () => {
  it('C.2.1 literal with indexing', () => {
    const decoder = new HpackDecoder(4096);
    assert.deepEqual(decodePairs(decoder, hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572')), [['custom-key', 'custom-header']]);
    assert.deepEqual(table(decoder), [['custom-key', 'custom-header']]);
    assert.equal(decoder.tableSize, 55);
  });

  it('C.2.2 literal without indexing', () => {
    const decoder = new HpackDecoder(4096);
    assert.deepEqual(decodePairs(decoder, hex('040c 2f73 616d 706c 652f 7061 7468')), [[':path', '/sample/path']]);
    assert.equal(decoder.tableLength, 0);
    assert.equal(decoder.tableSize, 0);
  });

  it('C.2.3 literal never indexed', () => {
    const decoder = new HpackDecoder(4096);
    assert.deepEqual(decodePairs(decoder, hex('1008 7061 7373 776f 7264 0673 6563 7265 74')), [['password', 'secret']]);
    assert.equal(decoder.tableLength, 0);
  });

  it('C.2.4 indexed field', () => {
    const decoder = new HpackDecoder(4096);
    assert.deepEqual(decodePairs(decoder, hex('82')), [[':method', 'GET']]);
    assert.equal(decoder.tableLength, 0);
  });

  // C.3 and C.4 are the same requests, raw and Huffman-coded.
  const requests = [
    { list: ':method: GET\n:scheme: http\n:path: /\n:authority: www.example.com', table: [[':authority', 'www.example.com']], size: 57 },
    { list: ':method: GET\n:scheme: http\n:path: /\n:authority: www.example.com\ncache-control: no-cache', table: [['cache-control', 'no-cache'], [':authority', 'www.example.com']], size: 110 },
    {
      list: ':method: GET\n:scheme: https\n:path: /index.html\n:authority: www.example.com\ncustom-key: custom-value',
      table: [['custom-key', 'custom-value'], ['cache-control', 'no-cache'], [':authority', 'www.example.com']],
      size: 164,
    },
  ];
  for (const [section, blocks] of [
    ['C.3 requests without Huffman', ['8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d', '8286 84be 5808 6e6f 2d63 6163 6865', '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65']],
    ['C.4 requests with Huffman', ['8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff', '8286 84be 5886 a8eb 1064 9cbf', '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf']],
  ] as const) {
    it(section, () => {
      const decoder = new HpackDecoder(4096);
      blocks.forEach((block, i) => {
        const step = requests[i] as (typeof requests)[number];
        assert.deepEqual(decodePairs(decoder, hex(block)), fields(step.list), `${section} #${i + 1}`);
        assert.deepEqual(table(decoder), step.table, `${section} #${i + 1} table`);
        assert.equal(decoder.tableSize, step.size, `${section} #${i + 1} size`);
      });
    });
  }

  // C.5 and C.6: responses with a 256-octet table, so entries are evicted.
  const cookie = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';
  const responses = [
    {
      list: ':status: 302\ncache-control: private\ndate: Mon, 21 Oct 2013 20:13:21 GMT\nlocation: https://www.example.com',
      table: [['location', 'https://www.example.com'], ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'], ['cache-control', 'private'], [':status', '302']],
      size: 222,
    },
    {
      list: ':status: 307\ncache-control: private\ndate: Mon, 21 Oct 2013 20:13:21 GMT\nlocation: https://www.example.com',
      table: [[':status', '307'], ['location', 'https://www.example.com'], ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'], ['cache-control', 'private']],
      size: 222,
    },
    {
      list: `:status: 200\ncache-control: private\ndate: Mon, 21 Oct 2013 20:13:22 GMT\nlocation: https://www.example.com\ncontent-encoding: gzip\nset-cookie: ${cookie}`,
      table: [['set-cookie', cookie], ['content-encoding', 'gzip'], ['date', 'Mon, 21 Oct 2013 20:13:22 GMT']],
      size: 215,
    },
  ];
  for (const [section, blocks] of [
    [
      'C.5 responses without Huffman',
      [
        '4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
        '4803 3330 37c1 c0bf',
        '88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31',
      ],
    ],
    [
      'C.6 responses with Huffman',
      [
        '4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3',
        '4883 640e ffc1 c0bf',
        '88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07',
      ],
    ],
  ] as const) {
    it(section, () => {
      const decoder = new HpackDecoder(256);
      blocks.forEach((block, i) => {
        const step = responses[i] as (typeof responses)[number];
        assert.deepEqual(decodePairs(decoder, hex(block)), fields(step.list), `${section} #${i + 1}`);
        assert.deepEqual(table(decoder), step.table, `${section} #${i + 1} table`);
        assert.equal(decoder.tableSize, step.size, `${section} #${i + 1} size`);
      });
    });
  }
});

describe('HpackDecoder: dynamic table (§4)', () => {
  it('an entry larger than the table empties it, and is still a field of the list', () => {
    const decoder = new HpackDecoder(256);
    decodePairs(decoder, hex('400161 0162 400163 0164'));
    assert.equal(decoder.tableLength, 2);
    const big = 'v'.repeat(300);
    const block = Buffer.concat([hex('400178 7f ad01'), Buffer.from(big, 'latin1')]); // length 127 + 45 + 1 * 128
    assert.deepEqual(decodePairs(decoder, block), [['x', big]]);
    assert.equal(decoder.tableLength, 0);
    assert.equal(decoder.tableSize, 0);
    rejects(hex('be'), /past the table/, decoder);
  });

  it('a new entry may name an entry it evicts (§4.4)', () => {
    const decoder = new HpackDecoder(100);
    const name = 'n'.repeat(30);
    decodePairs(decoder, Buffer.concat([hex('40 1e'), Buffer.from(name), hex('00')]));
    assert.equal(decoder.tableSize, 62);
    assert.deepEqual(decodePairs(decoder, hex('7e 01 76')), [[name, 'v']]);
    assert.deepEqual(table(decoder), [[name, 'v']]);
    assert.equal(decoder.tableSize, 63);
  });

  it('a size update evicts down to it and bounds later entries; several may open a block', () => {
    const decoder = new HpackDecoder(4096);
    decodePairs(decoder, hex('400161 0162 400163 0164 400165 0166'));
    assert.equal(decoder.tableSize, 3 * 34);
    assert.deepEqual(decodePairs(decoder, hex('3f 2c 82')), [[':method', 'GET']]); // size 31 + 44 = 75: two entries fit
    assert.equal(decoder.tableCapacity, 75);
    assert.deepEqual(table(decoder), [['e', 'f'], ['c', 'd']]);
    assert.deepEqual(decodePairs(decoder, hex('20 3f e1 1f')), []); // 0, then back to 4096
    assert.equal(decoder.tableLength, 0);
    assert.equal(decoder.tableCapacity, 4096);
    decodePairs(decoder, hex('400161 0162'));
    assert.equal(decoder.tableLength, 1);
  });

  it('keeps the newest entries in order across many insertions (the ring wraps)', () => {
    const decoder = new HpackDecoder(4096);
    for (let i = 0; i < 1000; i++) {
      const name = `k${i}`;
      const block = Buffer.concat([hex('40'), Buffer.from([name.length]), Buffer.from(name), hex('00')]);
      decodePairs(decoder, block);
    }
    // Entries of 32 + 4 octets (k100..k999): 113 of them fit in 4096.
    assert.equal(decoder.tableLength, Math.floor(4096 / 36));
    assert.equal(decoder.tableSize, decoder.tableLength * 36);
    for (let i = 1; i <= decoder.tableLength; i++) assert.deepEqual(decoder.tableEntry(i), [`k${1000 - i}`, '']);
    // Index 62 is dynamic entry 1; index 128 (0x7f, then 1) is entry 67.
    assert.deepEqual(decodePairs(decoder, hex('be ff 01')), [['k999', ''], ['k933', '']]);
  });

  it('decodes within start..end of a larger buffer and appends to out', () => {
    const decoder = new HpackDecoder(4096);
    const buf = hex('ffff 8286 84 ffff');
    const out = ['keep', 'me'];
    const size = decoder.decode(buf, 2, 5, out, 1 << 20);
    assert.deepEqual(out, ['keep', 'me', ':method', 'GET', ':scheme', 'http', ':path', '/']);
    assert.equal(size, 7 + 3 + 32 + (7 + 4 + 32) + (5 + 1 + 32));
  });
});

describe('HpackDecoder: COMPRESSION_ERROR cases', () => {
  it('index 0, or past the table', () => {
    rejects(hex('80'), /index 0/);
    rejects(hex('be'), /past the table/);
    rejects(hex('ff 00'), /past the table/); // 127
    rejects(hex('7e 01 61'), /past the table/); // literal naming dynamic entry 1 of an empty table
    rejects(hex('0f 2f 01 61'), /past the table/); // literal without indexing naming index 62
  });

  it('integer overflow, and too many continuation octets', () => {
    rejects(hex('ff ff ff ff ff 0f'), /integer overflow/);
    rejects(hex('ff 80 80 80 80 80 00'), /integer overflow/);
    rejects(hex('00 7f ff ff ff ff 07'), /overflow/); // a string length of 2^31 + 126
    rejects(hex('3f ff ff ff ff 07'), /overflow/);
  });

  it('strings past the block end', () => {
    rejects(hex('00 05 6162'), /past the block end/);
    rejects(hex('00 01 61 05 6162'), /past the block end/);
    rejects(hex('41 7f 00'), /past the block end/); // a 127-octet value in a 3-octet block
  });

  it('bad Huffman strings', () => {
    rejects(hex('00 81 18 01 61'), /Huffman/); // padding not a prefix of EOS
    rejects(hex('41 82 1fff'), /Huffman/); // 11 bits of padding
    rejects(hex('41 84 ffffffff'), /Huffman/); // EOS
  });

  it('a table size update above SETTINGS_HEADER_TABLE_SIZE (§6.3)', () => {
    rejects(hex('3f e2 1f'), /table size update to 4097/);
    assert.deepEqual(decodePairs(new HpackDecoder(4096), hex('3f e1 1f')), []);
    rejects(hex('3f 02'), /table size update to 33/, new HpackDecoder(32));
  });

  it('a table size update after the first field (§4.2)', () => {
    rejects(hex('82 20'), /after a field/);
    rejects(hex('20 82 3f e1 1f'), /after a field/);
  });

  it('truncated blocks', () => {
    for (const block of ['40', '41', '0003 616263', '7f', 'ff', 'ff 80', '04', '1f', '3f', '40 01 61']) rejects(hex(block), /truncated/);
  });
});

describe('HpackDecoder: header list size cap', () => {
  it('stops pushing past maxListSize but decodes the whole block and counts it all', () => {
    const decoder = new HpackDecoder(4096);
    const big = 'v'.repeat(4000);
    const block = Buffer.concat([hex('40 01 78 7f a1 1e'), Buffer.from(big), Buffer.alloc(10_000, 0xbe)]); // 4000 = 127 + 0x21 + 0x1e*128
    const out: string[] = [];
    const size = decoder.decode(block, 0, block.length, out, 16 * 1024);
    assert.equal(size, 10_001 * (1 + 4000 + 32));
    assert.equal(out.length, 2 * Math.floor((16 * 1024) / 4033));
    for (let i = 0; i < out.length; i += 2) assert.deepEqual([out[i], out[i + 1]], ['x', big]);
    assert.deepEqual(decodePairs(decoder, hex('be')), [['x', big]]);
  });

  it('keeps the table in step: an entry inserted past the cap serves the next block', () => {
    const decoder = new HpackDecoder(4096);
    const long = 'c'.repeat(200);
    const block = Buffer.concat([hex('400161 0162 400163 7f 49'), Buffer.from(long)]);
    const out: string[] = [];
    assert.equal(decoder.decode(block, 0, block.length, out, 100), 34 + 1 + 200 + 32);
    assert.deepEqual(out, ['a', 'b']);
    assert.deepEqual(decodePairs(decoder, hex('be bf')), [['c', long], ['a', 'b']]);
    assert.equal(decoder.tableSize, 34 + 233);
  });

  it('maxListSize 0 pushes nothing', () => {
    const out: string[] = [];
    assert.equal(new HpackDecoder(4096).decode(hex('82'), 0, 1, out, 0), 42);
    assert.deepEqual(out, []);
  });
});

describe('HpackEncoder', () => {
  it('indexes exact static matches, names static names, writes the rest literally, never indexing', () => {
    assert.equal(encode([':status', '200']).toString('hex'), '88');
    assert.equal(encode([':status', '404']).toString('hex'), '8d');
    assert.equal(encode([':status', '500', ':status', '204', ':status', '206', ':status', '304', ':status', '400']).toString('hex'), '8e898a8b8c');
    assert.equal(encode([':status', '302']).toString('hex'), '0803333032');
    assert.equal(encode(['accept-encoding', 'gzip, deflate']).toString('hex'), '90');
    assert.equal(encode(['age', '']).toString('hex'), '95'); // exact match of an empty value
    assert.equal(encode(['age', '5']).toString('hex'), '0f060135'); // index 21: 4-bit prefix 15 + 6
    assert.equal(encode(['content-type', 'text/html']).toString('hex'), '0f10' + '09' + Buffer.from('text/html').toString('hex'));
    assert.equal(encode(['cache-control', 'x']).toString('hex'), '0f090178'); // 24
    assert.equal(encode(['x-a', 'b']).toString('hex'), '0003782d610162');
    const long = 'v'.repeat(300);
    assert.equal(encode(['x', long]).toString('hex'), '000178' + '7fad01' + Buffer.from(long).toString('hex'));
  });

  it('writes latin1 octets, and what it writes decodes back', () => {
    const flat = [':status', '200', 'content-type', 'text/plain; charset=iso-8859-1', 'x-latin', 'caf\u00e9 \u00ff', 'set-cookie', 'a=1', 'set-cookie', 'b=2', 'x-empty', '', 'n'.repeat(127), 'v'.repeat(16_384)];
    const block = encode(flat);
    assert.ok(block.includes(Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0xff])));
    const decoder = new HpackDecoder(4096);
    const out: string[] = [];
    decoder.decode(block, 0, block.length, out, 1 << 20);
    assert.deepEqual(out, flat);
    assert.equal(decoder.tableLength, 0);
  });

  it('writes at the offset given and the bound holds', () => {
    const flat = [':status', '204', 'date', 'Mon, 21 Oct 2013 20:13:21 GMT'];
    const buf = Buffer.alloc(5 + maxEncodedLength(flat), 0xee);
    const end = new HpackEncoder().encode(flat, buf, 5);
    assert.equal(end, 5 + encodedLength(flat));
    assert.ok(end <= buf.length);
    assert.equal(buf.subarray(0, 5).toString('hex'), 'eeeeeeeeee');
    assert.deepEqual(decodePairs(new HpackDecoder(0), buf.subarray(5, end)), pairs(flat));
  });
});

// --- Differential tests against nghttp2, through node:http2 ---

interface RawServer {
  port: number;
  close(): void;
}

const servers: net.Server[] = [];
after(() => {
  for (const server of servers) server.close();
});

/**
 * A bare-bones HTTP/2 server on a net socket: sends its SETTINGS (`settings`
 * payload), acknowledges the client's, and hands each complete header block
 * (HEADERS + CONTINUATION, padding and priority removed) to `onBlock`.
 */
async function rawServer(settings: Buffer, onBlock: (block: Buffer, streamId: number, socket: net.Socket) => void): Promise<RawServer> {
  const server = net.createServer((socket) => {
    socket.write(frame(0x4, 0, 0, settings));
    let buf = Buffer.alloc(0);
    let prefaceSeen = false;
    let fragments: Buffer[] = [];
    socket.on('error', () => {});
    socket.on('data', (data: Buffer) => {
      buf = Buffer.concat([buf, data]);
      if (!prefaceSeen) {
        if (buf.length < 24) return;
        assert.equal(buf.subarray(0, 24).toString('latin1'), 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
        buf = buf.subarray(24);
        prefaceSeen = true;
      }
      while (buf.length >= 9) {
        const length = buf.readUIntBE(0, 3);
        if (buf.length < 9 + length) break;
        const type = buf[3] as number;
        const flags = buf[4] as number;
        const streamId = buf.readUInt32BE(5) & 0x7fffffff;
        let payload = buf.subarray(9, 9 + length);
        buf = buf.subarray(9 + length);
        if (type === 0x4 && (flags & 0x1) === 0) socket.write(frame(0x4, 0x1, 0, Buffer.alloc(0)));
        if (type !== 0x1 && type !== 0x9) continue;
        if (type === 0x1) {
          let start = 0;
          let end = payload.length;
          if ((flags & 0x8) !== 0) {
            end -= payload[0] as number;
            start = 1;
          }
          if ((flags & 0x20) !== 0) start += 5;
          payload = payload.subarray(start, end);
        }
        fragments.push(payload);
        if ((flags & 0x4) !== 0) {
          onBlock(Buffer.concat(fragments), streamId, socket);
          fragments = [];
        }
      }
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

type Request = Record<string, string | string[]>;

/** The header list node:http2 sends for `headers`: in order, arrays as repeated fields. */
function flatten(headers: Request): string[] {
  const flat: string[] = [];
  for (const [name, value] of Object.entries(headers)) for (const v of Array.isArray(value) ? value : [value]) flat.push(name, v);
  return flat;
}

/**
 * Sends `requests` from a node:http2 client to a raw server announcing
 * `tableSize` and decodes the blocks it receives in order with one decoder.
 */
async function roundTrip(tableSize: number, requests: readonly (Request & { sensitive?: string[] })[]): Promise<{ lists: string[][]; blocks: Buffer[]; wire: number; decoder: HpackDecoder }> {
  const decoder = new HpackDecoder(tableSize);
  const lists: string[][] = [];
  const blocks: Buffer[] = [];
  let wire = 0;
  let done: () => void = () => {};
  const all = new Promise<void>((resolve) => (done = resolve));
  const settings = Buffer.alloc(6);
  settings.writeUInt16BE(0x1, 0);
  settings.writeUInt32BE(tableSize, 2);
  const server = await rawServer(settings, (block) => {
    const out: string[] = [];
    decoder.decode(block, 0, block.length, out, 1 << 20);
    lists.push(out);
    blocks.push(block);
    wire += block.length;
    if (lists.length === requests.length) done();
  });
  const client = http2.connect(`http://127.0.0.1:${server.port}`);
  client.on('error', () => {});
  await new Promise<void>((resolve) => client.once('remoteSettings', () => resolve()));
  for (const { sensitive, ...headers } of requests) {
    const stream = client.request({ ...headers, ...(sensitive ? { [http2.sensitiveHeaders]: sensitive } : {}) }, { endStream: true });
    stream.on('error', () => {});
  }
  await all;
  client.destroy();
  server.close();
  return { lists, blocks, wire, decoder };
}

function requestSet(): (Request & { sensitive?: string[] })[] {
  const base = { ':method': 'GET', ':path': '/', ':scheme': 'http', ':authority': 'example.test' };
  const ua = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';
  const accept = 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8';
  const requests: (Request & { sensitive?: string[] })[] = [
    { ...base, 'user-agent': ua, accept, 'accept-encoding': 'gzip, deflate', 'accept-language': 'en-US,en;q=0.5', cookie: ['a=1', 'session=0123456789abcdef0123456789abcdef'] },
    { ...base, ':path': '/style.css', 'user-agent': ua, accept: 'text/css,*/*;q=0.1', 'accept-encoding': 'gzip, deflate, br', cookie: ['a=1', 'session=0123456789abcdef0123456789abcdef'] },
    { ...base, ':method': 'POST', ':path': '/api/v1/items?sort=desc&limit=100', 'content-type': 'application/json', authorization: 'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc', 'x-secret': 'hunter2', sensitive: ['authorization', 'x-secret'] },
    { ...base, ':path': '/big', 'x-huge': 'h'.repeat(20_000), 'x-over-table': 'o'.repeat(5000), 'x-empty': '', 'x-latin': 'caf\u00e9 na\u00efve \u00ff' },
  ];
  // Many 150-octet values: nghttp2's table evicts while these go in.
  const many: Request = { ...base, ':path': '/many' };
  for (let i = 0; i < 40; i++) many[`x-evict-${i}`] = `${i}-${'e'.repeat(150)}`;
  requests.push(many, { ...many, ':path': '/many-again' }, requests[0] as Request);
  // Every symbol node lets through (tab, 0x20-0x7e, 0x80-0xff), each in a
  // value short enough overall for nghttp2 to Huffman-code it.
  for (let from = 0; from < 256; from += 32) {
    const bytes: Request = { ...base, ':path': `/bytes/${from}` };
    for (let c = from; c < from + 32; c++) if (c === 9 || (c >= 0x20 && c !== 0x7f)) bytes[`x-b-${c}`] = `aeiostaeiost${String.fromCharCode(c)}aeiost`;
    requests.push(bytes);
  }
  return requests;
}

describe('HpackDecoder against nghttp2 (node:http2 client)', () => {
  for (const tableSize of [4096, 256, 0]) {
    it(`decodes what nghttp2 encodes: Huffman, dynamic table, never-indexed, CONTINUATION (table ${tableSize})`, async () => {
      const requests = requestSet();
      const { lists, blocks, wire, decoder } = await roundTrip(tableSize, requests);
      assert.equal(lists.length, requests.length);
      let raw = 0;
      requests.forEach(({ sensitive: _, ...headers }, i) => {
        const expected = flatten(headers);
        assert.deepEqual(lists[i], expected, `request ${i}`);
        for (const s of expected) raw += s.length;
      });
      // Huffman and (with a table) indexing make the blocks much smaller than the fields.
      assert.ok(wire < raw * (tableSize === 0 ? 0.9 : 0.75), `${wire} octets on the wire for ${raw} octets of fields`);
      assert.ok(decoder.tableSize <= tableSize);
      if (tableSize > 0) assert.ok(decoder.tableLength > 0);
      // The sensitive authorization went as a never-indexed literal (0001) naming static entry 23.
      assert.ok((blocks[2] as Buffer).includes(Buffer.from([0x1f, 0x08])));
    });
  }
});

describe('HpackEncoder against nghttp2 (node:http2 client)', () => {
  it('the client receives exactly the fields written', async () => {
    // content-length 0: the HEADERS frame ends the stream, and nghttp2 checks the length.
    const responses = [
      [':status', '200', 'content-type', 'text/html; charset=utf-8', 'content-length', '0', 'cache-control', 'no-cache', 'date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
      [':status', '404', 'set-cookie', 'a=1; Path=/', 'set-cookie', 'b=2; HttpOnly', 'www-authenticate', 'Basic realm="x"', 'x-custom', 'v'.repeat(300), 'x-latin', 'caf\u00e9 \u00ff', 'x-empty', ''],
      [':status', '302', 'location', 'https://example.test/elsewhere', 'vary', 'accept-encoding', 'strict-transport-security', 'max-age=63072000'],
      [':status', '500'],
      [':status', '204', 'accept-encoding', 'gzip, deflate', 'age', '', 'via', '2 polyproxy'],
    ];
    const encoder = new HpackEncoder();
    let next = 0;
    const server = await rawServer(Buffer.alloc(0), (_block, streamId, socket) => {
      const fieldsOut = responses[next++] as string[];
      const buf = Buffer.alloc(maxEncodedLength(fieldsOut));
      const end = encoder.encode(fieldsOut, buf, 0);
      socket.write(frame(0x1, 0x5, streamId, buf.subarray(0, end)));
    });
    const client = http2.connect(`http://127.0.0.1:${server.port}`);
    client.on('error', () => {});
    try {
      for (const expected of responses) {
        const raw = await new Promise<string[]>((resolve, reject) => {
          const stream = client.request({ ':path': '/' }, { endStream: true });
          stream.on('response', (_headers, _flags, rawHeaders: string[]) => resolve(rawHeaders));
          stream.on('error', reject);
        });
        assert.deepEqual(raw, expected, JSON.stringify(expected).slice(0, 80));
      }
    } finally {
      client.destroy();
      server.close();
    }
  });
});
