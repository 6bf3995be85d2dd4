// LatencyHistogram: percentiles within the bucket precision, from recorded values only (no clock).
import { describe, expect, it } from 'vitest';
import { LatencyHistogram } from '../../src/client/index.js';

describe('LatencyHistogram', () => {
  it('is exact below 64 µs and an empty histogram reports zeros', () => {
    const h = new LatencyHistogram();
    expect(h.summary()).toMatchObject({ count: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 });
    for (let us = 1; us <= 50; us++) h.record(us / 1000);
    expect(h.percentile(50)).toBeCloseTo(0.025, 9);
    expect(h.percentile(100)).toBeCloseTo(0.05, 9);
    expect(h.percentile(0)).toBeCloseTo(0.001, 9);
  });

  it('reports p50 and p99 of a known distribution within 1/64 relative error', () => {
    const h = new LatencyHistogram();
    // 1 … 10000 ms in 0.5 ms steps, shuffled order does not matter.
    const values = Array.from({ length: 20_000 }, (_, i) => (i + 1) / 2);
    for (const v of values) h.record(v);
    const exact = (p: number): number => values[Math.ceil((p / 100) * values.length) - 1]!;
    for (const p of [50, 90, 99, 99.9]) {
      const got = h.percentile(p);
      expect(got).toBeGreaterThanOrEqual(exact(p));
      expect((got - exact(p)) / exact(p)).toBeLessThan(1 / 64);
    }
    expect(h.summary().meanMs).toBeCloseTo(5000.25, 6);
    expect(h.summary().maxMs).toBe(10_000);
  });

  it('merges, clamps negatives to 0 and survives huge values', () => {
    const a = new LatencyHistogram();
    const b = new LatencyHistogram();
    a.record(-5);
    a.record(1);
    b.record(1e12);
    b.record(2 ** 41 / 1000 - 0.001);
    a.merge(b);
    expect(a.count).toBe(4);
    expect(a.summary().minMs).toBe(0);
    expect(a.percentile(100)).toBe(1e12);
    expect(a.percentile(25)).toBe(0);
  });

  it('places values one below a power of two in the right bucket', () => {
    for (let k = 7; k <= 41; k++) {
      const h = new LatencyHistogram();
      const ms = (2 ** k - 1) / 1000;
      h.record(ms);
      h.record(ms);
      expect(h.percentile(50)).toBe(ms);
    }
  });
});
