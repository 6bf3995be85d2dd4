// The load generator: exact verification under concurrency, loss and fail-over; a stale-read bug
// is caught and a correct server is not flagged; acknowledged writes are all present afterwards.
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { KvClient, LoadGenerator, verifyStore, type LoadOptions, type LoadProgress, type LoadResult } from '../../src/client/index.js';
import { FakeMemcached, type FakeServerOptions } from './fake-server.js';
import { memcachedMissing, startMemcached } from './memcached.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function fake(options?: FakeServerOptions): Promise<FakeMemcached> {
  const s = await FakeMemcached.start(options);
  cleanups.push(() => s.close());
  return s;
}

// Short back-off keeps lossy runs quick; time-outs stay long enough that a loaded machine adds no retries.
const fast: Partial<LoadOptions> = { timeoutMs: 100, retries: 4, backoff: { initialMs: 1, maxMs: 4 } };

/** Every key's value in the fake store is the value of its last acknowledged write or of a write that failed. */
function expectAcknowledgedWritesPresent(s: FakeMemcached, result: LoadResult): void {
  const lastAcked = new Map<string, string>();
  for (const w of result.acknowledgedWrites) lastAcked.set(w.key, w.value);
  for (const [key] of lastAcked) {
    const { values } = result.history.allowedNow(key);
    const stored = s.store.get(key)?.value.toString('latin1');
    expect(stored, key).toBeDefined();
    expect(values, key).toContain(stored);
  }
}

describe('LoadGenerator', () => {
  it('does not flag a correct server under concurrent writers of the same keys', async () => {
    const s = await fake();
    const progress: LoadProgress[] = [];
    const gen = new LoadGenerator({ endpoints: [s.endpoint], clients: 8, keys: 5, requests: 2000, setRatio: 0.5, valueSize: { min: 24, max: 200 }, seed: 7, progressIntervalMs: 5, ...fast });
    gen.on('progress', (p) => progress.push(p));
    const result = await gen.run();
    expect(result.violations).toEqual([]);
    expect(result.violationCount).toBe(0);
    expect(result.sent).toBe(2000);
    expect(result.acknowledged).toBe(2000);
    expect(result.failed).toBe(0);
    expect(result.sets + result.gets).toBe(2000);
    expect(result.sets).toBeGreaterThan(800);
    expect(result.hits).toBeGreaterThan(0);
    expect(result.acknowledgedWrites).toHaveLength(result.sets);
    expect(result.latency.count).toBe(2000);
    expect(result.latency.p50Ms).toBeLessThanOrEqual(result.latency.p99Ms);
    expect(result.latency.p99Ms).toBeLessThanOrEqual(result.latency.maxMs);
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(progress.at(-1)!.sent).toBe(2000);
    expect(s.applied).toBe(result.sets);
    expectAcknowledgedWritesPresent(s, result);
    const check = new KvClient({ endpoints: [s.endpoint] });
    cleanups.push(() => check.close());
    expect(await verifyStore(check, result.history)).toEqual({ keys: 5, violations: [] });
  });

  it('catches a server that returns stale values', async () => {
    let reads = 0;
    // Every third read of a key that has been overwritten answers with the previous value.
    const s = await fake({ staleReads: () => ++reads % 3 === 0 });
    const violations: unknown[] = [];
    const gen = new LoadGenerator({ endpoints: [s.endpoint], clients: 1, keys: 3, requests: 300, seed: 3, ...fast });
    gen.on('violation', (v) => violations.push(v));
    const result = await gen.run();
    expect(result.violationCount).toBeGreaterThan(5);
    expect(violations).toHaveLength(result.violationCount);
    expect(result.violations[0]).toMatchObject({ kind: 'stale' });
    expect(result.violations[0]!.message).toMatch(/overwritten by a later acknowledged write/);
    expect(result.violations[0]!.allowed).not.toContain(result.violations[0]!.got);
  });

  it('catches stale values under concurrency too', async () => {
    let reads = 0;
    const s = await fake({ staleReads: () => ++reads % 4 === 0 });
    const result = await new LoadGenerator({ endpoints: [s.endpoint], clients: 6, keys: 4, requests: 1200, seed: 5, ...fast }).run();
    expect(result.violationCount).toBeGreaterThan(0);
    expect(result.violations.every((v) => v.kind === 'stale')).toBe(true);
  });

  it('catches lost writes and values the generator never wrote', async () => {
    let gets = 0;
    const s = await fake({
      rewrite: (_id, command, reply) => {
        if (!command.startsWith('get ')) return undefined;
        gets++;
        if (gets % 10 === 0) return Buffer.from('END\r\n'); // the key vanished
        if (gets % 10 === 5) return Buffer.from(`VALUE ${command.slice(4)} 0 24\r\n${'z'.repeat(24)}\r\nEND\r\n`);
        return reply;
      },
    });
    const result = await new LoadGenerator({ endpoints: [s.endpoint], clients: 2, keys: 2, requests: 400, seed: 9, ...fast }).run();
    const kinds = new Set(result.violations.map((v) => v.kind));
    expect(kinds).toContain('lost');
    expect(kinds).toContain('unknown-value');
  });

  it('stays exact under request and reply loss: retries are counted, nothing is flagged, acknowledged writes are present', async () => {
    // Deterministic loss: about one request in 7 and one reply in 11 vanish.
    const s = await fake({ dropRequest: (n) => n % 7 === 3, dropReply: (n) => n % 11 === 5 });
    const result = await new LoadGenerator({ endpoints: [s.endpoint], clients: 4, keys: 6, requests: 400, seed: 11, ...fast }).run();
    expect(result.violations).toEqual([]);
    expect(result.retries).toBeGreaterThan(30);
    expect(result.clientCounters.retries).toBe(result.retries);
    expect(result.failed).toBe(0);
    expect(result.acknowledged).toBe(400);
    expect(s.replays).toBeGreaterThan(0);
    expect(s.applied).toBe(result.sets); // the reply cache kept every retried set to one application
    expectAcknowledgedWritesPresent(s, result);
  });

  it('checks every increment exactly once: none applied twice through a deduplicating server under reply loss', async () => {
    const s = await fake({ dropReply: (n) => n % 5 === 2 });
    const result = await new LoadGenerator({ endpoints: [s.endpoint], clients: 4, requests: 400, incrRatio: 1, seed: 3, ...fast }).run();
    expect(result.increments).toEqual({ acknowledged: 396, failed: 0, appliedTwice: 0, lost: 0, unverified: 0 }); // 4 requests set the counters
    expect(result.retries).toBeGreaterThan(40);
    const counters = [...s.store.entries()].filter(([k]) => /ctr\d$/.test(k)).map(([, e]) => Number(e.value.toString()));
    expect(counters).toHaveLength(4);
    expect(counters.reduce((x, y) => x + y, 0)).toBe(396);
  });

  it('counts increments a server applies twice, and increments it loses', async () => {
    const twice = await fake({ dedup: false, dropReply: (n) => n % 5 === 2 });
    const a = await new LoadGenerator({ endpoints: [twice.endpoint], clients: 2, requests: 100, incrRatio: 1, seed: 3, ...fast }).run();
    expect(a.increments.appliedTwice).toBeGreaterThan(0);
    expect(a.increments.lost).toBe(0);
    // A server that forgets: every 10th increment answers one less than it should.
    let incrs = 0;
    const forgets = await fake({ rewrite: (_id, command, reply) => (command.startsWith('incr') && ++incrs % 10 === 0 ? Buffer.from(`${BigInt(reply.toString().trim()) - 1n}\r\n`) : reply) });
    const b = await new LoadGenerator({ endpoints: [forgets.endpoint], clients: 1, requests: 50, incrRatio: 1, seed: 3, ...fast }).run();
    expect(b.increments.lost).toBeGreaterThan(0);
  });

  it('fails over to a live endpoint when the first one is dead', async () => {
    const dead = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => dead.bind(0, '127.0.0.1', () => resolve()));
    cleanups.push(() => new Promise((resolve) => dead.close(() => resolve())));
    const s = await fake();
    const result = await new LoadGenerator({ endpoints: [{ host: '127.0.0.1', port: dead.address().port }, s.endpoint], clients: 3, keys: 4, requests: 90, ...fast }).run();
    expect(result.violations).toEqual([]);
    expect(result.acknowledged).toBe(90);
    expect(result.clientCounters.failovers).toBe(3); // once per logical client, then it stays on the live endpoint
  });

  it('counts failed requests by code when the server is gone, and keeps their writes as possibly applied', async () => {
    const s = await fake({ dropRequest: (n) => n >= 10 });
    const result = await new LoadGenerator({ endpoints: [s.endpoint], clients: 2, keys: 2, requests: 16, setRatio: 1, timeoutMs: 100, retries: 1, backoff: { initialMs: 1, maxMs: 1 } }).run();
    expect(result.acknowledged).toBe(10);
    expect(result.failed).toBe(6);
    expect(result.errors).toEqual({ ERR_LOCKSTEP_CLIENT_TIMEOUT: 6 });
    expect(result.latency.count).toBe(16);
  });

  it('ends a timed run and stops early on stop()', async () => {
    const s = await fake();
    const timed = await new LoadGenerator({ endpoints: [s.endpoint], clients: 2, durationMs: 50 }).run();
    expect(timed.sent).toBeGreaterThan(0);
    expect(timed.acknowledged).toBe(timed.sent);
    const gen = new LoadGenerator({ endpoints: [s.endpoint], clients: 2, durationMs: 60_000, progressIntervalMs: 5 });
    gen.once('progress', () => gen.stop());
    const stopped = await gen.run();
    expect(stopped.sent).toBeGreaterThan(0);
    expect(stopped.violationCount).toBe(0);
    // A second run of the same generator continues its history: the first run's values are known.
    gen.once('progress', () => gen.stop());
    const again = await gen.run();
    expect(again.sent).toBeGreaterThan(0);
    expect(again.violationCount).toBe(0);
    expect(again.history).toBe(stopped.history);
  });

  it('abort() ends a run whose server stopped answering without waiting out the retries: the requests in flight fail as closed', async () => {
    const s = await fake({ dropRequest: (n) => n >= 10 });
    // Against a silent server each request would retry for an hour: only abort() can end this run.
    const gen = new LoadGenerator({ endpoints: [s.endpoint], clients: 2, keys: 2, durationMs: 600_000, setRatio: 1, timeoutMs: 60_000, retries: 60, progressIntervalMs: 5 });
    gen.on('progress', (p) => {
      if (p.acknowledged >= 10) gen.abort();
    });
    const result = await gen.run();
    expect(result.acknowledged).toBe(10);
    expect(result.failed).toBe(2);
    expect(result.errors).toEqual({ ERR_LOCKSTEP_CLIENT_CLOSED: 2 });
  });

  it('ratePerSecond paces the run: request n is never sent before its slot, n / rate seconds in', async () => {
    const s = await fake();
    const t0 = performance.now();
    const r = await new LoadGenerator({ endpoints: [s.endpoint], clients: 4, requests: 40, ratePerSecond: 400, ...fast }).run();
    expect(r.acknowledged).toBe(40);
    // A lower bound only (a loaded machine may send late, never early): slot n is at n × 2.5 ms.
    // The first arrival of each request (a retry on a loaded machine repeats its id).
    const first = new Map<string, number>();
    for (const x of s.received) if (!first.has(`${x.from}/${x.requestId}`)) first.set(`${x.from}/${x.requestId}`, x.at - t0);
    const sentAt = [...first.values()].sort((a, b) => a - b);
    expect(sentAt.length).toBe(40);
    sentAt.forEach((at, n) => expect(at, `request ${n}`).toBeGreaterThanOrEqual(n * 2.5));
  });

  it('refuses options that cannot work, naming the field', () => {
    const e = [{ host: '127.0.0.1', port: 1 }];
    const bad: [LoadOptions, string][] = [
      [{ endpoints: e }, 'durationMs'],
      [{ endpoints: e, requests: 1, valueSize: 8 }, 'valueSize.min'],
      [{ endpoints: e, requests: 1, valueSize: 1390 }, 'valueSize'],
      [{ endpoints: e, requests: 1, setRatio: 2 }, 'setRatio'],
      [{ endpoints: e, requests: 1, keyPrefix: 'a b' }, 'keyPrefix'],
      [{ endpoints: [], requests: 1 }, 'endpoints'],
      [{ endpoints: e, requests: 1, ratePerSecond: 0 }, 'ratePerSecond'],
      [{ endpoints: e, requests: 1, ratePerSecond: Number.NaN }, 'ratePerSecond'],
    ];
    for (const [options, field] of bad) {
      let err: unknown;
      try {
        new LoadGenerator(options);
      } catch (x) {
        err = x;
      }
      expect(err, field).toMatchObject({ code: 'ERR_LOCKSTEP_OPTION_INVALID', field });
    }
  });
});

const missing = memcachedMissing();
describe.skipIf(missing !== undefined)('LoadGenerator against real memcached', () => {
  it('verifies a concurrent run with no violations and every acknowledged write present', async () => {
    const mc = await startMemcached();
    cleanups.push(() => mc.stop());
    const endpoints = [{ host: '127.0.0.1', port: mc.port }];
    const result = await new LoadGenerator({ endpoints, clients: 8, keys: 20, requests: 3000, valueSize: { min: 24, max: 1000 }, seed: 2, timeoutMs: 200 }).run();
    expect(result.violations).toEqual([]);
    expect(result.failed).toBe(0);
    expect(result.acknowledged).toBe(3000);
    const check = new KvClient({ endpoints });
    cleanups.push(() => check.close());
    const verified = await verifyStore(check, result.history);
    expect(verified).toEqual({ keys: 20, violations: [] });
  });
});
