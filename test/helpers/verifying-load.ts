// A verifying load on a kvserver VM across an FT operation: request/response traffic whose every
// acknowledged write is checked against the store afterwards, plus a counter only `incr` moves (a lost
// or a doubled increment shows in its value).
import { expect } from 'vitest';
import { KvClient, LoadGenerator, verifyStore } from '../../src/index.js';

/** Starts both loads on `udpPort`; `progress()` counts what both had acknowledged, `verify()` stops and checks them, `stop()` only stops them. */
export function verifyingLoads(udpPort: number, retries: number) {
  const load = new LoadGenerator({ durationMs: 600_000, endpoints: [{ host: '127.0.0.1', port: udpPort }], clients: 2, setRatio: 0.6, keys: 50, timeoutMs: 150, retries, progressIntervalMs: 20 });
  const seen = { acknowledged: 0 };
  load.on('progress', (p) => (seen.acknowledged = p.acknowledged));
  const running = load.run();
  const counter = { done: false, acked: 0, sent: 0 };
  const c = new KvClient({ endpoints: [{ host: '127.0.0.1', port: udpPort }], timeoutMs: 150, retries });
  const counting = (async () => {
    await c.set('counter', '0');
    while (!counter.done) {
      counter.sent++;
      try {
        await c.incr('counter', 1);
        counter.acked++;
      } catch {
        // unanswered: applied once or not at all
      }
    }
  })();
  const progress = () => Math.min(counter.acked, seen.acknowledged);
  /** Stops both loads and checks every acknowledged write against the store, and the counter. */
  const verify = async () => {
    load.stop();
    counter.done = true;
    const result = await running;
    await counting;
    await c.close();
    expect(result.acknowledged).toBeGreaterThan(0);
    expect(result.violationCount).toBe(0);
    const check = new KvClient({ endpoints: [{ host: '127.0.0.1', port: udpPort }], timeoutMs: 200, retries: 20 });
    try {
      expect((await verifyStore(check, result.history)).violations).toEqual([]);
      const value = Number((await check.get('counter'))?.value.toString());
      expect(value).toBeGreaterThanOrEqual(counter.acked); // nothing acknowledged lost
      expect(value).toBeLessThanOrEqual(counter.sent); // nothing applied twice
    } finally {
      await check.close();
    }
  };
  /**
   * Stops both loads without checking (the VM is down: nothing serves to check against), at once: the
   * requests in flight are abandoned rather than retried against nobody.
   */
  const stop = async () => {
    load.abort();
    counter.done = true;
    await c.close();
    await running;
    await counting;
  };
  return { progress, verify, stop };
}
