// Synchronous traps and privilege: illegal instructions (mtval = the instruction), ecall from M and U,
// ebreak, trap entry and mret updating mstatus/mepc, U-mode entry via MPP, and U-mode privilege violations.
import { describe, expect, it } from 'vitest';
import { Asm, rv } from '../helpers/asm.js';
import { CAUSE, CSR, MSTATUS, RAM, csrr, expectRegs, load, runToHandler, csrOf } from './harness.js';

const PMPCFG0 = 0x3a0;
const PMPADDR0 = 0x3b0;

/** Installs a direct-mode mtvec pointing at `handler` (uses x5). */
function installHandler(a: Asm, handler = 'handler'): Asm {
  return a.la(5, handler).csrrw(0, CSR.mtvec, 5); // la t0, handler; csrw mtvec, t0
}

/**
 * Drops to U-mode at `label` through mret (uses x5). PMP entry 0 is opened over all memory first, as
 * firmware must on a hart with PMP: without a matching entry U-mode could not even fetch.
 */
function enterU(a: Asm, label: string): Asm {
  a.li(5, 0xffffffff).csrrw(0, PMPADDR0, 5); //   pmpaddr0 = all of memory
  a.li(5, 0x1f).csrrw(0, PMPCFG0, 5); //          pmpcfg0 = R | W | X | A=NAPOT
  a.li(5, MSTATUS.MPP).csrrc(0, CSR.mstatus, 5); // mstatus.MPP = U
  a.la(5, label).csrrw(0, CSR.mepc, 5); //        mepc = label
  return a.mret();
}

describe('illegal instructions', () => {
  // [description, instruction word]
  const illegal: Array<[string, number]> = [
    ['the all-zeros word', 0x00000000],
    ['custom-0 opcode 0x0b', 0x0000000b],
    ['custom-1 opcode 0x2b', 0x1234502b],
    ['custom-2 opcode 0x5b', 0x0000005b],
    ['LOAD-FP (flw, no F extension)', 0x00002007],
    ['OP-FP (fadd.s, no F extension)', 0x00000053],
    ['reserved opcode 0x77', 0x00000077],
    ['OP-IMM-32 (addiw, RV64 only)', 0x0000001b],
    ['OP-32 (addw, RV64 only)', 0x0000003b],
    ['OP with funct7 = 2', 0x04000033],
    ['slli with shamt[5] set (RV64 only)', 0x02001013],
    ['slli with funct7 = 0x20', 0x40001013],
    ['srli with funct7 = 0x01', 0x02005013],
    ['ld (load funct3 = 3, RV64 only)', 0x00003003],
    ['lwu (load funct3 = 6, RV64 only)', 0x00006003],
    ['load funct3 = 7', 0x00007003],
    ['sd (store funct3 = 3, RV64 only)', 0x00003023],
    ['branch funct3 = 2', 0x00002063],
    ['branch funct3 = 3', 0x00003063],
    ['jalr funct3 = 1', 0x00001067],
    ['SYSTEM funct3 = 4', 0x00004073],
    ['dret outside debug mode', 0x7b200073],
    ['amoadd.d (AMO funct3 = 3, RV64 only)', 0x0000302f],
    ['AMO with funct5 = 0b00110', 0x3000202f],
  ];

  it.each(illegal)('%s (0x%x) traps with cause 2 and mtval = the instruction', async (_what, word) => {
    const m = load([rv.addi(0, 0, 0), word, rv.ebreak()]); // nop; <word>; ebreak
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.illegal, pc: RAM + 4, tval: word });
    expect(m.counters.instret).toBe(1n); // the illegal instruction does not retire
  });

  it('an immediate that looks like a funct7 does not make addi illegal', async () => {
    const m = load([rv.addi(0, 0, 0x20), rv.ebreak()]); // addi x0, x0, 32 = 0x02000013
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint, pc: RAM + 4 });
  });

  it('an illegal instruction taken through mtvec sets mepc, mcause and mtval', async () => {
    const a = installHandler(new Asm());
    a.label('bad').word(0x0000000b); //           custom-0
    a.align(4).label('handler').j('handler');
    const m = load(a);
    await runToHandler(m, a.addr('handler'));
    expect(csrOf(m, CSR.mepc)).toBe(a.addr('bad'));
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.illegal);
    expect(csrOf(m, CSR.mtval)).toBe(0x0000000b);
  });
});

describe('ecall and ebreak', () => {
  it('ecall in M-mode traps with cause 11 at its own address and does not retire', async () => {
    const m = load([rv.addi(5, 0, 1), rv.ecall(), rv.ebreak()]);
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.ecallM, pc: RAM + 4 });
    expect(r.instret).toBe(1n);
    expect(m.privilege).toBe('M');
  });

  it('ebreak traps with cause 3 at its own address and does not retire', async () => {
    const m = load([rv.addi(5, 0, 1), rv.addi(5, 5, 1), rv.ebreak()]);
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint, pc: RAM + 8 });
    expect(r.instret).toBe(2n);
    expect(m.counters.instret).toBe(2n);
  });

  it('trap entry from M saves pc in mepc, MIE in MPIE, M in MPP, and clears MIE', async () => {
    const a = installHandler(new Asm());
    a.csrrsi(0, CSR.mstatus, 8); //               csrsi mstatus, MIE   (mie = 0: nothing can interrupt)
    a.label('call').ecall();
    a.align(4).label('handler').j('handler');
    const m = load(a);
    await runToHandler(m, a.addr('handler'));
    expect(csrOf(m, CSR.mepc)).toBe(a.addr('call'));
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.ecallM);
    const st = csrOf(m, CSR.mstatus);
    expect({ MIE: st & MSTATUS.MIE, MPIE: st & MSTATUS.MPIE, MPP: st & MSTATUS.MPP })
      .toEqual({ MIE: 0, MPIE: MSTATUS.MPIE, MPP: MSTATUS.MPP });
    expect(m.privilege).toBe('M');
  });

  it('a handler that advances mepc and executes mret resumes after the ecall with MIE restored', async () => {
    const a = installHandler(new Asm());
    a.csrrsi(0, CSR.mstatus, 8); //               csrsi mstatus, MIE
    a.li(10, 1).ecall().addi(10, 10, 100); //     a0 = 1; ecall; a0 += 100
    a.word(csrr(12, CSR.mstatus)); //             csrr a2, mstatus
    a.csrrw(0, CSR.mtvec, 0).ebreak(); //         csrw mtvec, x0; ebreak (ends the run)
    a.align(4).label('handler');
    a.addi(10, 10, 10); //                        a0 += 10
    a.word(csrr(11, CSR.mstatus)); //             csrr a1, mstatus
    a.word(csrr(6, CSR.mepc)).addi(6, 6, 4).csrrw(0, CSR.mepc, 6); // mepc += 4
    a.mret();
    const m = load(a);
    const r = await m.run({ maxInstructions: 1000 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    expectRegs(m, { 10: 111 });
    expect(m.getRegister(11) & MSTATUS.MIE).toBe(0); //        in the handler
    expect(m.getRegister(12) & MSTATUS.MIE).toBe(MSTATUS.MIE); // after mret: MIE = MPIE
    expect(m.getRegister(12) & MSTATUS.MPIE).toBe(MSTATUS.MPIE); // and MPIE = 1
  });
});

describe('no-op encodings', () => {
  // [disassembly, word]: FENCE variants and base-ISA HINTs all retire without effect.
  const nops: Array<[string, number]> = [
    ['fence', rv.fence()],
    ['fence rw, rw', rv.fence('rw', 'rw')],
    ['fence.tso', 0x8330000f],
    ['pause (fence w, 0)', 0x0100000f],
    ['fence.i', rv.fence_i()],
    ['addi x0, x0, 1 (HINT)', rv.addi(0, 0, 1)],
    ['slli x0, x5, 3 (HINT)', rv.slli(0, 5, 3)],
    ['lui x0, 1 (HINT)', rv.lui(0, 1)],
  ];
  it.each(nops)('%s (0x%x) retires as a no-op', async (_asm, word) => {
    const m = load([word, rv.ebreak()], { regs: { 5: 0x55 } });
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint, pc: RAM + 4, instret: 1n });
    expectRegs(m, { 0: 0, 5: 0x55 });
  });
});

describe('mtval on traps that have no address', () => {
  it('ecall writes mtval = 0', async () => {
    const a = installHandler(new Asm());
    a.li(6, 0x1234).csrrw(0, CSR.mtval, 6); //     mtval = junk
    a.ecall();
    a.align(4).label('handler').j('handler');
    const m = load(a);
    await runToHandler(m, a.addr('handler'));
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.ecallM);
    expect(csrOf(m, CSR.mtval)).toBe(0);
  });
});

describe('U-mode', () => {
  it('mret with MPP = U enters U-mode at mepc, sets MPIE and leaves MPP = U', async () => {
    const a = new Asm();
    a.csrrsi(0, CSR.mstatus, 8); //               MIE = 1 so the entry moves MPIE (set below) into MIE
    a.li(5, MSTATUS.MPIE).csrrc(0, CSR.mstatus, 5); // MPIE = 0
    enterU(a, 'user');
    a.align(4).label('user').li(7, 42).label('spin').j('spin');
    const m = load(a);
    const r = await m.run({ maxInstructions: 200 });
    expect(r).toMatchObject({ kind: 'budget', pc: a.addr('spin') });
    expect(m.privilege).toBe('U');
    expectRegs(m, { 7: 42 });
    const st = csrOf(m, CSR.mstatus);
    expect({ MIE: st & MSTATUS.MIE, MPIE: st & MSTATUS.MPIE, MPP: st & MSTATUS.MPP })
      .toEqual({ MIE: 0, MPIE: MSTATUS.MPIE, MPP: 0 });
  });

  it('ecall from U-mode stops the run with cause 8 when mtvec is not set', async () => {
    const a = new Asm();
    enterU(a, 'user');
    a.align(4).label('user').li(7, 1).label('call').ecall();
    const m = load(a);
    const r = await m.run({ maxInstructions: 200 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.ecallU, pc: a.addr('call') });
  });

  it('ecall from U-mode traps to M with cause 8, MPP = U and mepc at the ecall', async () => {
    const a = installHandler(new Asm());
    enterU(a, 'user');
    a.align(4).label('user').li(7, 1).label('call').ecall();
    a.align(4).label('handler').j('handler');
    const m = load(a);
    await runToHandler(m, a.addr('handler'));
    expect(m.privilege).toBe('M');
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.ecallU);
    expect(csrOf(m, CSR.mepc)).toBe(a.addr('call'));
    expect(csrOf(m, CSR.mstatus) & MSTATUS.MPP).toBe(0);
  });

  it('an M-mode handler can return to U-mode with mret and U-mode continues', async () => {
    const a = installHandler(new Asm());
    enterU(a, 'user');
    a.align(4).label('user').li(10, 1).ecall().addi(10, 10, 1).ecall();
    a.align(4).label('handler');
    a.addi(11, 11, 1); //                         count the ecalls in a1
    a.li(6, 2).beq(11, 6, 'done'); //             second ecall: stop
    a.word(csrr(6, CSR.mepc)).addi(6, 6, 4).csrrw(0, CSR.mepc, 6).mret();
    a.label('done').word(csrr(12, CSR.mstatus)).csrrw(0, CSR.mtvec, 0).ebreak();
    const m = load(a);
    const r = await m.run({ maxInstructions: 1000 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    expectRegs(m, { 10: 2, 11: 2 });
    expect(m.getRegister(12) & MSTATUS.MPP).toBe(0);
    expect(m.privilege).toBe('M');
  });

  // U-mode may not touch machine-level CSRs (csr[9:8] = 0b11) nor execute mret.
  const forbidden: Array<[string, number]> = [
    ['csrr x6, mstatus', csrr(6, CSR.mstatus)],
    ['csrr x6, mscratch', csrr(6, CSR.mscratch)],
    ['csrr x6, misa', csrr(6, CSR.misa)],
    ['csrr x6, mhartid', csrr(6, CSR.mhartid)],
    ['csrw mtvec, x0', rv.csrrw(0, CSR.mtvec, 0)],
    ['csrsi mie, 8', rv.csrrsi(0, CSR.mie, 8)],
    ['csrr x6, minstret', csrr(6, CSR.minstret)],
    ['mret', rv.mret()],
  ];
  it.each(forbidden)('%s in U-mode is an illegal instruction (cause 2, mtval = the instruction)', async (_asm, word) => {
    const a = installHandler(new Asm());
    enterU(a, 'user');
    a.align(4).label('user').label('bad').word(word);
    a.align(4).label('handler').j('handler');
    const m = load(a, { regs: { 6: 0x77 } });
    await runToHandler(m, a.addr('handler'));
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.illegal);
    expect(csrOf(m, CSR.mepc)).toBe(a.addr('bad'));
    expect(csrOf(m, CSR.mtval)).toBe(word);
    expect(csrOf(m, CSR.mstatus) & MSTATUS.MPP).toBe(0);
    expectRegs(m, { 6: 0x77 });
    expect(csrOf(m, CSR.mtvec)).toBe(a.addr('handler'));
  });

  it('U-mode reading cycle with mcounteren = 0 is an illegal instruction', async () => {
    const a = installHandler(new Asm());
    a.csrrw(0, CSR.mcounteren, 0); //             csrw mcounteren, x0
    enterU(a, 'user');
    a.align(4).label('user').label('bad').word(csrr(6, CSR.cycle));
    a.align(4).label('handler').j('handler');
    const m = load(a);
    await runToHandler(m, a.addr('handler'));
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.illegal);
    expect(csrOf(m, CSR.mepc)).toBe(a.addr('bad'));
  });

  it('wfi in U-mode with mstatus.TW = 1 is an illegal instruction', async () => {
    const a = installHandler(new Asm());
    a.li(5, 1 << 21).csrrs(0, CSR.mstatus, 5); //  mstatus.TW = 1
    enterU(a, 'user');
    a.align(4).label('user').label('bad').wfi();
    a.align(4).label('handler').j('handler');
    const m = load(a);
    await runToHandler(m, a.addr('handler'));
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.illegal);
    expect(csrOf(m, CSR.mepc)).toBe(a.addr('bad'));
    expect(csrOf(m, CSR.mtval)).toBe(rv.wfi());
  });

  it('U-mode without a matching PMP entry cannot fetch, when PMP entries are implemented', async () => {
    // Privileged spec 3.7.1: if no PMP entry matches a U-mode access but at least one entry is
    // implemented, the access fails. A hart with no PMP entries (pmpaddr0 reads as zero) lets U through.
    const probe = load([rv.ebreak()]);
    probe.setCsr(PMPADDR0, 0x12345);
    const implemented = probe.getCsr(PMPADDR0) === 0x12345;
    const a = installHandler(new Asm());
    a.li(5, MSTATUS.MPP).csrrc(0, CSR.mstatus, 5);
    a.la(5, 'user').csrrw(0, CSR.mepc, 5).mret(); // no PMP entry configured
    a.align(4).label('user').li(7, 1).ecall();
    a.align(4).label('handler').j('handler');
    const m = load(a);
    await runToHandler(m, a.addr('handler'));
    if (implemented) {
      expect(csrOf(m, CSR.mcause)).toBe(CAUSE.fetchAccess);
      expect(csrOf(m, CSR.mepc)).toBe(a.addr('user'));
    } else {
      expect(csrOf(m, CSR.mcause)).toBe(CAUSE.ecallU);
    }
  });

  it('U-mode loads, stores and computes normally', async () => {
    const a = installHandler(new Asm());
    enterU(a, 'user');
    a.align(4).label('user');
    a.li(8, RAM + 0x8000).li(9, 0x1234).sw(9, 0, 8).lw(10, 0, 8).add(10, 10, 10).ecall();
    a.align(4).label('handler').j('handler');
    const m = load(a);
    await runToHandler(m, a.addr('handler'));
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.ecallU);
    expectRegs(m, { 10: 0x2468 });
  });
});
