// The ClusterStore contract as one test suite, run against every implementation (dir-store.test.ts,
// etcd-store.test.ts): keys and revisions, CAS, watch order, liveness after SIGKILL, elections.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { OptionError } from '../../../src/errors.js';
import type { ClusterStore, JsonValue, WatchEvent } from '../../../src/cluster/store/store.js';
import type { ChildConfig } from './child.js';
import { TsChild } from './ts-child.js';

const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));

/** How a suite reaches one implementation. */
export interface ContractTarget {
  /** A new store instance over the same storage (several may be open at once). */
  open(): Promise<ClusterStore>;
  /** The `store` part of a child's config, reaching the same storage. */
  child(): ChildConfig['store'];
  /** Whether every change is delivered to watches (etcd), or changes of one key between polls may merge (dir). */
  exactWatch: boolean;
  /** TTL used for liveness keys and elections, ms (long enough that a loaded CI machine renews in time). */
  ttlMs: number;
}

/** Poll `check` until it returns a value other than undefined; bounded by `timeoutMs`. */
export async function eventually<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (let i = 0; ; i++) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms (${i + 1} checks)`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Register the contract's tests in the current describe block. */
export function storeContract(target: () => ContractTarget): void {
  let store: ClusterStore;
  let other: ClusterStore;
  let ns = 0;
  const children: TsChild[] = [];
  const fresh = () => `t${Date.now().toString(36)}${ns++}/`;

  beforeAll(async () => {
    store = await target().open();
    other = await target().open();
  });
  afterAll(async () => {
    await Promise.all(children.map((c) => c.kill()));
    await store?.close();
    await other?.close();
  });

  function spawnChild(role: ChildConfig['role'], name: string, id: string): TsChild {
    const cfg: ChildConfig = { store: target().child(), role, name, id, ttlMs: target().ttlMs };
    const c = new TsChild(CHILD, [JSON.stringify(cfg)]);
    children.push(c);
    return c;
  }

  it('put, get, list and delete keep values and revisions', async () => {
    const p = fresh();
    const value: JsonValue = { host: 'h1', mips: 1200.5, tags: ['a', 'b'], nested: { ok: true, none: null } };
    expect(await store.get(`${p}a`)).toBeNull();
    const r1 = await store.put(`${p}a`, value);
    expect(r1).toBeGreaterThan(0);
    expect(await other.get(`${p}a`)).toEqual({ key: `${p}a`, value, revision: r1, createRevision: r1 });
    const r2 = await store.put(`${p}a`, 'second');
    expect(r2).toBeGreaterThan(r1);
    expect(await store.get(`${p}a`)).toEqual({ key: `${p}a`, value: 'second', revision: r2, createRevision: r1 });
    await store.put(`${p}c`, 3);
    await store.put(`${p}b`, [2]);
    await store.put(`${p}b/x`, false);
    await store.put(`other-${p}`, 'outside');
    expect((await other.list(p)).map((e) => [e.key, e.value])).toEqual([
      [`${p}a`, 'second'],
      [`${p}b`, [2]],
      [`${p}b/x`, false],
      [`${p}c`, 3],
    ]);
    expect((await store.list(`${p}b`)).map((e) => e.key)).toEqual([`${p}b`, `${p}b/x`]);
    expect((await store.list('')).some((e) => e.key === `other-${p}`)).toBe(true);
    expect(await store.delete(`${p}a`)).toBe(true);
    expect(await store.delete(`${p}a`)).toBe(false);
    expect(await other.get(`${p}a`)).toBeNull();
    const r3 = await store.put(`${p}a`, 'again');
    expect(await store.get(`${p}a`)).toMatchObject({ revision: r3, createRevision: r3 });
  });

  it('rejects keys and values it cannot keep exactly', async () => {
    for (const key of ['', 'x'.repeat(201), 'tab\there', 'nul\0']) await expect(store.put(key, 1)).rejects.toBeInstanceOf(OptionError);
    for (const value of [undefined, Number.NaN, Infinity, () => 1, { a: 1n }, new Date(0), [1, undefined]]) {
      await expect(store.put('k', value as unknown as JsonValue)).rejects.toMatchObject({ code: 'ERR_LOCKSTEP_OPTION_INVALID', field: 'value' });
    }
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await expect(store.put('k', cyclic as JsonValue)).rejects.toBeInstanceOf(OptionError);
  });

  it('compareAndSet: null means "absent", a revision means "unchanged since"', async () => {
    const k = `${fresh()}cas`;
    expect(await store.compareAndSet(k, null, 1)).toBe(true);
    expect(await other.compareAndSet(k, null, 2)).toBe(false);
    const e1 = (await store.get(k))!;
    expect(e1.value).toBe(1);
    expect(await other.compareAndSet(k, e1.revision + 1000, 3)).toBe(false);
    expect(await other.compareAndSet(k, e1.revision, 4)).toBe(true);
    expect(await store.compareAndSet(k, e1.revision, 5)).toBe(false);
    expect((await store.get(k))!.value).toBe(4);
    const e2 = (await store.get(k))!;
    await store.delete(k);
    expect(await store.compareAndSet(k, e2.revision, 6)).toBe(false);
    expect(await store.compareAndSet(k, null, 7)).toBe(true);
  });

  it('of concurrent compareAndSets with the same expected revision exactly one succeeds', async () => {
    const k = `${fresh()}race`;
    await store.put(k, 0);
    for (let round = 0; round < 20; round++) {
      const { revision } = (await store.get(k))!;
      const results = await Promise.all([store, other, store, other].map((s, i) => s.compareAndSet(k, revision, `${round}:${i}`)));
      expect(results.filter(Boolean), `round ${round}`).toHaveLength(1);
    }
  });

  it('watch delivers the changes under its prefix in revision order, and nothing after unsubscribe', async () => {
    const p = fresh();
    const events: WatchEvent[] = [];
    const errors: Error[] = [];
    await store.put(`${p}before`, 'old');
    const stop = await other.watch(p, (e) => events.push(e), { onError: (e) => errors.push(e) });
    const everything: WatchEvent[] = [];
    const stopEverything = await store.watch('', (e) => everything.push(e), { onError: (e) => errors.push(e) });
    const writes: Array<() => Promise<unknown>> = [
      () => store.put(`${p}a`, 1),
      () => store.put(`${p}b`, 2),
      () => store.put(`x${p}`, 'outside the prefix'),
      () => store.put(`${p}a`, 3),
      () => store.delete(`${p}before`),
      () => store.put(`${p}c`, { n: 4 }),
      () => store.delete(`${p}b`),
    ];
    for (const w of writes) await w();
    const finalRev = await store.put(`${p}z`, 'last');
    await eventually('the last write is seen by the watch', 10_000, () => (events.some((e) => e.revision === finalRev) ? true : undefined));
    await eventually('the last write is seen by the watch of all keys', 10_000, () => (everything.some((e) => e.revision === finalRev) ? true : undefined));
    await stopEverything();
    expect(everything.some((e) => e.key === `x${p}` && e.type === 'put')).toBe(true);
    expect(errors).toEqual([]);
    for (let i = 1; i < events.length; i++) expect(events[i]!.revision).toBeGreaterThanOrEqual(events[i - 1]!.revision);
    expect(events.every((e) => e.key.startsWith(p))).toBe(true);
    // Replaying the events over the state at subscription gives the state now.
    const state = new Map<string, JsonValue>([[`${p}before`, 'old']]);
    for (const e of events) (e.type === 'put' ? state.set(e.key, e.value!) : state.delete(e.key));
    expect([...state].sort()).toEqual((await store.list(p)).map((e) => [e.key, e.value]));
    if (target().exactWatch) {
      expect(events.map((e) => `${e.type} ${e.key.slice(p.length)}`)).toEqual(['put a', 'put b', 'put a', 'delete before', 'put c', 'delete b', 'put z']);
    }
    await stop();
    const count = events.length;
    await store.put(`${p}after`, 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(events).toHaveLength(count);
  });

  it('a liveness key lives while its owner lives, and vanishes (with a delete event) after its TTL once the owner is SIGKILLed', async () => {
    const key = `${fresh()}live/agent`;
    const events: WatchEvent[] = [];
    const stop = await store.watch(key, (e) => events.push(e));
    const child = spawnChild('register', key, 'agent-1');
    await child.next((m) => m.event === 'registered', 120_000);
    expect((await store.get(key))?.value).toMatchObject({ owner: 'agent-1', pid: child.process.pid });
    // Renewals keep it past its TTL.
    await new Promise((r) => setTimeout(r, target().ttlMs * 1.5));
    expect(await store.get(key)).not.toBeNull();
    await child.kill();
    await eventually('the key is gone', target().ttlMs + 10_000, async () => ((await store.get(key)) === null ? true : undefined));
    await eventually('a delete event', 10_000, () => (events.some((e) => e.type === 'delete' && e.key === key) ? true : undefined));
    await stop();
  });

  it('a liveness key held in-process reports its deadline and is deleted by revoke', async () => {
    const key = `${fresh()}live/self`;
    const h = await store.register(key, { me: 1 }, target().ttlMs);
    expect(h.held).toBe(true);
    expect(h.token).not.toBe('');
    expect(h.deadline).toBeGreaterThan(performance.now());
    await new Promise((r) => setTimeout(r, target().ttlMs * 1.5));
    expect(h.held).toBe(true);
    expect((await other.get(key))?.value).toEqual({ me: 1 });
    await h.revoke();
    expect(h.held).toBe(false);
    expect(await other.get(key)).toBeNull();
  });

  it('two campaigners in separate processes: exactly one leads; when it is SIGKILLed the other takes over with a higher token', async () => {
    const election = `e${fresh().slice(0, -1)}`;
    const a = spawnChild('campaign', election, 'cand-a');
    const b = spawnChild('campaign', election, 'cand-b');
    await Promise.all([a.next((m) => m.event === 'campaigning', 120_000), b.next((m) => m.event === 'campaigning', 120_000)]);
    const elected = (m: { event: string }) => m.event === 'elected';
    const firstMessage = await Promise.race([a, b].map((c) => c.waitSeen(elected, 60_000)));
    const leader = a.seen(elected) === firstMessage ? a : b;
    const follower = leader === a ? b : a;
    const leaderId = leader === a ? 'cand-a' : 'cand-b';
    const firstToken = firstMessage.token as number;
    const info = await eventually('the store names the leader', 30_000, async () => (await store.leader(election)) ?? undefined);
    expect(info).toEqual({ candidateId: leaderId, token: firstToken });
    // The follower stays a follower while the leader lives (past the TTL).
    await new Promise((r) => setTimeout(r, target().ttlMs * 1.5));
    expect(follower.seen(elected)).toBeUndefined();
    expect(leader.seen((m) => m.event === 'lost')).toBeUndefined();
    await leader.kill();
    const next = await follower.waitSeen(elected, target().ttlMs + 60_000);
    expect(next.token as number).toBeGreaterThan(firstToken);
    const after = await eventually('the store names the new leader', 30_000, async () => {
      const l = await store.leader(election);
      return l?.candidateId === (leaderId === 'cand-a' ? 'cand-b' : 'cand-a') ? l : undefined;
    });
    expect(after.token).toBe(next.token);
  });

  it('a leader that resigns hands over at once; isLeader and the token follow', async () => {
    const election = `r${fresh().slice(0, -1)}`;
    const l1 = await store.campaign(election, 'one', { ttlMs: 30_000 });
    const t1 = await l1.elected(10_000);
    expect(l1.isLeader).toBe(true);
    expect(l1.token).toBe(t1);
    const l2 = await other.campaign(election, 'two', { ttlMs: 30_000 });
    await new Promise((r) => setTimeout(r, 300));
    expect(l2.isLeader).toBe(false);
    expect(l2.token).toBeNull();
    await l1.resign();
    expect(l1.isLeader).toBe(false);
    // Well before the 30 s TTL: resigning deletes the leadership record.
    const t2 = await l2.elected(10_000);
    expect(t2).toBeGreaterThan(t1);
    expect(await store.leader(election)).toEqual({ candidateId: 'two', token: t2 });
    await l2.resign();
  });

  it('a closed store refuses operations with ERR_LOCKSTEP_STORE_CLOSED', async () => {
    const s = await target().open();
    await s.close();
    await expect(s.get('k')).rejects.toMatchObject({ code: 'ERR_LOCKSTEP_STORE_CLOSED' });
  });
}
