// Loads and stores of every width: sign and zero extension, offsets, misaligned accesses to RAM (handled
// transparently by this machine), and access faults on unmapped addresses for loads, stores and fetches.
import { describe, expect, it } from 'vitest';
import { Asm, rv } from '../helpers/asm.js';
import { CAUSE, DATA, RAM, RAM_END, UNMAPPED, expectRegs, hex, le32, load, runToEbreak, csrOf } from './harness.js';

// DATA holds: 80 81 7f 01 | 00 80 ff 7f | 78 56 34 12 | ef be ad de
const data = Uint8Array.from([0x80, 0x81, 0x7f, 0x01, 0x00, 0x80, 0xff, 0x7f, 0x78, 0x56, 0x34, 0x12, 0xef, 0xbe, 0xad, 0xde]);

// [disassembly, encoding, expected x3]; x1 = DATA + 4 so negative offsets reach the first word.
const loads: Array<[string, number, number]> = [
  ['lb x3, -4(x1)', rv.lb(3, -4, 1), 0xffffff80], // sign-extended
  ['lbu x3, -4(x1)', rv.lbu(3, -4, 1), 0x80], //     zero-extended
  ['lb x3, -2(x1)', rv.lb(3, -2, 1), 0x7f],
  ['lbu x3, -3(x1)', rv.lbu(3, -3, 1), 0x81],
  ['lh x3, 0(x1)', rv.lh(3, 0, 1), 0xffff8000],
  ['lhu x3, 0(x1)', rv.lhu(3, 0, 1), 0x8000],
  ['lh x3, 2(x1)', rv.lh(3, 2, 1), 0x7fff],
  ['lhu x3, 2(x1)', rv.lhu(3, 2, 1), 0x7fff],
  ['lw x3, 4(x1)', rv.lw(3, 4, 1), 0x12345678],
  ['lw x3, 8(x1)', rv.lw(3, 8, 1), 0xdeadbeef],
  ['lw x3, -4(x1)', rv.lw(3, -4, 1), 0x017f8180],
  // Misaligned: the machine services these on RAM without trapping.
  ['lw x3, -3(x1)', rv.lw(3, -3, 1), 0x00017f81],
  ['lw x3, -1(x1)', rv.lw(3, -1, 1), 0xff800001],
  ['lw x3, 6(x1)', rv.lw(3, 6, 1), 0xbeef1234], //  crosses a word boundary
  ['lh x3, 1(x1)', rv.lh(3, 1, 1), 0xffffff80],
  ['lh x3, 3(x1)', rv.lh(3, 3, 1), 0x787f], //      crosses a word boundary
  ['lhu x3, 11(x1)', rv.lhu(3, 11, 1), 0xde], //    last byte of DATA then 0 (assumes the next byte is zero)
  ['lhu x3, -1(x1)', rv.lhu(3, -1, 1), 0x0001],
  ['lhu x3, 9(x1)', rv.lhu(3, 9, 1), 0xadbe],
  ['lh x3, 9(x1)', rv.lh(3, 9, 1), 0xffffadbe],
];

describe('loads', () => {
  for (const [asm, code, want] of loads) {
    it(`${asm} gives x3 = ${hex(want)}`, async () => {
      const { m } = await runToEbreak([code], { data, regs: { 1: DATA + 4 } });
      expectRegs(m, { 3: want, 1: DATA + 4 });
    });
  }

  it('a load into x0 is performed but discarded', async () => {
    const { m } = await runToEbreak([rv.lw(0, 0, 1), rv.add(5, 0, 0)], { data, regs: { 1: DATA, 5: 7 } });
    expectRegs(m, { 0: 0, 5: 0 });
  });

  it('a load with rd = rs1 uses the old base', async () => {
    const { m } = await runToEbreak([rv.lw(1, 8, 1)], { data, regs: { 1: DATA } }); // lw x1, 8(x1)
    expectRegs(m, { 1: 0x12345678 });
  });
});

// [disassembly, encoding, x2 value, offset from DATA written, expected bytes there]
const stores: Array<[string, number, number, number, number[]]> = [
  ['sb x2, 0(x1)', rv.sb(2, 0, 1), 0x12345678, 0, [0x78, 0xaa, 0xaa, 0xaa]],
  ['sb x2, 3(x1)', rv.sb(2, 3, 1), 0xfe, 0, [0xaa, 0xaa, 0xaa, 0xfe]],
  ['sh x2, 0(x1)', rv.sh(2, 0, 1), 0x12345678, 0, [0x78, 0x56, 0xaa, 0xaa]],
  ['sh x2, 2(x1)', rv.sh(2, 2, 1), 0x12345678, 0, [0xaa, 0xaa, 0x78, 0x56]],
  ['sw x2, 0(x1)', rv.sw(2, 0, 1), 0x12345678, 0, [0x78, 0x56, 0x34, 0x12]],
  ['sw x2, -4(x1)', rv.sw(2, -4, 1), 0xcafef00d, -4, [0x0d, 0xf0, 0xfe, 0xca, 0xaa]],
  ['sw x2, 2047(x1)', rv.sw(2, 2047, 1), 0x11223344, 2047, [0x44, 0x33, 0x22, 0x11, 0xaa]],
  ['sw x2, -2048(x1)', rv.sw(2, -2048, 1), 0x11223344, -2048, [0x44, 0x33, 0x22, 0x11]],
  // Misaligned stores to RAM.
  ['sh x2, 1(x1)', rv.sh(2, 1, 1), 0xbeef, 0, [0xaa, 0xef, 0xbe, 0xaa]],
  ['sh x2, 3(x1)', rv.sh(2, 3, 1), 0xbeef, 0, [0xaa, 0xaa, 0xaa, 0xef, 0xbe, 0xaa]],
  ['sw x2, 1(x1)', rv.sw(2, 1, 1), 0x12345678, 0, [0xaa, 0x78, 0x56, 0x34, 0x12, 0xaa]],
  ['sw x2, 7(x1)', rv.sw(2, 7, 1), 0x12345678, 4, [0xaa, 0xaa, 0xaa, 0x78, 0x56, 0x34, 0x12, 0xaa]],
];

describe('stores', () => {
  it.each(stores)('%s (0x%x) with x2 = 0x%x writes only its bytes at +%i: %j', async (_asm, code, value, at, want) => {
    const fill = new Uint8Array(4096 + 64).fill(0xaa);
    const base = DATA + 2048;
    const { m } = await runToEbreak([code], { regs: { 1: base, 2: value }, mem: [[base - 2048 - 16, fill]] });
    expect(Array.from(m.readMemory(base + at, want.length))).toEqual(want);
  });

  it('a stored value reads back through every load width', async () => {
    const { m } = await runToEbreak([
      rv.sw(2, 0, 1), //   sw x2, 0(x1)
      rv.lw(3, 0, 1), //   lw x3, 0(x1)
      rv.lh(4, 2, 1), //   lh x4, 2(x1)
      rv.lbu(5, 3, 1), //  lbu x5, 3(x1)
      rv.lb(6, 1, 1), //   lb x6, 1(x1)
    ], { regs: { 1: DATA, 2: 0x8899aabb } });
    expectRegs(m, { 3: 0x8899aabb, 4: 0xffff8899, 5: 0x88, 6: 0xffffffaa });
  });

  it('a store to the last word of RAM succeeds', async () => {
    const { m } = await runToEbreak([rv.sw(2, -4, 1)], { regs: { 1: RAM_END, 2: 0x01020304 } });
    expect(Array.from(m.readMemory(RAM_END - 4, 4))).toEqual([4, 3, 2, 1]);
  });
});

// Unmapped addresses (nothing at them on virt; RAM is 1 MiB here).
const holes = [UNMAPPED, RAM_END, 0xfffffffc, 0x00000000, 0x60000000];
const loadOps: Array<[string, (rd: number, imm: number, rs1: number) => number]> = [
  ['lb', rv.lb], ['lh', rv.lh], ['lw', rv.lw], ['lbu', rv.lbu], ['lhu', rv.lhu],
];
const storeOps: Array<[string, (rs2: number, imm: number, rs1: number) => number]> = [
  ['sb', rv.sb], ['sh', rv.sh], ['sw', rv.sw],
];

describe('access faults', () => {
  for (const addr of holes) {
    it.each(loadOps)(`%s from 0x${addr.toString(16)} raises a load access fault (cause 5) with mtval = address`,
      async (_op, enc) => {
        const m = load([enc(3, 0, 1), rv.ebreak()], { regs: { 1: addr, 3: 0x1234 } });
        const r = await m.run({ maxInstructions: 10 });
        expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.loadAccess, pc: RAM, tval: addr >>> 0 });
        expectRegs(m, { 3: 0x1234 }); // rd is not written by a faulting load
        expect(m.counters.instret).toBe(0n); // a faulting instruction does not retire
      });
    it.each(storeOps)(`%s to 0x${addr.toString(16)} raises a store access fault (cause 7) with mtval = address`,
      async (_op, enc) => {
        const m = load([enc(2, 0, 1), rv.ebreak()], { regs: { 1: addr, 2: 0x55 } });
        const r = await m.run({ maxInstructions: 10 });
        expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.storeAccess, pc: RAM, tval: addr >>> 0 });
      });
  }

  it('the effective address (base + offset) is what faults and lands in mtval', async () => {
    const m = load([rv.lw(3, -16, 1), rv.ebreak()], { regs: { 1: UNMAPPED + 0x20 } }); // lw x3, -16(x1)
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.loadAccess, tval: UNMAPPED + 0x10 });
  });

  it('a misaligned load running past the end of RAM raises a load access fault', async () => {
    const m = load([rv.lw(3, 0, 1), rv.ebreak()], { regs: { 1: RAM_END - 2, 3: 0x1234 } });
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.loadAccess, pc: RAM });
    // Privileged spec: mtval holds the address of the access or of the portion that faulted.
    expect([RAM_END - 2, RAM_END]).toContain(r.kind === 'trap' ? r.tval : -1);
    expectRegs(m, { 3: 0x1234 });
  });

  it('a misaligned store running past the end of RAM faults without writing the part inside RAM', async () => {
    const m = load([rv.sw(2, 0, 1), rv.ebreak()], { regs: { 1: RAM_END - 2, 2: 0xffffffff } });
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.storeAccess, pc: RAM });
    expect(Array.from(m.readMemory(RAM_END - 2, 2))).toEqual([0, 0]);
  });

  it('instructions before a faulting load in the same straight-line code are committed, those after are not', async () => {
    const m = load([
      rv.addi(5, 0, 1), //   addi x5, x0, 1
      rv.sw(5, 0, 2), //     sw x5, 0(x2)       (x2 = DATA)
      rv.lw(3, 0, 1), //     lw x3, 0(x1)       (x1 unmapped: faults)
      rv.addi(6, 0, 1), //   addi x6, x0, 1     (never runs)
      rv.ebreak(),
    ], { regs: { 1: UNMAPPED, 2: DATA } });
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.loadAccess, pc: RAM + 8, instret: 2n });
    expectRegs(m, { 5: 1, 6: 0 });
    expect(Array.from(m.readMemory(DATA, 4))).toEqual([1, 0, 0, 0]);
  });

  it('an address computation wraps around 2^32', async () => {
    // lw x3, 4(x1) with x1 = 0xfffffffc reads address 0: unmapped.
    const m = load([rv.lw(3, 4, 1), rv.ebreak()], { regs: { 1: 0xfffffffc } });
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.loadAccess, tval: 0 });
  });

  it('the trap through mtvec records mepc, mcause and mtval, and the handler runs', async () => {
    const a = new Asm();
    a.la(5, 'handler').csrrw(0, 0x305, 5); //   la t0, handler; csrw mtvec, t0
    a.li(1, UNMAPPED + 8);
    a.label('fault').sw(2, 0, 1); //            sw x2, 0(x1)
    a.ebreak();
    a.align(4).label('handler');
    a.csrrs(10, 0x341, 0).csrrs(11, 0x342, 0).csrrs(12, 0x343, 0); // csrr a0, mepc; csrr a1, mcause; csrr a2, mtval
    a.csrrw(0, 0x305, 0).ebreak(); //           csrw mtvec, x0; ebreak -> ends the run
    const m = load(a);
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    expectRegs(m, { 10: a.addr('fault'), 11: CAUSE.storeAccess, 12: UNMAPPED + 8 });
    expect(csrOf(m, 0x342)).toBe(CAUSE.storeAccess); // the final ebreak did not go through mtvec = 0
  });
});

describe('instruction fetch faults', () => {
  it.each([UNMAPPED, RAM_END, 0x00000000, 0x10000000 /* UART: MMIO is not executable */])(
    'jumping to 0x%x raises an instruction access fault (cause 1) at the target', async (target) => {
      const m = load([rv.jalr(1, 5, 0), rv.ebreak()], { regs: { 5: target } }); // jalr x1, 0(x5)
      const r = await m.run({ maxInstructions: 10 });
      expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.fetchAccess, pc: target, tval: target });
      expectRegs(m, { 1: RAM + 4 }); // the jump itself retired
      expect(m.counters).toEqual({ instret: 1n, branches: 1n });
    });

  it('running off the end of RAM faults at the first address past it', async () => {
    const m = load([]);
    m.writeMemory(RAM_END - 8, le32(rv.addi(5, 0, 1), rv.addi(6, 0, 2))); // two instructions at the very end
    m.pc = RAM_END - 8;
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.fetchAccess, pc: RAM_END, tval: RAM_END });
    expectRegs(m, { 5: 1, 6: 2 });
  });

  it('a 32-bit instruction whose upper half lies past the end of RAM faults at its start', async () => {
    const m = load([]);
    // c.nop at RAM_END - 4, then the lower half of a 32-bit addi at RAM_END - 2.
    m.writeMemory(RAM_END - 4, Uint8Array.from([0x01, 0x00, 0x93, 0x02]));
    m.pc = RAM_END - 4;
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.fetchAccess, pc: RAM_END - 2, instret: 1n });
    // mtval: the instruction's address, or (privileged spec) the address of the portion that faulted.
    expect([RAM_END - 2, RAM_END]).toContain(r.kind === 'trap' ? r.tval : -1);
  });

  it('a fetch fault through mtvec sets mepc = mtval = the target', async () => {
    const a = new Asm();
    a.la(5, 'handler').csrrw(0, 0x305, 5); //   la t0, handler; csrw mtvec, t0
    a.li(6, UNMAPPED).jalr(1, 6, 0); //         jalr ra, 0(t1)
    a.align(4).label('handler').j('handler');
    const m = load(a);
    const r = await m.run({ maxInstructions: 200 });
    expect(r).toMatchObject({ kind: 'budget', pc: a.addr('handler') });
    expect(csrOf(m, 0x341)).toBe(UNMAPPED);
    expect(csrOf(m, 0x342)).toBe(CAUSE.fetchAccess);
    expect(csrOf(m, 0x343)).toBe(UNMAPPED);
  });
});
