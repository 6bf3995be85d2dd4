// Bytes per second over a sliding window, from monotonic timestamps the caller passes in (e.g.
// performance.now()). Pure: no timers and no clock of its own, so tests drive time by hand.

/**
 * A sliding-window rate. Amounts added at time t count until t + windowMs. Before a whole window
 * has passed since `startMs`, the rate is over the time elapsed so far, so it is right from the start.
 *
 * ```ts
 * const rate = new Rate(1000, performance.now());
 * rate.add(batch.byteLength, performance.now());
 * gauge.set(rate.perSecond(performance.now()));
 * ```
 */
export class Rate {
  /** Window length, ms. */
  readonly windowMs: number;
  readonly #startMs: number;
  /** Samples in time order; entries before #head have left the window and await compaction. */
  #times: number[] = [];
  #amounts: number[] = [];
  #head = 0;
  /** Sum of the amounts of the samples from #head on. */
  #inWindow = 0;
  #last: number;
  #total = 0;

  /**
   * @param windowMs window length in ms (> 0)
   * @param startMs when counting starts, on the same clock as later timestamps
   */
  constructor(windowMs: number, startMs: number) {
    if (!(windowMs > 0) || !Number.isFinite(windowMs)) throw new RangeError(`windowMs must be a positive number, got ${windowMs}`);
    if (!Number.isFinite(startMs)) throw new RangeError(`startMs must be a finite number, got ${startMs}`);
    this.windowMs = windowMs;
    this.#startMs = startMs;
    this.#last = startMs;
  }

  /** Everything ever added. */
  get total(): number {
    return this.#total;
  }

  /** A timestamp earlier than one already seen is taken as that one: the clock is meant to be monotonic. */
  #clamp(nowMs: number): number {
    if (nowMs > this.#last) this.#last = nowMs;
    return this.#last;
  }

  #expire(now: number): void {
    const cutoff = now - this.windowMs;
    while (this.#head < this.#times.length && this.#times[this.#head]! <= cutoff) {
      this.#inWindow -= this.#amounts[this.#head]!;
      this.#head++;
    }
    // Compact once the dead prefix is half the arrays, so that adds stay amortised O(1).
    if (this.#head > 64 && this.#head * 2 > this.#times.length) {
      this.#times = this.#times.slice(this.#head);
      this.#amounts = this.#amounts.slice(this.#head);
      this.#head = 0;
    }
    // Floating-point drift: an empty window sums to exactly zero.
    if (this.#head === this.#times.length) this.#inWindow = 0;
  }

  /** Counts `amount` (≥ 0) at `nowMs`. */
  add(amount: number, nowMs: number): void {
    if (!(amount >= 0) || !Number.isFinite(amount)) throw new RangeError(`amount must be a finite number ≥ 0, got ${amount}`);
    const now = this.#clamp(nowMs);
    this.#expire(now);
    this.#total += amount;
    if (amount === 0) return;
    const n = this.#times.length;
    // Several adds at one timestamp share a sample.
    if (n > this.#head && this.#times[n - 1] === now) this.#amounts[n - 1]! += amount;
    else {
      this.#times.push(now);
      this.#amounts.push(amount);
    }
    this.#inWindow += amount;
  }

  /** Amount counted in the window ending at `nowMs`. */
  inWindow(nowMs: number): number {
    this.#expire(this.#clamp(nowMs));
    return this.#inWindow;
  }

  /** Amount per second over the window ending at `nowMs` (over the time since start during the first window). */
  perSecond(nowMs: number): number {
    const now = this.#clamp(nowMs);
    this.#expire(now);
    const span = Math.min(this.windowMs, now - this.#startMs);
    if (span <= 0) return 0;
    return (this.#inWindow * 1000) / span;
  }
}
