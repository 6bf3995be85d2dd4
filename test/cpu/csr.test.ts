// Zicsr: read/write/set/clear semantics of all six CSR instructions, the rd = x0 and rs1 = x0 / uimm = 0
// rules, read-only and non-existent CSRs, and the machine's identification and WARL registers.
import { describe, expect, it } from 'vitest';
import { rv } from '../helpers/asm.js';
import { CAUSE, CSR, RAM, csrr, csrw, expectRegs, fmtRegs, hex, load, runToEbreak, type Regs, csrOf } from './harness.js';

const MSCRATCH = CSR.mscratch;

// [disassembly, encoding, registers, mscratch before, expected registers, mscratch after]
type Row = [string, number, Regs, number, Regs, number];
const rows: Row[] = [
  ['csrrw x5, mscratch, x6', rv.csrrw(5, MSCRATCH, 6), { 6: 0x22 }, 0x11, { 5: 0x11, 6: 0x22 }, 0x22],
  ['csrrs x5, mscratch, x6', rv.csrrs(5, MSCRATCH, 6), { 6: 0x0f }, 0xf0, { 5: 0xf0 }, 0xff],
  ['csrrc x5, mscratch, x6', rv.csrrc(5, MSCRATCH, 6), { 6: 0x0f }, 0xff, { 5: 0xff }, 0xf0],
  ['csrrwi x5, mscratch, 31', rv.csrrwi(5, MSCRATCH, 31), {}, 0xffffffff, { 5: 0xffffffff }, 31],
  ['csrrwi x5, mscratch, 0', rv.csrrwi(5, MSCRATCH, 0), {}, 0x1234, { 5: 0x1234 }, 0],
  ['csrrsi x5, mscratch, 16', rv.csrrsi(5, MSCRATCH, 16), {}, 0x80000001, { 5: 0x80000001 }, 0x80000011],
  ['csrrci x5, mscratch, 1', rv.csrrci(5, MSCRATCH, 1), {}, 0x11, { 5: 0x11 }, 0x10],
  ['csrrci x5, mscratch, 31', rv.csrrci(5, MSCRATCH, 31), {}, 0xffffffff, { 5: 0xffffffff }, 0xffffffe0],
  ['csrrw x0, mscratch, x6', rv.csrrw(0, MSCRATCH, 6), { 6: 0x33 }, 0x11, { 0: 0 }, 0x33],
  ['csrrs x5, mscratch, x0', rv.csrrs(5, MSCRATCH, 0), {}, 0x44, { 5: 0x44 }, 0x44],
  ['csrrc x5, mscratch, x0', rv.csrrc(5, MSCRATCH, 0), {}, 0x44, { 5: 0x44 }, 0x44],
  ['csrrsi x5, mscratch, 0', rv.csrrsi(5, MSCRATCH, 0), {}, 0x44, { 5: 0x44 }, 0x44],
  ['csrrw x5, mscratch, x5', rv.csrrw(5, MSCRATCH, 5), { 5: 0xaa }, 0xbb, { 5: 0xbb }, 0xaa], // old value of rs1 written
  ['csrrs x5, mscratch, x5', rv.csrrs(5, MSCRATCH, 5), { 5: 0x0a }, 0xb0, { 5: 0xb0 }, 0xba],
  ['csrrs x0, mscratch, x6', rv.csrrs(0, MSCRATCH, 6), { 6: 0x100 }, 0x1, { 0: 0 }, 0x101],
];

describe('CSR instructions', () => {
  for (const [asm, code, regs, before, want, after] of rows) {
    it(`${asm} with ${fmtRegs(regs)}, mscratch = ${hex(before)} gives ${fmtRegs(want)}, mscratch = ${hex(after)}`, async () => {
      const { m } = await runToEbreak([code], { regs, csrs: { [MSCRATCH]: before } });
      expectRegs(m, want);
      expect(csrOf(m, MSCRATCH)).toBe(after >>> 0);
    });
  }

  it('a write is visible to the next CSR instruction', async () => {
    const { m } = await runToEbreak([
      csrw(MSCRATCH, 6), //               csrw mscratch, x6
      rv.csrrs(5, MSCRATCH, 0), //        csrr x5, mscratch
      rv.csrrsi(0, MSCRATCH, 1), //       csrsi mscratch, 1
      rv.csrrci(7, MSCRATCH, 4), //       csrrci x7, mscratch, 4
      rv.csrrs(8, MSCRATCH, 0), //        csrr x8, mscratch
    ], { regs: { 6: 0x7c } });
    expectRegs(m, { 5: 0x7c, 7: 0x7d, 8: 0x79 });
  });

  it('a CSR written from the host reads back from the guest and vice versa', async () => {
    const { m } = await runToEbreak([csrr(5, MSCRATCH), rv.csrrwi(0, CSR.mepc, 0)], { csrs: { [MSCRATCH]: 0xfeedface } });
    expectRegs(m, { 5: 0xfeedface });
    expect(csrOf(m, CSR.mepc)).toBe(0);
  });
});

describe('identification CSRs', () => {
  it('misa reads 0x40141105: RV32 with A, C, I, M, S and U', async () => {
    const { m } = await runToEbreak([csrr(5, CSR.misa)]);
    expectRegs(m, { 5: 0x40141105 });
    expect(csrOf(m, CSR.misa)).toBe(0x40141105);
  });

  it('mhartid reads 0', async () => {
    const { m } = await runToEbreak([csrr(5, CSR.mhartid)], { regs: { 5: 0x99 } });
    expectRegs(m, { 5: 0 });
  });

  it.each([
    ['mvendorid', CSR.mvendorid], ['marchid', CSR.marchid], ['mimpid', CSR.mimpid], ['mhartid', CSR.mhartid],
    ['cycle', CSR.cycle], ['time', CSR.time], ['instret', CSR.instret],
    ['cycleh', CSR.cycleh], ['timeh', CSR.timeh], ['instreth', CSR.instreth],
  ] as const)('%s is readable in M-mode with csrrs, csrrc and csrrsi / csrrci with zero sources', async (_n, c) => {
    await runToEbreak([
      rv.csrrs(5, c, 0), //   csrrs x5, <csr>, x0
      rv.csrrc(5, c, 0), //   csrrc x5, <csr>, x0
      rv.csrrsi(5, c, 0), //  csrrsi x5, <csr>, 0
      rv.csrrci(5, c, 0), //  csrrci x5, <csr>, 0
    ]);
  });

  it('writing misa is ignored (WARL, fixed ISA)', async () => {
    const { m } = await runToEbreak([csrw(CSR.misa, 6), csrr(5, CSR.misa)], { regs: { 6: 0x40001101 } });
    expectRegs(m, { 5: 0x40141105 });
  });
});

describe('illegal CSR accesses', () => {
  // Privileged spec 2.1: attempts to write a read-only CSR (csr[11:10] = 0b11) raise illegal instruction;
  // Zicsr: csrrs/csrrc with rs1 != x0 write even when the value is 0, csrrwi always writes.
  const illegal: Array<[string, number, Regs]> = [
    ['csrrw x0, mhartid, x6', rv.csrrw(0, CSR.mhartid, 6), { 6: 1 }],
    ['csrrw x5, mvendorid, x0', rv.csrrw(5, CSR.mvendorid, 0), {}],
    ['csrrs x5, mhartid, x6 (x6 = 0)', rv.csrrs(5, CSR.mhartid, 6), { 6: 0 }],
    ['csrrc x5, marchid, x6 (x6 = 0)', rv.csrrc(5, CSR.marchid, 6), { 6: 0 }],
    ['csrrwi x5, mimpid, 0', rv.csrrwi(5, CSR.mimpid, 0), {}],
    ['csrrsi x5, mhartid, 1', rv.csrrsi(5, CSR.mhartid, 1), {}],
    ['csrrw x0, cycle, x6', rv.csrrw(0, CSR.cycle, 6), { 6: 5 }],
    ['csrrs x5, instret, x6 (x6 = 0)', rv.csrrs(5, CSR.instret, 6), { 6: 0 }],
    ['csrrwi x0, time, 1', rv.csrrwi(0, CSR.time, 1), {}],
    // CSRs of extensions this hart does not have (F, H).
    ['csrrs x5, fcsr, x0', rv.csrrs(5, CSR.fcsr, 0), {}],
    ['csrrs x5, hstatus, x0', rv.csrrs(5, CSR.hstatus, 0), {}],
    ['csrrw x5, hstatus, x6', rv.csrrw(5, CSR.hstatus, 6), {}],
  ];
  it.each(illegal)('%s (0x%x) is an illegal instruction with mtval = the instruction', async (_asm, code, regs) => {
    const m = load([code, rv.ebreak()], { regs: { ...regs, 5: 0x5555 } });
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.illegal, pc: RAM, tval: code });
    expectRegs(m, { 5: 0x5555 }); // rd is not written
    expect(m.counters.instret).toBe(0n);
  });
});

describe('WARL fields of machine CSRs', () => {
  it('mepc bit 0 always reads zero (IALIGN = 16 with C)', async () => {
    const { m } = await runToEbreak([csrw(CSR.mepc, 6), csrr(5, CSR.mepc)], { regs: { 6: 0x80000003 } });
    expectRegs(m, { 5: 0x80000002 });
  });

  it('mtvec holds a direct and a vectored base', async () => {
    const { m } = await runToEbreak([
      csrw(CSR.mtvec, 6), csrr(5, CSR.mtvec), //   csrw mtvec, x6; csrr x5, mtvec
      csrw(CSR.mtvec, 7), csrr(8, CSR.mtvec), //   csrw mtvec, x7; csrr x8, mtvec
      csrw(CSR.mtvec, 0), //                       csrw mtvec, x0   (so the ebreak ends the run)
    ], { regs: { 6: RAM + 0x100, 7: RAM + 0x201 } });
    expectRegs(m, { 5: RAM + 0x100, 8: RAM + 0x201 });
  });

  it('mstatus.MIE and MPIE are writable and MPP holds M (3), S (1) or U (0), never the reserved 2', async () => {
    const { m } = await runToEbreak([
      rv.csrrsi(0, CSR.mstatus, 8), //     csrsi mstatus, MIE
      csrr(5, CSR.mstatus), //             csrr x5, mstatus
      rv.csrrc(0, CSR.mstatus, 6), //      csrc mstatus, x6     (x6 = MPP | MIE)
      rv.csrrs(0, CSR.mstatus, 7), //      csrs mstatus, x7     (x7 = MPP = 10: reserved)
      csrr(8, CSR.mstatus), //             csrr x8, mstatus
      rv.csrrs(0, CSR.mstatus, 9), //      csrs mstatus, x9     (x9 = MPIE | MPP = 01: S)
      csrr(10, CSR.mstatus), //            csrr x10, mstatus
    ], { regs: { 6: 0x1808, 7: 0x1000, 9: 0x880 } });
    expect(m.getRegister(5) & 0x8).toBe(0x8);
    expect(m.getRegister(8) & 0x1800).toBe(0);
    expect(m.getRegister(8) & 0x8).toBe(0);
    expect(m.getRegister(10) & 0x1880).toBe(0x880);
  });

  it('mie implements MSIE, MTIE, MEIE and the supervisor SSIE, STIE, SEIE; nothing else', async () => {
    const { m } = await runToEbreak([csrw(CSR.mie, 6), csrr(5, CSR.mie), csrw(CSR.mie, 0)], { regs: { 6: 0xffffffff } });
    expectRegs(m, { 5: 0xaaa });
  });

  it('mcause and mtval are fully writable by M-mode software', async () => {
    const { m } = await runToEbreak([
      csrw(CSR.mcause, 6), csrr(5, CSR.mcause), csrw(CSR.mtval, 7), csrr(8, CSR.mtval),
    ], { regs: { 6: 0x8000000b, 7: 0xdeadbeef } });
    expectRegs(m, { 5: 0x8000000b, 8: 0xdeadbeef });
  });
});
