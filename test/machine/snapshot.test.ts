// Snapshots: a restored machine is the same machine (same hash, same future); a damaged or mismatched
// snapshot is refused with a reason and changes nothing; dirty pages report what was written.
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Machine, SnapshotError } from '../../src/index.js';

const elf = (name: string) => readFileSync(new URL(`../../guest/bin/${name}.elf`, import.meta.url));
const live: Machine[] = [];
const make = (opts: ConstructorParameters<typeof Machine>[0] = {}) => {
  const m = new Machine({ memory: 1 << 20, ...opts });
  live.push(m);
  return m;
};
afterEach(() => {
  while (live.length) live.pop()!.close();
});

async function runToEnd(m: Machine) {
  const out: Buffer[] = [];
  const on = (c: Uint8Array) => out.push(Buffer.from(c));
  m.on('console', on);
  const r = await m.run();
  m.off('console', on);
  return { r, console: Buffer.concat(out).toString(), hash: m.stateHash() };
}

describe('snapshot and restore', () => {
  it('a restored machine has the same state hash and the same future', async () => {
    const a = make();
    a.load(elf('mixed'));
    await a.run({ maxInstructions: 1_234_567 });
    const snap = a.snapshot();
    const b = make();
    b.restore(snap);
    expect(b.stateHash()).toBe(a.stateHash());
    expect(b.counters).toEqual(a.counters);
    expect(b.pc).toBe(a.pc);
    const [ra, rb] = [await runToEnd(a), await runToEnd(b)];
    expect(rb.console).toBe(ra.console);
    expect(rb.r.instret).toBe(ra.r.instret);
    expect(rb.hash).toBe(ra.hash);
  });

  it('keeps device state: a timer armed before the snapshot fires after the restore', async () => {
    const a = make();
    a.load(elf('timer'));
    await a.run({ maxInstructions: 1500 });
    const b = make();
    b.restore(a.snapshot());
    const [ra, rb] = [await runToEnd(a), await runToEnd(b)];
    expect(rb.console).toBe(ra.console);
    expect(rb.hash).toBe(ra.hash);
  });

  it('carries the virtual-clock entropy stream: a restored machine draws the same bytes next', async () => {
    const a = make({ devices: { rng: true } });
    a.load(elf('rng'));
    await a.run(); // draws entropy, advancing the stream
    const b = make({ devices: { rng: true } });
    b.restore(a.snapshot());
    expect(b.stateHash()).toBe(a.stateHash());
    // Run the same guest again from the same point on both: the bytes drawn must match.
    for (const m of [a, b]) {
      m.load(elf('rng'));
      await m.run();
    }
    expect(b.stateHash()).toBe(a.stateHash());
  });

  it('omits zero pages, so a mostly empty machine snapshots small', () => {
    const m = make({ memory: 64 << 20 });
    m.load(elf('hello'));
    expect(m.snapshot().length).toBeLessThan(64 * 1024);
  });

  const damage: [string, (s: Uint8Array) => Uint8Array, RegExp][] = [
    ['a wrong magic number', (s) => { const c = s.slice(); c[0] = 0x58; return c; }, /bad magic/],
    ['another version', (s) => { const c = s.slice(); c[8] = 99; return c; }, /version 99/],
    ['a truncated file', (s) => s.subarray(0, s.length - 100), /truncated|end marker/],
    ['trailing garbage', (s) => { const c = new Uint8Array(s.length + 3); c.set(s); return c; }, /unexpected bytes/],
    ['an impossible privilege mode', (s) => { const c = s.slice(); c[24 + 31 * 4 + 4] = 2; return c; }, /privilege mode 2/],
    ['an empty buffer', () => new Uint8Array(0), /bad magic/],
  ];
  for (const [what, edit, message] of damage) {
    it(`refuses ${what} and leaves the machine unchanged`, async () => {
      const a = make();
      a.load(elf('hello'));
      await a.run({ maxInstructions: 50 });
      const bad = edit(a.snapshot());
      const b = make();
      b.load(elf('sort'));
      const before = b.stateHash();
      expect(() => b.restore(bad)).toThrow(SnapshotError);
      expect(() => b.restore(bad)).toThrow(message);
      expect(b.stateHash()).toBe(before);
    });
  }

  it('refuses a snapshot of a machine with another memory size or clock mode', () => {
    const small = make({ memory: 1 << 20 });
    const snap = small.snapshot();
    expect(() => make({ memory: 2 << 20 }).restore(snap)).toThrow(/1048576 bytes of RAM, this machine 2097152/);
    expect(() => make({ clock: 'real' }).restore(snap)).toThrow(/virtual clock/);
  });
});

describe('dirty pages', () => {
  it('reports the pages written since the previous call', async () => {
    const m = make();
    m.load(elf('hello'));
    const first = m.takeDirtyPages();
    expect(first.length).toBeGreaterThan(0); // the loaded image
    expect(m.takeDirtyPages().length).toBe(0);
    m.writeMemory(0x80000000 + 5 * 4096 + 10, new Uint8Array([1]));
    expect([...m.takeDirtyPages()]).toEqual([5]);
    await m.run(); // hello writes its stack and data
    const after = m.takeDirtyPages();
    expect(after.length).toBeGreaterThan(0);
    expect(after.length).toBeLessThan(256);
  });
});
