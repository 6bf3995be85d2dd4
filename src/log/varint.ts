// Unsigned LEB128 varints and zigzag signed mapping for the log records (native/log/event.h), over
// 64-bit bigints. Knows nothing of batches: failures carry a byte position for format.ts to name.

/** Most bytes a 64-bit varint may take (9 × 7 bits + 1 bit). */
export const MAX_VARINT_BYTES = 10;

const U64_MAX = (1n << 64n) - 1n;

/** Maps a signed 64-bit value to unsigned so small magnitudes of either sign encode short. */
export function zigzagEncode(v: bigint): bigint {
  const s = BigInt.asIntN(64, v);
  return BigInt.asUintN(64, (s << 1n) ^ (s >> 63n));
}

/** Inverse of {@link zigzagEncode}: unsigned 64-bit to signed 64-bit. */
export function zigzagDecode(u: bigint): bigint {
  return BigInt.asIntN(64, (u >> 1n) ^ -(u & 1n));
}

/** Bytes the varint encoding of `v` (0 ≤ v < 2^64) takes. */
export function varintLength(v: bigint): number {
  let n = 1;
  while (v >= 0x80n) {
    v >>= 7n;
    n++;
  }
  return n;
}

/** Why a read failed; `at` is the index (into the bytes being read) of the offending byte. */
export class ByteReadError extends Error {
  constructor(
    readonly problem: 'past-end' | 'varint-too-long' | 'varint-overflow',
    readonly at: number,
    message: string,
  ) {
    super(message);
  }
}

/** Forward-only reader over `bytes[pos, end)`; every read checks the bound. */
export class ByteReader {
  pos: number;
  readonly #bytes: Uint8Array;
  readonly #end: number;

  constructor(bytes: Uint8Array, start: number, end: number) {
    this.#bytes = bytes;
    this.pos = start;
    this.#end = end;
  }

  /** Bytes left before the end. */
  get remaining(): number {
    return this.#end - this.pos;
  }

  u8(): number {
    if (this.pos >= this.#end) throw new ByteReadError('past-end', this.pos, 'record runs past the end of the batch');
    return this.#bytes[this.pos++]!;
  }

  /** An unsigned LEB128 varint of at most 10 bytes whose value fits in 64 bits. */
  varint(): bigint {
    const start = this.pos;
    // Up to 7 bytes (49 bits) stay exact in a double; only longer encodings pay for bigint shifts.
    let small = 0;
    let scale = 1;
    for (let i = 0; i < 7; i++) {
      if (this.pos >= this.#end) throw new ByteReadError('past-end', this.pos, `varint starting at byte ${start} runs past the end of the batch`);
      const b = this.#bytes[this.pos++]!;
      small += (b & 0x7f) * scale;
      if (b < 0x80) return BigInt(small);
      scale *= 128;
    }
    let value = BigInt(small);
    for (let i = 7; i < MAX_VARINT_BYTES; i++) {
      if (this.pos >= this.#end) throw new ByteReadError('past-end', this.pos, `varint starting at byte ${start} runs past the end of the batch`);
      const at = this.pos;
      const b = this.#bytes[this.pos++]!;
      // The tenth byte holds bit 63 only: anything above it, or a continuation, is not a 64-bit value.
      if (i === MAX_VARINT_BYTES - 1 && b > 1) {
        throw new ByteReadError(
          b & 0x80 ? 'varint-too-long' : 'varint-overflow',
          at,
          b & 0x80 ? `varint starting at byte ${start} is longer than ${MAX_VARINT_BYTES} bytes` : `varint starting at byte ${start} exceeds 64 bits`,
        );
      }
      value |= BigInt(b & 0x7f) << BigInt(7 * i);
      if (b < 0x80) return value;
    }
    throw new Error('unreachable');
  }

  /** A zigzag varint, as a signed 64-bit value. */
  zigzag(): bigint {
    return zigzagDecode(this.varint());
  }

  u64le(): bigint {
    if (this.remaining < 8) throw new ByteReadError('past-end', this.#end, 'u64 runs past the end of the batch');
    const dv = new DataView(this.#bytes.buffer, this.#bytes.byteOffset + this.pos, 8);
    this.pos += 8;
    return dv.getBigUint64(0, true);
  }

  /** A view (not a copy) of the next `n` bytes. */
  bytes(n: number): Uint8Array {
    if (this.remaining < n) throw new ByteReadError('past-end', this.#end, `${n} payload bytes run past the end of the batch (${this.remaining} left)`);
    const out = this.#bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}

/** Growable little-endian output buffer for building batches. */
export class ByteWriter {
  #buf: Uint8Array;
  #len = 0;

  constructor(initial = 256) {
    this.#buf = new Uint8Array(initial);
  }

  get length(): number {
    return this.#len;
  }

  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(this.#buf.length * 2, this.#len + n));
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }

  u8(v: number): void {
    this.#reserve(1);
    this.#buf[this.#len++] = v;
  }

  /** Appends `v` (0 ≤ v < 2^64) as an unsigned LEB128 varint. */
  varint(v: bigint): void {
    if (v < 0n || v > U64_MAX) throw new RangeError(`varint value ${v} is outside [0, 2^64)`);
    this.#reserve(MAX_VARINT_BYTES);
    while (v >= 0x80n) {
      this.#buf[this.#len++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.#buf[this.#len++] = Number(v);
  }

  /** Appends a signed 64-bit value as a zigzag varint. */
  zigzag(v: bigint): void {
    this.varint(zigzagEncode(v));
  }

  u32le(v: number): void {
    this.#reserve(4);
    new DataView(this.#buf.buffer, this.#len, 4).setUint32(0, v >>> 0, true);
    this.#len += 4;
  }

  u64le(v: bigint): void {
    this.#reserve(8);
    new DataView(this.#buf.buffer, this.#len, 8).setBigUint64(0, BigInt.asUintN(64, v), true);
    this.#len += 8;
  }

  bytes(data: Uint8Array): void {
    this.#reserve(data.length);
    this.#buf.set(data, this.#len);
    this.#len += data.length;
  }

  /** The bytes written so far, trimmed to length (a copy; the writer may be reused). */
  finish(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }
}
