// CRC32C against published vectors (the iSCSI check value and RFC 3720 B.4), and the incremental
// API agreeing with one-shot checksums at every split, including splits inside an 8-byte block.
import { describe, expect, it } from 'vitest';
import { crc32c } from '../../src/log/crc32c.js';

/** Bit-at-a-time reference, independent of the tables under test. */
function reference(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of data) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}

describe('crc32c', () => {
  it('gives the iSCSI check value for "123456789"', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
  });

  it('matches the RFC 3720 B.4 vectors', () => {
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c);
  });

  it('is 0 for no bytes and leaves the seed unchanged on empty input', () => {
    expect(crc32c(new Uint8Array(0))).toBe(0);
    expect(crc32c(new Uint8Array(0), 0x12345678)).toBe(0x12345678);
  });

  it('agrees with a bit-at-a-time reference on every length up to 100 and on unaligned views', () => {
    const buf = Uint8Array.from({ length: 128 }, (_, i) => (i * 151 + 7) & 0xff);
    for (let start = 0; start < 9; start++) {
      for (let len = 0; start + len <= 100; len++) {
        const view = buf.subarray(start, start + len);
        expect(crc32c(view)).toBe(reference(view));
      }
    }
  });

  it('continues a checksum across chunks: crc32c(b, crc32c(a)) equals crc32c(a ++ b)', () => {
    const data = Uint8Array.from({ length: 257 }, (_, i) => (i * 31) ^ 0x5a);
    const whole = crc32c(data);
    for (let cut = 0; cut <= data.length; cut++) {
      expect(crc32c(data.subarray(cut), crc32c(data.subarray(0, cut)))).toBe(whole);
    }
    let crc = 0;
    for (let i = 0; i < data.length; i += 13) crc = crc32c(data.subarray(i, i + 13), crc);
    expect(crc).toBe(whole);
  });
});
