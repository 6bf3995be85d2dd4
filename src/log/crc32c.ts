// CRC32C (Castagnoli; the iSCSI CRC of RFC 3720) for log batches: the same checksum native/log/
// computes, in pure TypeScript, slicing-by-8. No allocation per call; tables are built once at load.

/** Reflected Castagnoli polynomial (0x1EDC6F41 bit-reversed). */
const POLY = 0x82f63b78;

/**
 * Slicing-by-8 tables: TABLE[k * 256 + b] is the CRC contribution of byte b seen k bytes before the end
 * of an 8-byte block, so one block costs 8 lookups instead of 8 dependent shift-and-lookup rounds.
 */
const TABLE = (() => {
  const t = new Uint32Array(8 * 256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let i = 0; i < 8; i++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[b] = c >>> 0;
  }
  for (let k = 1; k < 8; k++) {
    for (let b = 0; b < 256; b++) {
      const prev = t[(k - 1) * 256 + b]!;
      t[k * 256 + b] = (prev >>> 8) ^ t[prev & 0xff]!;
    }
  }
  return t;
})();

/**
 * CRC32C of `data` (init and final xor 0xFFFFFFFF, as in iSCSI and the native codec).
 *
 * Incremental: pass the result of the previous call as `seed` to continue over the next chunk, so
 * `crc32c(b, crc32c(a)) === crc32c(a ++ b)`. The default seed 0 starts a new checksum.
 * Check value: `crc32c("123456789") === 0xE3069283`.
 *
 * @returns the checksum as an unsigned 32-bit number.
 */
export function crc32c(data: Uint8Array, seed = 0): number {
  const t = TABLE;
  let crc = ~seed;
  let i = 0;
  const n = data.length;
  const end8 = n - (n % 8);
  while (i < end8) {
    // The first four bytes fold into the running CRC; the last four are fresh data.
    const lo = crc ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
    crc =
      t[7 * 256 + (lo & 0xff)]! ^
      t[6 * 256 + ((lo >>> 8) & 0xff)]! ^
      t[5 * 256 + ((lo >>> 16) & 0xff)]! ^
      t[4 * 256 + (lo >>> 24)]! ^
      t[3 * 256 + data[i + 4]!]! ^
      t[2 * 256 + data[i + 5]!]! ^
      t[256 + data[i + 6]!]! ^
      t[data[i + 7]!]!;
    i += 8;
  }
  while (i < n) crc = (crc >>> 8) ^ t[(crc ^ data[i++]!) & 0xff]!;
  return ~crc >>> 0;
}
