// Latency histogram with bounded relative error (log-linear buckets, like HdrHistogram): constant
// memory, O(1) record, mergeable. Holds durations only; it never reads a clock.

/** Sub-buckets per power of two: the relative error of a reported percentile is below 1/64. */
const SUB_BUCKET_BITS = 6;
const SUB_BUCKETS = 1 << SUB_BUCKET_BITS;
/** Unit of recording: one microsecond. */
const UNITS_PER_MS = 1000;
/** Values above 2^40 µs (about 12.7 days) are clamped. */
const MAX_EXPONENT = 40;
const BUCKET_COUNT = (MAX_EXPONENT - SUB_BUCKET_BITS + 2) * SUB_BUCKETS;

function indexOf(units: number): number {
  if (units < SUB_BUCKETS) return units;
  // Exponent e ≥ 0: units in [2^(e+6), 2^(e+7)) map to 64 linear sub-buckets of width 2^e.
  let e = Math.floor(Math.log2(units)) - SUB_BUCKET_BITS;
  // log2 of 2^k - 1 can round up to k; settle e with exact power-of-two comparisons.
  while (e > 0 && units < 2 ** (e + SUB_BUCKET_BITS)) e--;
  while (units >= 2 ** (e + SUB_BUCKET_BITS + 1)) e++;
  e = Math.min(e, MAX_EXPONENT - SUB_BUCKET_BITS);
  const sub = Math.min(Math.floor(units / 2 ** e) - SUB_BUCKETS, SUB_BUCKETS - 1);
  return (e + 1) * SUB_BUCKETS + sub;
}

/** Upper edge (in units) of bucket `index`: what a percentile landing in it reports. */
function upperOf(index: number): number {
  if (index < SUB_BUCKETS) return index;
  const e = Math.floor(index / SUB_BUCKETS) - 1;
  const sub = index % SUB_BUCKETS;
  return (SUB_BUCKETS + sub + 1) * 2 ** e - 1;
}

/** Summary of a histogram, in milliseconds. */
export interface LatencySummary {
  count: number;
  minMs: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

/** A histogram of durations in milliseconds, recorded at microsecond resolution. */
export class LatencyHistogram {
  readonly #counts = new Float64Array(BUCKET_COUNT);
  #count = 0;
  #sumMs = 0;
  #minMs = Infinity;
  #maxMs = 0;

  /** Records one duration (negative values count as 0). */
  record(ms: number): void {
    const v = Number.isFinite(ms) && ms > 0 ? ms : 0;
    const i = indexOf(Math.round(v * UNITS_PER_MS));
    this.#counts[i]! += 1;
    this.#count++;
    this.#sumMs += v;
    if (v < this.#minMs) this.#minMs = v;
    if (v > this.#maxMs) this.#maxMs = v;
  }

  /** Adds every recording of `other`. */
  merge(other: LatencyHistogram): void {
    for (let i = 0; i < BUCKET_COUNT; i++) this.#counts[i]! += other.#counts[i]!;
    this.#count += other.#count;
    this.#sumMs += other.#sumMs;
    this.#minMs = Math.min(this.#minMs, other.#minMs);
    this.#maxMs = Math.max(this.#maxMs, other.#maxMs);
  }

  /** Number of recordings. */
  get count(): number {
    return this.#count;
  }

  /**
   * The smallest recorded duration d such that at least `p` percent of recordings are ≤ d, to within
   * the bucket's width (under 1/64 relative, exact below 64 µs) and never above the maximum. 0 when empty.
   */
  percentile(p: number): number {
    if (this.#count === 0) return 0;
    const rank = Math.max(1, Math.ceil((Math.min(100, Math.max(0, p)) / 100) * this.#count));
    if (rank >= this.#count) return this.#maxMs;
    let seen = 0;
    for (let i = 0; i < BUCKET_COUNT - 1; i++) {
      seen += this.#counts[i]!;
      if (seen >= rank) return Math.min(this.#maxMs, Math.max(this.#minMs, upperOf(i) / UNITS_PER_MS));
    }
    return this.#maxMs; // the last bucket also holds every clamped value
  }

  /** Count, min, mean, p50, p90, p99, p99.9 and max. */
  summary(): LatencySummary {
    return {
      count: this.#count,
      minMs: this.#count === 0 ? 0 : this.#minMs,
      meanMs: this.#count === 0 ? 0 : this.#sumMs / this.#count,
      p50Ms: this.percentile(50),
      p90Ms: this.percentile(90),
      p99Ms: this.percentile(99),
      p999Ms: this.percentile(99.9),
      maxMs: this.#maxMs,
    };
  }
}
