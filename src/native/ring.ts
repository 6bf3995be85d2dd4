// The JS ends of the SPSC byte ring in native/log/ring.h (same offsets, same version): a reader for
// rings a native thread produces into, a writer for rings a native thread consumes. Neither blocks.
//
//   0          4                      64         68                    128                 128+cap
//   +----------+----------------------+----------+---------------------+-------------------+
//   | head u32 | version u32, cap u32 | tail u32 |      (padding)      |  data[cap]        |
//   +----------+----------------------+----------+---------------------+-------------------+
//     producer   written once at init   consumer                          cap = 2^k
//
// head and tail are free-running u32 counters (byte i of the stream is data[i & (cap - 1)]); the
// producer initialises the header before the consumer sees the buffer, then writes only head, and the
// consumer writes only tail.

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

  /** Bytes published and not yet read. */
  available(): number {
    // Atomics.load (seq_cst): pairs with the producer's release store of head in ByteRingProducer::push().
    const head = Atomics.load(this.#words, RING_HEAD / 4) >>> 0;
    const tail = Atomics.load(this.#words, RING_TAIL / 4) >>> 0;
    return (head - tail) >>> 0;
  }

  /** Copies out what was published so far, at most `max` bytes (empty array if nothing). */
  read(max: number = Infinity): Uint8Array {
    const n = Math.min(this.available(), max);
    const out = new Uint8Array(n);
    if (n > 0) this.readInto(out);
    return out;
  }

  /** Copies up to `dst.length` published bytes into `dst`; returns the count (0 if the ring is empty). */
  readInto(dst: Uint8Array): number {
    // Atomics.load is seq_cst: pairs with the producer's release store of head in ByteRingProducer::push(),
    // so the bytes before head are visible.
    const head = Atomics.load(this.#words, RING_HEAD / 4) >>> 0;
    const tail = Atomics.load(this.#words, RING_TAIL / 4) >>> 0;
    const n = Math.min((head - tail) >>> 0, dst.length);
    if (n === 0) return 0;
    const start = tail & this.#mask;
    const first = Math.min(n, this.#data.length - start);
    dst.set(this.#data.subarray(start, start + first), 0);
    if (first < n) dst.set(this.#data.subarray(0, n - first), first);
    // Atomics.store (seq_cst, so at least release): we are done reading these bytes; pairs with the
    // producer's acquire load of tail in ByteRingProducer::push(), after which it may overwrite them.
    Atomics.store(this.#words, RING_TAIL / 4, (tail + n) | 0);
    return n;
  }
}

/** Options of {@link ByteRingWriter}. */
export interface ByteRingWriterOptions {
  /** Where the u32 head and tail counters start (default 0); tests start near 2^32 to cross the wrap. */
  startIndex?: number;
}

/**
 * Produces into a ring that a native thread consumes (ByteRingConsumer in native/log/ring.h). One
 * writer per ring. The constructor initialises the header, so create the writer before handing the
 * buffer to the native consumer.
 */
export class ByteRingWriter {
  readonly #words: Int32Array;
  readonly #data: Uint8Array;
  readonly #mask: number;

  constructor(buffer: SharedArrayBuffer, options: ByteRingWriterOptions = {}) {
    const capacity = buffer.byteLength - RING_DATA;
    if (capacity < 64 || (capacity & (capacity - 1)) !== 0) {
      throw new RangeError(`ring buffer must be ${RING_DATA} + 2^k bytes (k >= 6), got ${buffer.byteLength}`);
    }
    const start = options.startIndex ?? 0;
    if (!Number.isInteger(start) || start < 0 || start > 0xffffffff) {
      throw new RangeError(`startIndex must be an integer from 0 to 2^32 - 1, got ${String(start)}`);
    }
    this.#words = new Int32Array(buffer, 0, RING_DATA / 4);
    this.#data = new Uint8Array(buffer, RING_DATA);
    this.#mask = capacity - 1;
    // The consumer is not running yet: starting it (a native call that starts its thread) orders
    // these stores before its first read, whatever their memory order.
    Atomics.store(this.#words, RING_HEAD / 4, start | 0);
    Atomics.store(this.#words, RING_TAIL / 4, start | 0);
    Atomics.store(this.#words, RING_VERSION / 4, RING_VERSION_VALUE);
    Atomics.store(this.#words, RING_CAPACITY / 4, capacity);
  }

  /** Bytes a write() would accept now (a lower bound: the consumer may free more meanwhile). */
  free(): number {
    const head = Atomics.load(this.#words, RING_HEAD / 4) >>> 0;
    // Atomics.load (seq_cst, so at least acquire): pairs with the consumer's release store of tail in
    // ByteRingConsumer::consume(): the bytes it released are no longer read, so we may overwrite them.
    const tail = Atomics.load(this.#words, RING_TAIL / 4) >>> 0;
    return this.#data.length - ((head - tail) >>> 0);
  }

  /** Copies as much of `bytes` as fits; returns the count (0 when the ring is full). */
  write(bytes: Uint8Array): number {
    const head = Atomics.load(this.#words, RING_HEAD / 4) >>> 0;  // only this writer stores head
    // Atomics.load (seq_cst, so at least acquire): pairs with the release store of tail in
    // ByteRingConsumer::consume(), as in free().
    const tail = Atomics.load(this.#words, RING_TAIL / 4) >>> 0;
    const n = Math.min(bytes.length, this.#data.length - ((head - tail) >>> 0));
    if (n === 0) return 0;
    const start = head & this.#mask;
    const first = Math.min(n, this.#data.length - start);
    this.#data.set(first === bytes.length ? bytes : bytes.subarray(0, first), start);
    if (first < n) this.#data.set(bytes.subarray(first, n), 0);
    // Atomics.store (seq_cst, so at least release): publishes the bytes copied above; pairs with the
    // acquire load of head in ByteRingConsumer::peek() / available().
    Atomics.store(this.#words, RING_HEAD / 4, (head + n) | 0);
    return n;
  }
}
