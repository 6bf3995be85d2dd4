// The JS (consumer) side of the SPSC byte ring in native/log/ring.h: same offsets, same version.
//
//   0          4                      64         68                    128                 128+cap
//   +----------+----------------------+----------+---------------------+-------------------+
//   | head u32 | version u32, cap u32 | tail u32 |      (padding)      |  data[cap]        |
//   +----------+----------------------+----------+---------------------+-------------------+
//     producer   written once at init   consumer                          cap = 2^k

/** Byte offsets of the ring header; must match RingLayout in native/log/ring.h. */
export const RING_HEAD = 0;
export const RING_VERSION = 4;
export const RING_CAPACITY = 8;
export const RING_TAIL = 64;
export const RING_DATA = 128;
export const RING_VERSION_VALUE = 1;

/** Allocates the shared memory for a ring of `capacity` bytes (a power of two, >= 64). */
export function allocateRing(capacity: number): SharedArrayBuffer {
  if (!Number.isInteger(capacity) || capacity < 64 || (capacity & (capacity - 1)) !== 0) {
    throw new RangeError(`ring capacity must be a power of two >= 64, got ${capacity}`);
  }
  return new SharedArrayBuffer(RING_DATA + capacity);
}

/** Reads what the native producer published. One reader per ring. */
export class ByteRingReader {
  readonly #words: Int32Array;
  readonly #data: Uint8Array;
  readonly #mask: number;

  constructor(buffer: SharedArrayBuffer) {
    this.#words = new Int32Array(buffer, 0, RING_DATA / 4);
    this.#data = new Uint8Array(buffer, RING_DATA);
    this.#mask = this.#data.length - 1;
  }

  /** Copies out everything published so far (empty array if nothing). */
  read(): Uint8Array {
    // Atomics.load is seq_cst: pairs with the producer's release store of head in ByteRingProducer::push(),
    // so the bytes before head are visible.
    const head = Atomics.load(this.#words, RING_HEAD / 4) >>> 0;
    const tail = Atomics.load(this.#words, RING_TAIL / 4) >>> 0;
    const n = (head - tail) >>> 0;
    if (n === 0) return new Uint8Array(0);
    const out = new Uint8Array(n);
    const start = tail & this.#mask;
    const first = Math.min(n, this.#data.length - start);
    out.set(this.#data.subarray(start, start + first), 0);
    if (first < n) out.set(this.#data.subarray(0, n - first), first);
    // Atomics.store (seq_cst, so at least release): we are done reading these bytes; pairs with the
    // producer's acquire load of tail, after which it may overwrite them.
    Atomics.store(this.#words, RING_TAIL / 4, (tail + n) | 0);
    return out;
  }
}
