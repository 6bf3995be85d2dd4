// A virtio-mmio driver's first steps, for tests that hand-write one: the set-up of queue 0 as guest
// code, and descriptors as the host writes them into guest memory before the run.
import type { Asm } from './asm.js';

/**
 * Guest code: resets the device at `base` (held in x5; x6 is scratch), negotiates VERSION_1, sets up
 * queue 0 of `num` entries at the given table addresses and sets DRIVER_OK.
 */
export function setUpQueue0(a: Asm, base: number, num: number, tables: { desc: number; avail: number; used: number }): void {
  const w = (off: number, value: number) => {
    a.li(6, value);
    a.sw(6, off, 5);
  };
  a.li(5, base);
  w(0x70, 0); // reset
  w(0x70, 1 | 2); // ACKNOWLEDGE | DRIVER
  w(0x24, 1);
  w(0x20, 1); // VERSION_1 (feature bit 32)
  w(0x70, 1 | 2 | 8); // FEATURES_OK
  w(0x30, 0);
  w(0x38, num);
  w(0x80, tables.desc);
  w(0x90, tables.avail);
  w(0xa0, tables.used);
  w(0x44, 1);
  w(0x70, 1 | 2 | 8 | 4); // DRIVER_OK
}

/** Descriptor `i` of the table at `table`, as [guest address, 16 bytes] for Machine.writeMemory. */
export function descriptor(table: number, i: number, addr: number, len: number, flags: number, next: number): [number, Uint8Array] {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(addr >>> 0, 0);
  b.writeUInt32LE(len, 8);
  b.writeUInt16LE(flags, 12);
  b.writeUInt16LE(next, 14);
  return [table + 16 * i, b];
}
