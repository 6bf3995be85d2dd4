// Snapshots: a restored machine is the same machine (same hash, same future); a damaged or mismatched
// snapshot is refused with a reason and changes nothing; dirty pages report what was written.
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Machine, SnapshotError } from '../../src/index.js';
import { prng } from '../cpu/prng.js';
import { Asm } from '../helpers/asm.js';
import { SNAP, SNAPSHOT_CHECKSUM, resealSnapshot, virtioQueueOffset } from '../helpers/snapshot.js';
import { replicationPort } from '../../src/machine/replication-port.js';

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

  it("with the real clock and no log, a clone's final state carries the clock now: the target's clock goes on, never back", async () => {
    // A loop storing each read of the time CSR over the last. A machine that never recorded kept 0 as
    // its logged clock, and a live migration's target restored from its state read times from 0 again
    // (kvserver's reply cache then took its entries for expired and applied a retried increment twice).
    const a = new Asm();
    a.lui(5, 0x80010);
    a.label('loop');
    a.csrrs(11, 0xc01, 0); // rdtime a1
    a.sw(11, 0, 5);
    a.j('loop');
    const program = a.bytes();
    const src = make({ clock: 'real' });
    src.writeMemory(0x80000000, program);
    await src.run({ maxInstructions: 2_000_000 });
    const before = new DataView(src.readMemory(0x80010000, 4).slice().buffer).getUint32(0, true);
    expect(before).toBeGreaterThan(0);
    const dst = make({ clock: 'real' });
    dst.writeMemory(0x80000000, program); // the RAM a clone's pages bring
    dst.restore(replicationPort(src).cloneState());
    await dst.run({ maxInstructions: 1000 });
    const after = new DataView(dst.readMemory(0x80010000, 4).slice().buffer).getUint32(0, true);
    expect(after).toBeGreaterThanOrEqual(before);
  });

  it('restoring clears the pages the snapshot does not hold, and a written-then-zeroed page is omitted again', () => {
    // save() skips pages never written and restore() zeroes only pages ever written: both lean on the
    // dirty map's "ever written" bit, so a page written before a restore must still come back as zeros.
    const a = make({ memory: 8 << 20 });
    const empty = a.snapshot();
    const b = make({ memory: 8 << 20 });
    const page = 0x80000000 + 7 * 4096;
    b.writeMemory(page + 100, new Uint8Array([1, 2, 3]));
    b.writeMemory(0x80000000 + 9 * 4096, new Uint8Array([9]));
    b.writeMemory(0x80000000 + 9 * 4096, new Uint8Array([0])); // written, but all zeros again
    expect(b.snapshot().length).toBe(empty.length + 4 + 4096); // page 7 only: its index and bytes
    b.restore(empty);
    expect([...b.readMemory(page + 100, 3)]).toEqual([0, 0, 0]);
    expect(b.stateHash()).toBe(a.stateHash());
    expect(Buffer.from(b.snapshot()).equals(Buffer.from(empty))).toBe(true);
  });

  // Edits behind a valid checksum (resealed) reach the field checks; the others are caught by the checksum.
  const damage: [string, (s: Uint8Array) => Uint8Array, RegExp, string][] = [
    ['a wrong magic number', (s) => { const c = s.slice(); c[0] = 0x58; return c; }, /bad magic/, 'ERR_LOCKSTEP_SNAPSHOT_CORRUPT'],
    ['another (newer) version', (s) => { const c = s.slice(); c[SNAP.version] = 99; return resealSnapshot(c); }, /version 99/, 'ERR_LOCKSTEP_SNAPSHOT_VERSION'],
    ['an older version without a checksum', (s) => { const c = s.slice(); c[SNAP.version] = 2; return c; }, /version 2 was written by an older lockstep/, 'ERR_LOCKSTEP_SNAPSHOT_VERSION'],
    ['a truncated file', (s) => s.subarray(0, s.length - 100), /checksum mismatch/, 'ERR_LOCKSTEP_SNAPSHOT_CORRUPT'],
    ['one flipped bit', (s) => { const c = s.slice(); c[Math.floor(c.length / 2)]! ^= 0x10; return c; }, /checksum mismatch/, 'ERR_LOCKSTEP_SNAPSHOT_CORRUPT'],
    ['trailing garbage', (s) => { const c = new Uint8Array(s.length + 3); c.set(s); return c; }, /checksum mismatch/, 'ERR_LOCKSTEP_SNAPSHOT_CORRUPT'],
    [
      'garbage after the end marker (resealed)',
      (s) => { const c = new Uint8Array(s.length + 3); c.set(s.subarray(0, s.length - SNAPSHOT_CHECKSUM)); return resealSnapshot(c); },
      /3 unexpected bytes after the end marker/,
      'ERR_LOCKSTEP_SNAPSHOT_CORRUPT',
    ],
    ['an impossible privilege mode (resealed)', (s) => { const c = s.slice(); c[SNAP.priv] = 2; return resealSnapshot(c); }, /privilege mode 2/, 'ERR_LOCKSTEP_SNAPSHOT_CORRUPT'],
    ['an empty buffer', () => new Uint8Array(0), /bad magic/, 'ERR_LOCKSTEP_SNAPSHOT_CORRUPT'],
  ];
  for (const [what, edit, message, code] of damage) {
    it(`refuses ${what} with ${code} and leaves the machine unchanged`, async () => {
      const a = make();
      a.load(elf('hello'));
      await a.run({ maxInstructions: 50 });
      const bad = edit(a.snapshot());
      const b = make();
      b.load(elf('sort'));
      const before = b.stateHash();
      expect(() => b.restore(bad)).toThrow(SnapshotError);
      expect(() => b.restore(bad)).toThrow(message);
      expect(() => b.restore(bad)).toThrow(expect.objectContaining({ code }));
      expect(b.stateHash()).toBe(before);
    });
  }

  it('refuses every one of 2200 randomly corrupted snapshots (bytes changed, bits flipped, cut short)', async () => {
    const a = make({ devices: { rng: true } });
    a.load(elf('rng'));
    await a.run({ maxInstructions: 20_000 });
    const snap = a.snapshot();
    const b = make({ devices: { rng: true } });
    const before = b.stateHash();
    const rnd = prng(2200);
    const accepted: string[] = [];
    for (let i = 0; i < 2200; i++) {
      let bytes = snap.slice();
      let what: string;
      const at = Math.floor(rnd() * bytes.length);
      if (i % 3 === 0) {
        const v = 1 + Math.floor(rnd() * 255);
        bytes[at]! ^= v;
        what = `byte ${at} ^= ${v}`;
      } else if (i % 3 === 1) {
        const bit = Math.floor(rnd() * 8);
        bytes[at]! ^= 1 << bit;
        what = `bit ${bit} of byte ${at} flipped`;
      } else {
        bytes = bytes.subarray(0, at);
        what = `cut to ${at} bytes`;
      }
      try {
        b.restore(bytes);
        accepted.push(what);
      } catch (e) {
        expect(e).toBeInstanceOf(SnapshotError);
      }
    }
    expect(accepted).toEqual([]);
    expect(b.stateHash()).toBe(before);
  });

  it('restores a machine whose driver wrote a queue size over the maximum to a queue not yet ready (found by the device fuzzer)', async () => {
    // QueueNum is only a register until QueueReady: any value may sit there, and the machine must still snapshot.
    const a = make({ devices: { rng: true } });
    a.writeMemory(0x80000000, new Asm().li(5, 0x10003000).li(6, 512).sw(6, 0x38, 5).ebreak().bytes());
    expect(await a.run({ maxInstructions: 100 })).toMatchObject({ kind: 'trap', cause: 3 });
    const b = make({ devices: { rng: true } });
    b.restore(a.snapshot());
    expect(b.stateHash()).toBe(a.stateHash());
  });

  it('refuses a snapshot whose ready virtqueue has size 0 (the rule QueueReady enforces), even with a valid checksum', async () => {
    const a = make({ devices: { rng: true } });
    a.load(elf('rng'));
    await a.run(); // the driver set queue 0 up: ready, size 8 or more
    const snap = a.snapshot();
    const q = virtioQueueOffset(snap, 2, 0);
    const dv = new DataView(snap.buffer, snap.byteOffset);
    expect(dv.getUint32(q, true)).toBeGreaterThan(0);
    expect(snap[q + 4]).toBe(1);
    for (const size of [0, 3, 512]) {
      const c = snap.slice();
      new DataView(c.buffer, c.byteOffset).setUint32(q, size, true);
      const b = make({ devices: { rng: true } });
      expect(() => b.restore(resealSnapshot(c))).toThrow(/damaged virtio transport state/);
    }
  });

  it('refuses a snapshot of a machine with another memory size, clock mode or device set (ERR_LOCKSTEP_SNAPSHOT_MISMATCH)', () => {
    const small = make({ memory: 1 << 20 });
    const snap = small.snapshot();
    const mismatch = expect.objectContaining({ code: 'ERR_LOCKSTEP_SNAPSHOT_MISMATCH' });
    expect(() => make({ memory: 2 << 20 }).restore(snap)).toThrow(/1048576 bytes of RAM, this machine 2097152/);
    expect(() => make({ memory: 2 << 20 }).restore(snap)).toThrow(mismatch);
    expect(() => make({ clock: 'real' }).restore(snap)).toThrow(/virtual clock/);
    expect(() => make({ clock: 'real' }).restore(snap)).toThrow(mismatch);
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
