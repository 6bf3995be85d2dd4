// The failure detector's decisions, with the time passed in: the configured timeout on a quiet link, a
// longer one after late heartbeats (and back once they leave the window), never past its ceiling, and
// none of the owner's own pauses counted as the peer's silence.
import { describe, expect, it } from 'vitest';
import { FailureDetector } from '../../src/index.js';

/** Heartbeats every `every` ms from `from` for `n` beats, the detector checked at each. */
function beats(d: FailureDetector, from: number, n: number, every = 100): number {
  let t = from;
  for (let i = 0; i < n; i++) {
    t += every;
    d.heard(t);
    expect(d.expired(t)).toBe(false);
  }
  return t;
}

describe('FailureDetector', () => {
  it('on a quiet link: the configured timeout, to the millisecond', () => {
    const d = new FailureDetector(600, 0, { checkEveryMs: 100 });
    const t = beats(d, 0, 50);
    expect(d.currentTimeoutMs).toBe(600);
    for (let at = t + 100; at <= t + 600; at += 100) expect(d.expired(at), `${at - t} ms of silence`).toBe(false);
    expect(d.expired(t + 601)).toBe(true);
    expect(d.silence(t + 601)).toBe(601);
  });

  it('expires once the silence passes the timeout', () => {
    const d = new FailureDetector(600, 0, { checkEveryMs: 100 });
    const t = beats(d, 0, 10);
    let at = t;
    while (!d.expired((at += 100))) expect(at - t).toBeLessThanOrEqual(600);
    expect(at - t).toBe(700);
  });

  it('after a heartbeat 400 ms late it waits twice that; the long gap leaves the window and the timeout comes back', () => {
    const d = new FailureDetector(600, 0, { checkEveryMs: 100 });
    let t = beats(d, 0, 20);
    // The owner kept checking while the peer's heartbeats stalled for 400 ms (a loaded peer).
    for (let k = 1; k <= 4; k++) expect(d.expired(t + k * 100)).toBe(false);
    t += 400;
    d.heard(t);
    expect(d.currentTimeoutMs).toBe(800);
    for (let k = 1; k <= 8; k++) expect(d.expired(t + k * 100), `${k * 100} ms`).toBe(false);
    expect(d.expired(t + 900)).toBe(true);
    // Regular heartbeats again: once WINDOW of them have come, the 400 ms gap is forgotten.
    const e = new FailureDetector(600, 0, { checkEveryMs: 100 });
    let u = beats(e, 0, 5);
    u += 400;
    e.heard(u);
    u = beats(e, u, FailureDetector.WINDOW - 1);
    expect(e.currentTimeoutMs).toBe(800);
    beats(e, u, 1);
    expect(e.currentTimeoutMs).toBe(600);
  });

  it('never waits longer than maxTimeoutMs, however late heartbeats have been', () => {
    const d = new FailureDetector(600, 0, { checkEveryMs: 100, maxTimeoutMs: 1500 });
    let t = beats(d, 0, 3);
    for (let k = 1; k <= 20; k++) d.expired(t + k * 100);
    t += 2000;
    d.heard(t);
    expect(d.currentTimeoutMs).toBe(1500);
    for (let k = 1; k <= 15; k++) expect(d.expired(t + k * 100)).toBe(false);
    expect(d.expired(t + 1600)).toBe(true);
    expect(new FailureDetector(600, 0).maxTimeoutMs).toBe(1800);
    expect(() => new FailureDetector(600, 0, { maxTimeoutMs: 500 })).toThrow(RangeError);
    expect(() => new FailureDetector(600, 0, { checkEveryMs: 0 })).toThrow(RangeError);
  });

  it("the owner's own pause is not the peer's silence: no expiry on the first check after it, expiry one timeout after it if the peer stays silent", () => {
    const d = new FailureDetector(600, 0, { checkEveryMs: 100 });
    const t = beats(d, 0, 10);
    // The owner was stopped for 5 s (SIGSTOP, a loaded host): its next check comes that late.
    const resumed = t + 5000;
    expect(d.expired(resumed)).toBe(false);
    // The peer is really gone: one timeout of checks on time after the resume, and it expires.
    let at = resumed;
    while (!d.expired((at += 100))) expect(at - resumed).toBeLessThan(1000);
    expect(at - resumed).toBeGreaterThan(400);
    // Without checkEveryMs the detector cannot tell, and counts all of it.
    const plain = new FailureDetector(600, 0);
    beats(plain, 0, 10);
    expect(plain.expired(resumed)).toBe(true);
  });
  it('during a grace (a clone) tolerates a silence up to graceMs; after endGrace the configured timeout, the clone\'s gaps forgotten', () => {
    const d = new FailureDetector(600, 0, { checkEveryMs: 100, graceMs: 10_000 });
    expect(d.inGrace).toBe(true);
    let t = beats(d, 0, 5);
    // The peer copies a large guest: 4 s of silence while the owner keeps checking.
    for (let at = t + 100; at <= t + 4000; at += 100) expect(d.expired(at), `${at - t} ms of silence in the grace`).toBe(false);
    t += 4000;
    d.heard(t);
    // ...and the grace holds to its end, not longer.
    for (let at = t + 100; at <= t + 10_000; at += 100) expect(d.expired(at)).toBe(false);
    expect(d.expired(t + 10_100)).toBe(true);

    const e = new FailureDetector(600, 0, { checkEveryMs: 100, graceMs: 10_000 });
    t = beats(e, 0, 5);
    t += 3000;
    for (let at = t - 2900; at <= t; at += 100) e.expired(at);
    e.heard(t); // a 3 s gap in the grace: without forgetting it the timeout would be 1.8 s after it
    e.endGrace();
    expect(e.inGrace).toBe(false);
    expect(e.currentTimeoutMs).toBe(600);
    t = beats(e, t, 3);
    for (let at = t + 100; at <= t + 600; at += 100) expect(e.expired(at)).toBe(false);
    expect(e.expired(t + 700)).toBe(true);
  });

  it('a grace shorter than the timeout changes nothing; a negative one is refused', () => {
    const d = new FailureDetector(600, 0, { checkEveryMs: 100, graceMs: 300 });
    const t = beats(d, 0, 5);
    expect(d.currentTimeoutMs).toBe(600);
    for (let at = t + 100; at <= t + 600; at += 100) expect(d.expired(at)).toBe(false);
    expect(d.expired(t + 700)).toBe(true);
    expect(() => new FailureDetector(600, 0, { graceMs: -1 })).toThrow(/graceMs/);
  });
});
