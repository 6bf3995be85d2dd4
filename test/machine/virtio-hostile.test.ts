// A hostile or buggy driver cannot hurt the host: bad descriptor chains put the device into
// DEVICE_NEEDS_RESET (status bit 0x40) with a configuration-change interrupt, and the run goes on.
import { afterEach, describe, expect, it } from 'vitest';
import { Machine } from '../../src/index.js';
import { Asm } from '../helpers/asm.js';
import { descriptor, setUpQueue0 } from '../helpers/virtio.js';

const RNG = 0x10003000; // slot 2
const DESC = 0x80010000, AVAIL = 0x80011000, USED = 0x80012000;
const live: Machine[] = [];
afterEach(() => {
  while (live.length) live.pop()!.close();
});

/** Drives virtio-rng's queue 0 of size `num` through setup, notifies it, and reads Status and InterruptStatus into a0/a1. */
function driver(num: number): Uint8Array {
  const a = new Asm();
  setUpQueue0(a, RNG, num, { desc: DESC, avail: AVAIL, used: USED });
  a.li(6, 0);
  a.sw(6, 0x50, 5); // notify queue 0
  a.lw(10, 0x70, 5);
  a.lw(11, 0x60, 5);
  a.ebreak();
  return a.bytes();
}

const desc = (i: number, addr: number, len: number, flags: number, next: number) => descriptor(DESC, i, addr, len, flags, next);

function avail(heads: number[]): [number, Uint8Array] {
  const b = Buffer.alloc(4 + 2 * heads.length);
  b.writeUInt16LE(heads.length, 2);
  heads.forEach((h, i) => b.writeUInt16LE(h, 4 + 2 * i));
  return [AVAIL, b];
}

async function run(num: number, writes: [number, Uint8Array][]) {
  const m = new Machine({ memory: 1 << 20, devices: { rng: true } });
  live.push(m);
  m.writeMemory(0x80000000, driver(num));
  for (const [addr, bytes] of writes) m.writeMemory(addr, bytes);
  const r = await m.run({ maxInstructions: 10_000 });
  return { r, status: m.getRegister(10), isr: m.getRegister(11), m };
}

describe('virtio with a hostile driver', () => {
  it('a well-formed request is served: 16 bytes of entropy, no error', async () => {
    const { r, status, isr, m } = await run(8, [desc(0, 0x80020000, 16, 2, 0), avail([0])]);
    expect(r).toMatchObject({ kind: 'trap', cause: 3 });
    expect(status & 0x40).toBe(0);
    expect(isr).toBe(1);
    expect(m.readMemory(USED + 2, 2)).toEqual(Uint8Array.from([1, 0])); // used idx
    expect(m.readMemory(0x80020000, 16).some((b) => b !== 0)).toBe(true);
  });

  const cases: [string, number, [number, Uint8Array][]][] = [
    ['a buffer outside guest RAM', 8, [desc(0, 0x10000, 64, 2, 0), avail([0])]],
    ['a buffer running past the end of RAM', 8, [desc(0, 0x80100000 - 8, 64, 2, 0), avail([0])]],
    ['a chain that loops', 8, [desc(0, 0x80020000, 16, 2 | 1, 1), desc(1, 0x80020010, 16, 2 | 1, 0), avail([0])]],
    ['a head index beyond the queue', 8, [avail([9])]],
    ['a next index beyond the queue', 8, [desc(0, 0x80020000, 16, 2 | 1, 200), avail([0])]],
    ['an indirect descriptor that was never negotiated', 8, [desc(0, 0x80020000, 16, 4, 0), avail([0])]],
    ['a queue size that is not a power of two', 3, [desc(0, 0x80020000, 16, 2, 0), avail([0])]],
  ];
  for (const [what, num, writes] of cases) {
    it(`${what} puts the device into DEVICE_NEEDS_RESET, and the guest runs on`, async () => {
      const { r, status, isr } = await run(num, writes);
      expect(r).toMatchObject({ kind: 'trap', cause: 3 });
      expect(status & 0x40).toBe(0x40);
      expect(isr & 2).toBe(2);
    });
  }
});
