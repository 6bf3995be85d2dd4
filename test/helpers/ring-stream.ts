// The RingProbe's deterministic test stream and lane hash (mirrors test/native/ring_probe.cc), and
// the JS halves of a probe run: reading what a native producer sends, writing what a native consumer
// verifies. Shared by test/log/ring.test.ts and bench/src/ring.ts. Every loop is bounded in count.
import type { ByteRingReader, ByteRingWriter } from '../../src/native/ring.js';
import type { RingProbe } from './ring-probe.js';

/** Length of the repeating pattern (prime, just under 1 MiB): byte i of a stream is pattern[i % PATTERN_BYTES]. */
export const PATTERN_BYTES = 1048573;
/** Largest chunk a RingProbe accepts. */
export const MAX_CHUNK = 1 << 20;
const PATTERN_SALT = 0x9e3779b9;

/** xorshift32 as in ring_probe.cc; state must not be zero. Returns the next u32. */
export function xorshift32(state: { s: number }): number {
  let x = state.s;
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  state.s = x >>> 0;
  return state.s;
}

/** A PRNG over `seed ^ salt` (1 if that is zero). */
export function prng(seed: number, salt: number): () => number {
  const state = { s: (seed ^ salt) >>> 0 || 1 };
  return () => xorshift32(state);
}

/** The seed's pattern followed by its first `extra` bytes again, so chunks of up to `extra` bytes are contiguous. */
export function streamPattern(seed: number, extra: number): Uint8Array {
  const p = new Uint8Array(PATTERN_BYTES + extra);
  const next = prng(seed, PATTERN_SALT);
  for (let i = 0; i < PATTERN_BYTES; i += 4) {
    const w = next();
    for (let b = 0; b < 4 && i + b < PATTERN_BYTES; b++) p[i + b] = (w >>> (8 * b)) & 0xff;
  }
  for (let i = 0; i < extra; i++) p[PATTERN_BYTES + i] = p[i]!;
  return p;
}

const BASIS = 0x811c9dc5;
const PRIME = 16777619;
const LANES = 8;

/** The probe's lane hash (see LaneHash in ring_probe.cc): streaming, independent of how bytes are chunked. */
export class LaneHash {
  readonly #lanes = new Uint32Array(LANES);
  #word = 0; // bytes of the current word so far, little-endian
  #wordFill = 0;
  #lane = 0;
  #length = 0;

  constructor() {
    for (let i = 0; i < LANES; i++) this.#lanes[i] = (BASIS ^ i) >>> 0;
  }

  update(bytes: Uint8Array): void {
    const lanes = this.#lanes;
    let i = 0;
    const n = bytes.length;
    let lane = this.#lane;
    while (this.#wordFill !== 0 && i < n) {
      this.#word |= bytes[i++]! << (8 * this.#wordFill);
      if (++this.#wordFill === 4) {
        lanes[lane] = Math.imul(lanes[lane]! ^ this.#word, PRIME);
        lane = (lane + 1) & (LANES - 1);
        this.#word = 0;
        this.#wordFill = 0;
      }
    }
    for (; i + 4 <= n; i += 4) {
      const w = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
      lanes[lane] = Math.imul(lanes[lane]! ^ w, PRIME);
      lane = (lane + 1) & (LANES - 1);
    }
    for (; i < n; i++) this.#word |= bytes[i]! << (8 * this.#wordFill++);
    this.#lane = lane;
    this.#length += n;
  }

  digest(): number {
    const lanes = Uint32Array.from(this.#lanes);
    if (this.#wordFill) lanes[this.#lane] = Math.imul(lanes[this.#lane]! ^ this.#word, PRIME);
    let h = BASIS;
    for (const l of lanes) h = Math.imul(h ^ l, PRIME);
    h = Math.imul(h ^ (this.#length >>> 0), PRIME);
    h = Math.imul(h ^ Math.floor(this.#length / 2 ** 32), PRIME);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h >>> 0;
  }
}

/** The JS end of a probe's doorbell: ring() is the callback handed to RingProbe; wait() resolves at the next ring. */
export class Doorbell {
  #waiter: (() => void) | undefined;
  #rung = false;

  readonly ring = (): void => {
    const w = this.#waiter;
    this.#waiter = undefined;
    if (w) w();
    else this.#rung = true;
  };

  /** Resolves at the next ring (at once if it rang since the last wait): the caller re-checks the ring. */
  wait(): Promise<void> {
    if (this.#rung) {
      this.#rung = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => (this.#waiter = resolve));
  }
}

export interface JsEndResult {
  bytes: number;
  checksum: number;
  /** First stream offset where the bytes read differed from the stream, or -1 (reads only; -1 when not verifying). */
  mismatchAt: number;
  /** Times the JS end found the ring empty (reader) or full (writer) and waited for the doorbell. */
  sleeps: number;
  seconds: number;
}

export interface JsEndOptions {
  /** The stream's seed (as given to the probe). */
  seed: number;
  /** Largest read or write; each is 1..max bytes, random, unless `fixed`. */
  max: number;
  fixed?: boolean;
  /** Compare with the stream and hash (the default); off for throughput runs. */
  check?: boolean;
  /** Called once per sleep: a slow consumer can stall here. */
  onSleep?: () => Promise<void>;
  /** Called between reads or writes: a slow end can stall here. */
  pace?: () => Promise<void> | undefined;
}

/** Reads `total` bytes from a ring that `probe` produces into (after probe.produce()). */
export async function readFromProbe(probe: RingProbe, reader: ByteRingReader, bell: Doorbell, total: number, o: JsEndOptions): Promise<JsEndResult> {
  const check = o.check ?? true;
  const pattern = check ? streamPattern(o.seed, o.max) : undefined;
  const size = prng(o.seed, 0x1b873593);
  const buf = new Uint8Array(o.max);
  const hash = new LaneHash();
  let got = 0;
  let sleeps = 0;
  let mismatchAt = -1;
  const t0 = performance.now();
  // Each turn reads at least one byte or sleeps until the producer rang; 4 per byte is a generous cap.
  for (let turn = 0; got < total; turn++) {
    if (turn > 4 * total + 1000) throw new Error(`readFromProbe: no progress after ${turn} turns (${got}/${total} bytes)`);
    const want = Math.min(o.fixed ? o.max : 1 + (size() % o.max), total - got);
    const n = reader.readInto(buf.subarray(0, want));
    if (n === 0) {
      if (probe.done() && reader.available() === 0) break; // the producer stopped short
      sleeps++;
      await bell.wait();
      continue;
    }
    probe.kick(); // wakes the producer if it sleeps for space
    if (pattern) {
      const chunk = buf.subarray(0, n);
      const at = got % PATTERN_BYTES;
      if (mismatchAt < 0 && Buffer.compare(chunk, pattern.subarray(at, at + n)) !== 0) {
        let i = 0;
        while (chunk[i] === pattern[at + i]) i++;
        mismatchAt = got + i;
      }
      hash.update(chunk);
    }
    got += n;
    const p = o.pace?.();
    if (p) await p;
  }
  return { bytes: got, checksum: hash.digest(), mismatchAt, sleeps, seconds: (performance.now() - t0) / 1000 };
}

/** Writes the seed's stream, `total` bytes, into a ring that `probe` consumes (after probe.consume()). */
export async function writeToProbe(probe: RingProbe, writer: ByteRingWriter, bell: Doorbell, total: number, o: JsEndOptions): Promise<JsEndResult> {
  const check = o.check ?? true;
  const pattern = streamPattern(o.seed, o.max);
  const size = prng(o.seed, 0xe6546b64);
  const hash = new LaneHash();
  let sent = 0;
  let sleeps = 0;
  const t0 = performance.now();
  for (let turn = 0; sent < total; turn++) {
    if (turn > 4 * total + 1000) throw new Error(`writeToProbe: no progress after ${turn} turns (${sent}/${total} bytes)`);
    const c = Math.min(o.fixed ? o.max : 1 + (size() % o.max), total - sent);
    const at = sent % PATTERN_BYTES;
    const n = writer.write(pattern.subarray(at, at + c));
    if (n === 0) {
      if (probe.done()) break; // the consumer stopped short
      sleeps++;
      if (o.onSleep) await o.onSleep();
      await bell.wait();
      continue;
    }
    probe.kick(); // wakes the consumer if it sleeps for data
    if (check) hash.update(pattern.subarray(at, at + n));
    sent += n;
    const p = o.pace?.();
    if (p) await p;
  }
  return { bytes: sent, checksum: hash.digest(), mismatchAt: -1, sleeps, seconds: (performance.now() - t0) / 1000 };
}

/** Waits (on the doorbell, at most `maxRings` times) until the probe's run has finished. */
export async function probeFinished(probe: RingProbe, bell: Doorbell, maxRings = 1_000_000): Promise<void> {
  for (let i = 0; !probe.done(); i++) {
    if (i >= maxRings) throw new Error(`probe still running after ${maxRings} doorbells`);
    await bell.wait();
  }
}
