/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of an
 * OP_MSG with the checksumPresent flag. zlib's crc32 is the IEEE polynomial,
 * so this is table-driven here; it only runs on opening messages that carry
 * a checksum.
 */
const TABLE = new Int32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  TABLE[n] = c;
}

export function crc32c(bytes: Uint8Array, from = 0, to = bytes.length): number {
  let crc = -1;
  for (let i = from; i < to; i++) crc = (TABLE[(crc ^ (bytes[i] as number)) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}
