// The sliding-window rate, driven by hand-made timestamps.
import { describe, expect, it } from 'vitest';
import { Rate } from '../../src/observability/rate.js';

describe('Rate', () => {
  it('is the amount in the last window per second once a window has passed', () => {
    const r = new Rate(1000, 0);
    for (let t = 0; t < 3000; t += 10) r.add(1250, t); // 125 000 bytes/s
    expect(r.perSecond(2990)).toBe(125_000);
    expect(r.inWindow(2990)).toBe(125_000);
    expect(r.total).toBe(300 * 1250);
  });

  it('is right during the first window: over the time elapsed since start', () => {
    const r = new Rate(1000, 500);
    expect(r.perSecond(500)).toBe(0);
    r.add(100, 550);
    r.add(100, 600);
    expect(r.perSecond(600)).toBe(2000); // 200 bytes in 100 ms
    expect(r.perSecond(1000)).toBe(400); // 200 bytes in 500 ms
  });

  it('lets an amount count until exactly one window after it was added', () => {
    const r = new Rate(1000, 0);
    r.add(500, 1000);
    expect(r.inWindow(1999)).toBe(500);
    expect(r.inWindow(2000)).toBe(0);
    expect(r.perSecond(2000)).toBe(0);
  });

  it('follows a change of pace within one window', () => {
    const r = new Rate(1000, 0);
    for (let t = 0; t <= 1000; t += 100) r.add(1000, t); // 10 000 bytes/s
    expect(r.perSecond(1000)).toBe(10_000);
    // Silence from 1000 on: the rate falls as old samples leave.
    expect(r.perSecond(1500)).toBe(5_000);
    expect(r.perSecond(1999)).toBe(1_000);
    expect(r.perSecond(2000)).toBe(0);
  });

  it('takes a timestamp that goes backwards as the latest one', () => {
    const r = new Rate(1000, 0);
    r.add(100, 1500);
    r.add(100, 1200); // counted at 1500
    expect(r.inWindow(2499)).toBe(200);
    expect(r.inWindow(1000)).toBe(200); // still 2499
    expect(r.inWindow(2500)).toBe(0);
  });

  it('stays exact over many samples (compaction) and with zero amounts', () => {
    const r = new Rate(100, 0);
    for (let t = 1; t <= 100_000; t++) r.add(t % 2 === 0 ? 3 : 0, t);
    // The window (99 900, 100 000] holds 50 even timestamps of 3 bytes.
    expect(r.inWindow(100_000)).toBe(150);
    expect(r.perSecond(100_000)).toBe(1500);
  });

  it('refuses nonsense', () => {
    expect(() => new Rate(0, 0)).toThrow(RangeError);
    expect(() => new Rate(1000, NaN)).toThrow(RangeError);
    expect(() => new Rate(1000, 0).add(-1, 1)).toThrow(RangeError);
  });
});
