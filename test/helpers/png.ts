/** Reads Chromium's screenshots in tests: PNG decoding and colour checks, no dependencies. */
import assert from 'node:assert/strict';
import { inflateSync } from 'node:zlib';

export interface Png {
  width: number;
  height: number;
  channels: number;
  pixels: Buffer;
}

/** Decodes the 8-bit, non-interlaced RGB/RGBA PNGs Chromium writes. */
export function decodePng(file: Buffer): Png {
  assert.equal(file.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'PNG signature');
  let offset = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  while (offset < file.length) {
    const length = file.readUInt32BE(offset);
    const type = file.toString('latin1', offset + 4, offset + 8);
    const data = file.subarray(offset + 8, offset + 8 + length);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const [depth, colour, , , interlace] = data.subarray(8, 13);
      assert.equal(depth, 8, 'bit depth');
      assert.equal(interlace, 0, 'interlace');
      assert.ok(colour === 2 || colour === 6, `colour type ${colour}`);
      channels = colour === 6 ? 4 : 3;
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'IEND') {
      break;
    }
    offset += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const pixels = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? (pixels[y * stride + x - channels] as number) : 0;
      const b = y > 0 ? (pixels[(y - 1) * stride + x] as number) : 0;
      const c = x >= channels && y > 0 ? (pixels[(y - 1) * stride + x - channels] as number) : 0;
      let predictor: number;
      switch (filter) {
        case 0: predictor = 0; break;
        case 1: predictor = a; break;
        case 2: predictor = b; break;
        case 3: predictor = (a + b) >> 1; break;
        case 4: {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default: throw new Error(`PNG filter ${filter}`);
      }
      pixels[y * stride + x] = ((line[x] as number) + predictor) & 0xff;
    }
  }
  return { width, height, channels, pixels };
}

/** Share of the box's pixels within `tolerance` of the colour. */
export function colourShare(png: Png, box: { x: number; y: number; width: number; height: number }, rgb: readonly [number, number, number], tolerance = 24): number {
  let hits = 0;
  let total = 0;
  for (let y = Math.ceil(box.y); y < Math.floor(box.y + box.height); y++) {
    for (let x = Math.ceil(box.x); x < Math.floor(box.x + box.width); x++) {
      const i = (y * png.width + x) * png.channels;
      total++;
      const close = rgb.every((v, k) => Math.abs((png.pixels[i + k] as number) - v) <= tolerance);
      if (close) hits++;
    }
  }
  assert.ok(total > 0, 'empty box');
  return hits / total;
}

export const RED: readonly [number, number, number] = [0xcf, 0x22, 0x2e]; // --bad
export const GREEN: readonly [number, number, number] = [0x1a, 0x7f, 0x37]; // --ok
