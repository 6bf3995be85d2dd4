// The pre-copy engine (native/runner/precopy.cc). Alone, over a plain memory whose guest is the test or a
// native stand-in for the vCPU (PrecopyProbe of the test-only addon): which pages a round sends, the page
// records' form, the end of a round however fast pages are dirtied, a stop mid-round. Then through a
// Machine (the replication port): rounds while the guest runs plus a final copy rebuild its state, a round
// finishes on a guest idle in WFI, and a run that stops, ends or is closed mid-round settles the round.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { afterEach, describe, expect, it } from 'vitest';
import { Machine } from '../../src/index.js';
import { parseElf } from '../../src/machine/elf.js';
import { PAGE_RECORD_BYTES, PAGE_SIZE, replicationPort, type PageRecord } from '../../src/machine/replication-port.js';
import { prng } from '../cpu/prng.js';
import { TEST_ADDON_PATH } from '../helpers/ring-probe.js';
import { until } from '../helpers/wait.js';

interface PrecopyProbe {
  /** A guest store: every word of page `page` becomes `value`. */
  write(page: number, value: number): void;
  start(first: boolean): boolean;
  active(): boolean;
  /** One chunk, as the vCPU thread at a slice boundary; true when the host has something to look at. */
  copy(maxPages: number): boolean;
  take(): { pages: Uint8Array; done: boolean };
  copyAll(first: boolean): Uint8Array;
  ram(): Uint8Array;
  /** A native thread plays the vCPU: a chunk, then `dirtyPerStep` stores, until the round ends or stop(). */
  spin(maxPages: number, dirtyPerStep: number, seed: number): void;
  spinning(): boolean;
  steps(): number;
  stop(): void;
}
const PrecopyProbe = (createRequire(import.meta.url)(TEST_ADDON_PATH) as { PrecopyProbe: new (pages: number) => PrecopyProbe }).PrecopyProbe;

/** One page record, checked: whole, a page that exists, and (for the probe's memory) one value throughout. */
interface Rec {
  index: number;
  value: number;
  data: Uint8Array;
}
function records(bytes: Uint8Array, pages: number): Rec[] {
  expect(bytes.length % PAGE_RECORD_BYTES, 'whole records').toBe(0);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const out: Rec[] = [];
  for (let o = 0; o < bytes.length; o += PAGE_RECORD_BYTES) {
    const data = bytes.subarray(o + 4, o + PAGE_RECORD_BYTES);
    out.push({ index: view.getUint32(o, true), value: view.getUint32(o + 4, true), data });
  }
  expect(out.filter((r) => r.index >= pages).map((r) => r.index), 'pages of the memory').toEqual([]);
  return out;
}
/** The probe's pages hold one u32 value throughout: true if `r` does. */
function uniform(r: Rec): boolean {
  const view = new DataView(r.data.buffer, r.data.byteOffset, r.data.length);
  for (let o = 0; o < r.data.length; o += 4) if (view.getUint32(o, true) !== r.value) return false;
  return true;
}
/** Indices of the records whose page is not one value throughout (torn or misplaced copies). */
const torn = (rs: Rec[]) => rs.filter((r) => !uniform(r)).map((r) => r.index);
const indices = (rs: Rec[]) => rs.map((r) => r.index);
/** take(), with the bytes counted. */
function taken(p: PrecopyProbe): { pages: number; done: boolean } {
  const t = p.take();
  return { pages: t.pages.length, done: t.done };
}

const probes: PrecopyProbe[] = [];
function probe(pages: number): PrecopyProbe {
  const p = new PrecopyProbe(pages);
  probes.push(p);
  return p;
}
const machines: Machine[] = [];
afterEach(() => {
  for (const p of probes.splice(0)) p.stop();
  for (const m of machines.splice(0)) m.close();
});

describe('pre-copy engine', () => {
  it('the first round sends every page ever written once, in page order, as whole records of what the page holds; never-written pages are not sent', () => {
    const p = probe(64);
    const written = [0, 1, 5, 17, 40, 63];
    for (const i of written) p.write(i, 0x1000 + i);
    expect(p.start(true)).toBe(true);
    expect(p.start(true), 'one round at a time').toBe(false);
    let chunks = 0;
    while (p.active()) {
      expect(p.copy(2)).toBe(true);
      chunks++;
    }
    expect(chunks, 'two pages per chunk').toBe(3);
    const { pages, done } = p.take();
    expect(done).toBe(true);
    const rs = records(pages, 64);
    expect(indices(rs)).toEqual(written);
    for (const r of rs) {
      expect(uniform(r)).toBe(true);
      expect(r.value).toBe(0x1000 + r.index);
    }
    expect(taken(p), 'the end is reported once').toEqual({ pages: 0, done: false });
    expect(p.copy(2), 'no round: nothing to do').toBe(false);
  });

  it('a page written behind the cursor is sent again by the next round; one written ahead of it goes in this round, once', () => {
    const p = probe(32);
    for (let i = 0; i < 32; i++) p.write(i, i);
    p.start(true);
    p.copy(10); // pages 0..9 copied
    p.write(3, 0xb3); // behind the cursor
    p.write(20, 0xa20); // ahead of it
    while (p.active()) p.copy(10);
    const first = records(p.take().pages, 32);
    expect(indices(first)).toEqual(Array.from({ length: 32 }, (_, i) => i));
    expect(first.find((r) => r.index === 3)!.value, 'page 3 as it was when copied').toBe(3);
    expect(first.find((r) => r.index === 20)!.value).toBe(0xa20);
    p.start(false);
    while (p.active()) p.copy(10);
    const second = p.take();
    expect(second.done).toBe(true);
    expect(records(second.pages, 32).map((r) => [r.index, r.value])).toEqual([[3, 0xb3]]);
    // Nothing written since: the next round is empty and ends at once.
    p.start(false);
    expect(p.copy(10)).toBe(true);
    expect(taken(p)).toEqual({ pages: 0, done: true });
  });

  it('rounds with pages dirtied in between converge: every store is followed by a copy of its page by the end of the next round, each copy holds the latest store, and the records applied in order rebuild the memory', () => {
    const N = 300;
    const p = probe(N);
    const mirror = new Uint8Array(N * PAGE_SIZE);
    const random = prng(12345);
    const rnd = (n: number) => Math.floor(random() * n);
    // A timeline of stores and copies (a take after every chunk dates each copy).
    let time = 0;
    let value = 0;
    const latest = new Map<number, number>(); // page -> value of its last store
    const stores: { page: number; at: number; round: number }[] = [];
    const copies: { page: number; at: number; round: number }[] = [];
    const store = (page: number, round: number) => {
      p.write(page, ++value);
      latest.set(page, value);
      stores.push({ page, at: ++time, round });
    };
    for (let i = 0; i < N; i += 3) store(i, 0);
    // Each round copies in chunks of 16 with a few stores between chunks, fewer each round, none in the last two.
    const sizes: number[] = [];
    for (let round = 0, perChunk = 8; round < 6; round++, perChunk >>= 1) {
      expect(p.start(round === 0)).toBe(true);
      let size = 0;
      let ended = false;
      while (!ended) {
        p.copy(16);
        const t = p.take();
        ended = t.done;
        const at = ++time;
        for (const r of records(t.pages, N)) {
          expect(uniform(r)).toBe(true);
          expect(r.value, `page ${r.index} as last stored`).toBe(latest.get(r.index));
          mirror.set(r.data, r.index * PAGE_SIZE);
          copies.push({ page: r.index, at, round });
          size++;
        }
        for (let k = 0; k < perChunk; k++) store(rnd(N), round);
      }
      sizes.push(size);
    }
    for (const s of stores.filter((x) => x.round < 5)) {
      const copied = copies.some((c) => c.page === s.page && c.at > s.at && c.round <= s.round + 1);
      expect(copied, `page ${s.page} stored at ${s.at} (round ${s.round}) copied again by the end of round ${s.round + 1}`).toBe(true);
    }
    expect(sizes[0], 'the first round: every page written before it, and some stored during it').toBeGreaterThanOrEqual(100);
    expect(sizes.at(-1), 'a round after one with nothing stored during it').toBe(0);
    // The final stop-and-copy has nothing left, and the mirror is the memory.
    expect(p.copyAll(false).length).toBe(0);
    expect(Buffer.compare(Buffer.from(mirror), Buffer.from(p.ram()))).toBe(0);
  });

  it('a round ends after pages/chunk chunks even when the guest rewrites every page between two chunks', async () => {
    const N = 2048;
    const p = probe(N);
    for (let i = 0; i < N; i++) p.write(i, 1);
    p.start(false);
    p.spin(64, N * 4, 7); // far more stores than the chunk copies
    const seen: Rec[] = [];
    let done = false;
    await until('the round to end', () => {
      const t = p.take();
      seen.push(...records(t.pages, N));
      done ||= t.done;
      return !p.spinning();
    });
    p.stop();
    const t = p.take();
    seen.push(...records(t.pages, N));
    done ||= t.done;
    expect(done).toBe(true);
    expect(p.steps(), 'every page dirty at every chunk: exactly N / 64 chunks').toBe(N / 64);
    expect(indices(seen), 'each page once, in order').toEqual(Array.from({ length: N }, (_, i) => i));
    expect(torn(seen), 'pages copied whole').toEqual([]);
  });

  it('records taken while the vCPU copies are whole, in order, and the end is reported exactly once', async () => {
    const N = 4096;
    const p = probe(N);
    for (let i = 0; i < N; i++) p.write(i, i);
    p.start(true);
    p.spin(1, 3, 99); // one page per chunk: many takes land mid-round
    const seen: Rec[] = [];
    let ends = 0;
    await until('the round to end', () => {
      const t = p.take();
      seen.push(...records(t.pages, N));
      if (t.done) ends++;
      return !p.spinning();
    }, { everyMs: 1 });
    p.stop();
    const t = p.take();
    seen.push(...records(t.pages, N));
    if (t.done) ends++;
    expect(ends).toBe(1);
    expect(indices(seen)).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(torn(seen)).toEqual([]);
  });

  it('a round left mid-way (the vCPU stopped) stays open and refuses a second start; copyAll finishes it from page 0', () => {
    const N = 64;
    const p = probe(N);
    for (let i = 0; i < N; i += 2) p.write(i, 5);
    p.start(true);
    p.copy(4);
    p.copy(4);
    expect(indices(records(p.take().pages, N))).toEqual([0, 2, 4, 6, 8, 10, 12, 14]);
    expect(p.active()).toBe(true);
    expect(p.start(false)).toBe(false);
    // The idle path: a whole round from page 0 (the first round's pages already taken come again).
    const all = records(p.copyAll(true), N);
    expect(indices(all)).toEqual(Array.from({ length: N / 2 }, (_, i) => 2 * i));
    expect(p.active()).toBe(false);
    expect(taken(p)).toEqual({ pages: 0, done: false });
    expect(p.start(false)).toBe(true);
  });

  it('a vCPU stand-in stopped mid-round is joined; what it copied is whole and the round goes on where it was', () => {
    const N = 1 << 14;
    const p = probe(N);
    for (let i = 0; i < N; i++) p.write(i, i);
    p.start(false);
    p.spin(1, 1, 3);
    p.stop();
    expect(p.spinning()).toBe(false);
    const before = records(p.take().pages, N);
    expect(before.length).toBe(p.steps());
    expect(torn(before)).toEqual([]);
    while (p.active()) p.copy(1024);
    const after = records(p.take().pages, N);
    if (before.length > 0 && after.length > 0) expect(after[0]!.index, 'after the pages copied before the stop').toBeGreaterThan(before.at(-1)!.index);
  });

  it('copyAll returns the records not yet taken first, then its own round', () => {
    const p = probe(16);
    for (const i of [2, 9, 11]) p.write(i, i);
    p.start(true);
    p.copy(1); // page 2, not taken
    p.write(2, 0x22);
    const all = records(p.copyAll(false), 16);
    expect(all.map((r) => [r.index, r.value])).toEqual([
      [2, 2], // the running round's chunk
      [2, 0x22], // written since its copy
      [9, 9],
      [11, 11],
    ]);
  });
});

const MEMTOUCH = readFileSync(new URL('../../guest/bin/memtouch.elf', import.meta.url));
const ECHO = readFileSync(new URL('../../guest/bin/echo.elf', import.meta.url));
const RAM = 64 << 20;
const RAM_PAGES = RAM / PAGE_SIZE;
/** memtouch's first pass over its 48 MiB takes ~0.1 M instructions: this many have written every page. */
const WARM = 2_000_000;
/**
 * Fewer instructions than a first round over memtouch's 12 288 pages takes: 24 chunks of 512 pages, one
 * per slice boundary, slices of 2^18 instructions while a round goes.
 */
const SHORTER_THAN_A_ROUND = 3_000_000;

/** A machine running memtouch (rewriting a word of every page of 48 MiB, over and over; until stopped). */
async function memtouch(): Promise<Machine> {
  const m = new Machine({ memory: RAM, clock: 'real' });
  machines.push(m);
  m.load(MEMTOUCH);
  const sym = parseElf(MEMTOUCH, { base: 0x8000_0000, size: RAM }).symbols.get('memtouch_rounds');
  m.writeMemory(sym!, Uint8Array.of(0xff, 0xff, 0xff, 0x7f));
  expect((await m.run({ maxInstructions: WARM })).kind).toBe('budget');
  return m;
}
/** Resolves `p`, or fails naming `what` if it does not settle (a round that never ends). */
async function settles<T>(what: string, p: Promise<T>): Promise<T> {
  let settled = false;
  const r = p.finally(() => (settled = true));
  await until(what, () => settled);
  return r;
}
/** A machine rebuilt from page records and a clone state has the state hash of `a`. */
function expectRebuilt(a: Machine, pages: PageRecord[], state: Uint8Array): void {
  expect(pages.filter((r) => r.index >= RAM_PAGES).map((r) => r.index), 'pages of the RAM').toEqual([]);
  const b = new Machine({ memory: RAM, clock: 'real' });
  machines.push(b);
  replicationPort(b).writePages(pages);
  b.restore(state);
  expect(b.stateHash()).toBe(a.stateHash());
}

describe('pre-copy through the replication port', () => {
  it('rounds while memtouch runs, each ending though it dirties pages faster than they are copied, plus a final copy rebuild the same state', async () => {
    const a = await memtouch();
    const port = replicationPort(a);
    const run = a.run();
    const sent: PageRecord[] = [];
    const perRound: number[] = [];
    // The caller's policy bounds the rounds (FtPrimary: at most 8); here 4.
    for (let round = 0; round < 4; round++) {
      let received = 0;
      const n = await settles(
        `round ${round}`,
        port.precopyRound(round === 0, (pages) => {
          sent.push(...pages);
          received += pages.length;
        }, () => false),
      );
      expect(n).toBe(received);
      perRound.push(n);
    }
    expect(a.running, 'the guest ran through every round').toBe(true);
    expect(perRound[0], 'the first round: at least the 12 288 pages memtouch writes').toBeGreaterThanOrEqual(12_288);
    a.stop();
    expect((await run).kind).toBe('stopped');
    sent.push(...port.copyPages(false));
    expectRebuilt(a, sent, port.cloneState());
  });

  it('a round finishes on a guest idle in WFI, and the next one, with nothing written, is small', async () => {
    const m = new Machine({ clock: 'real' });
    machines.push(m);
    m.load(ECHO);
    const port = replicationPort(m);
    let ended: unknown;
    const run = m.run().then((r) => (ended = r));
    const first = await settles('the first round', port.precopyRound(true, () => {}, () => false));
    expect(first).toBeGreaterThan(0);
    const second = await settles('the second round', port.precopyRound(false, () => {}, () => false));
    expect(second).toBeLessThan(first);
    // (Seen once under the sanitizers: the run had ended here. Say how, should it happen again.)
    expect(m.running, `the run ended: ${JSON.stringify(ended, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`).toBe(true);
    m.stop();
    await run;
  });

  for (const how of ['stopped', 'budget'] as const) {
    it(`a run that ends mid-round (${how}) settles the round with the rest copied directly`, async () => {
      const a = await memtouch();
      const port = replicationPort(a);
      const run = how === 'stopped' ? a.run() : a.run({ maxInstructions: SHORTER_THAN_A_ROUND });
      const sent: PageRecord[] = [];
      const round = port.precopyRound(true, (pages) => sent.push(...pages), () => false);
      if (how === 'stopped') a.stop();
      const n = await settles('the round', round);
      expect((await run).kind).toBe(how);
      expect(n).toBe(sent.length);
      expect(n, 'every page written').toBeGreaterThanOrEqual(12_288);
      // Whatever the guest wrote meanwhile, the round plus a final copy rebuild it.
      sent.push(...port.copyPages(false));
      expectRebuilt(a, sent, port.cloneState());
    });
  }

  it('closing the machine mid-round settles the round', async () => {
    const a = await memtouch();
    const port = replicationPort(a);
    const run = a.run().catch((e: unknown) => e);
    const round = port.precopyRound(true, () => {}, () => false);
    a.close();
    await settles('the round', round);
    expect(await run).toMatchObject({ code: 'ERR_LOCKSTEP_MACHINE_CLOSED' });
  });
});
